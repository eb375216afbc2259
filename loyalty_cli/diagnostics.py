"""One type for every problem the tool reports: a Diagnostic.

Codes are stable and grouped by stage, so CI scripts and docs can rely on them:

- ``Y1xx`` YAML reading (syntax, duplicate keys, aliases)
- ``S2xx`` JSON-Schema checks (unknown keys, wrong types, missing keys)
- ``R3xx`` references and program semantics (ids, tiers, durations, paths)
- ``E4xx`` expressions (syntax, unknown columns and functions, forbidden SQL)
- ``T5xx`` templates (missing files, syntax, undefined variables, sandbox)
- ``D6xx`` data exports (see docs/data.md)

docs/diagnostics.md lists every code with an example.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes (SPEC section 2), defined once."""

    OK = 0
    INVALID = 1
    USAGE = 2
    REFUSED = 3


CODES: dict[str, str] = {
    # YAML
    "Y101": "YAML syntax error",
    "Y102": "duplicate key",
    "Y103": "alias expansion too large (possible alias bomb)",
    "Y104": "file cannot be read",
    "Y105": "not a loyalty file (no top-level `program` or `workflow` key)",
    # Schema
    "S201": "unknown key",
    "S202": "wrong type",
    "S203": "missing required key",
    "S204": "value not allowed",
    "S205": "value out of range or malformed",
    # References and semantics
    "R301": "duplicate id",
    "R302": "dangling reference",
    "R303": "tier thresholds not strictly ascending",
    "R304": "malformed duration",
    "R305": "lowest tier must have min 0",
    "R306": "path leaves its folder or matches nothing",
    "R307": "unknown timezone",
    "R308": "inconsistent setting",
    # Expressions
    "E401": "expression syntax error",
    "E402": "unknown column",
    "E403": "unknown or forbidden function",
    "E404": "subquery not allowed",
    "E405": "statement not allowed",
    "E406": "table function or file access not allowed",
    "E407": "row not available here",
    "E408": "forbidden construct",
    "E409": "values that do not fit: types, literals, the kind of result",
    # Templates
    "T501": "template file missing",
    "T502": "template syntax error",
    "T503": "undefined template variable",
    "T504": "unsafe template operation",
    "T505": "SMS encoding and length",
    "T506": "template render error",
    # Data
    "D601": "source file missing",
    "D602": "required column missing",
    "D603": "file cannot be parsed",
    "D604": "state file in use by another run",
    "D605": "state file cannot be opened or read",
    "D606": "run refused for its day",
    "D607": "customer not in the state",
    "D608": "a run's files could not be written",
    "D609": "state file of another program",
    "D610": "out of memory",
    "D611": "LOYALTY_MEMORY_LIMIT is not an amount of memory",
    "D612": "the state's disk failed during a run",
    "D613": "a value of the exports does not fit an expression of the program",
    "D614": "the state holds no run yet",
    "D615": "the folder to write a new program into is not empty",
}


def first_line(text: str) -> str:
    """The first line of an error's text (at most 300 characters), for a diagnostic."""
    return (text.strip().splitlines() or [""])[0][:300]


@dataclass(frozen=True)
class Diagnostic:
    """A problem found in a file, with where it is and how to fix it."""

    code: str
    message: str
    path: str = ""
    line: int | None = None
    col: int | None = None
    hint: str = ""
    severity: str = "error"  # error | warning | info
    where: str = ""  # config path such as ``earning.rules[2].when``
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def location(self) -> str:
        loc = self.path or "<input>"
        if self.line is not None:
            loc += f":{self.line}"
            if self.col is not None:
                loc += f":{self.col}"
        return loc

    def to_dict(self) -> dict:
        d = asdict(self)
        if not d["extra"]:
            d.pop("extra")
        return d


class LoyaltyError(Exception):
    """An error for the user, carrying diagnostics and an exit code (never a traceback)."""

    def __init__(
        self, diagnostics: list[Diagnostic] | Diagnostic, exit_code: int = ExitCode.INVALID
    ):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = diagnostics
        self.exit_code = int(exit_code)
        super().__init__(
            "; ".join((f"{d.location()}: " if d.path else "") + d.message for d in diagnostics)
        )
