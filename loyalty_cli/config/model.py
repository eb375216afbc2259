"""The program as the engine sees it: validated, with every default filled in."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from loyalty_cli.config import progcache
from loyalty_cli.config.durations import Duration, parse_duration
from loyalty_cli.diagnostics import ExitCode, LoyaltyError

DEFAULTS = {
    "earning": {"rounding": "floor", "pending_days": 0, "rules": []},
    "data": {"max_reject_rate": 0.01},
    "bonuses": [],
    "expiry": {"at": "end_of_day"},
    "rewards": [],
    "coupons": {"pools": []},
    "segments": [],
    "messaging": {},
    "templates": "templates/",
    "workflows": [],
}
TIER_DEFAULTS = {
    "basis": "spend",
    "window": "365 days",
    "retain": "365 days",
    "downgrade": "one_level",
}


@dataclass
class Program:
    """A validated program with defaults applied (plain dicts, as in the YAML)."""

    path: Path
    data: dict
    workflows: list[tuple[Path, dict]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.data["program"]["id"]

    @property
    def timezone(self) -> str:
        return self.data["program"]["timezone"]

    @property
    def currency(self) -> str:
        return self.data["program"]["currency"]

    @property
    def rules(self) -> list[dict]:
        return self.data["earning"]["rules"]

    @property
    def rounding(self) -> str:
        return self.data["earning"]["rounding"]

    @property
    def pending_days(self) -> int:
        return int(self.data["earning"].get("pending_days") or 0)

    @property
    def tiers(self) -> dict | None:
        return self.data.get("tiers")

    @property
    def levels(self) -> list[dict]:
        return (self.data.get("tiers") or {}).get("levels") or [{"id": None, "min": 0}]

    @property
    def lowest_tier(self) -> str | None:
        return self.levels[0]["id"]

    def duration(self, *keys: str) -> Duration | None:
        node: object = self.data
        for k in keys:
            if not isinstance(node, dict):
                return None
            node = node.get(k)
        return parse_duration(node)

    @property
    def extras(self) -> dict[str, dict[str, str]]:
        """The columns each source declares under `extra` (name -> type), by source."""
        return {
            name: dict((src or {}).get("extra") or {})
            for name, src in (self.data.get("sources") or {}).items()
        }

    @property
    def has_rfm(self) -> bool:
        """Whether a segment is of type `rfm` (expressions may then read r, f, m)."""
        return any(s.get("type") == "rfm" for s in self.data.get("segments") or [])

    @property
    def template_dir(self) -> Path:
        return self.path.parent / self.data.get("templates", "templates/")


def with_defaults(data: dict) -> dict:
    out = copy.deepcopy(data)
    for key, value in DEFAULTS.items():
        if key not in out or out[key] is None:
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                out[key].setdefault(k, copy.deepcopy(v))
    if out.get("tiers"):
        for k, v in TIER_DEFAULTS.items():
            out["tiers"].setdefault(k, v)
        for lvl in out["tiers"].get("levels") or []:
            lvl.setdefault("multiplier", 1)
            lvl.setdefault("name", lvl["id"])
    for rule in out["earning"]["rules"]:
        rule.setdefault("qualifying", False)
    for seg in out["segments"]:
        if seg.get("type") == "rfm":
            seg.setdefault("scores", 5)
            seg.setdefault("window", "730 days")
        if seg.get("type") == "clv":
            seg.setdefault("horizon", "365 days")
            seg.setdefault("top_share", 0.1)
    return out


def load_program(path: str | Path) -> Program:
    """Validate and load a program; raises LoyaltyError (exit 1) listing every error."""
    p = Path(path)
    if not p.is_file():
        from loyalty_cli.diagnostics import Diagnostic

        folder = p.is_dir()
        inside = p / "program.yaml"
        raise LoyaltyError(
            Diagnostic(
                code="Y104",
                path=str(p),
                message="is a folder, not a program file" if folder else "program file not found",
                hint=f"Pass the program's YAML file, e.g. {inside}."
                if folder and inside.is_file()
                else "Pass the path of the program's YAML file.",
            ),
            ExitCode.USAGE,
        )
    try:
        text = p.read_bytes()
    except OSError:
        text = None
    if text is not None:
        remembered = progcache.lookup(p, text)
        if remembered is not None:
            return remembered
    # The checkers (jsonschema, sqlglot, ruamel) are imported only when a check is needed.
    from loyalty_cli.config.validate import validate_paths
    from loyalty_cli.config.yamlload import load_yaml_file

    # The workflow, template and pool files as the check reads them (see progcache).
    files_before = (
        progcache.files_before_check(p, text)
        if text is not None and progcache.cache_dir() is not None
        else None
    )
    report = validate_paths([str(p)])
    if report.errors:
        raise LoyaltyError(report.errors, ExitCode.INVALID)
    doc, _ = load_yaml_file(p)
    assert doc is not None
    if "program" not in doc.data:
        from loyalty_cli.diagnostics import Diagnostic

        raise LoyaltyError(
            Diagnostic(
                code="Y105",
                path=str(p),
                line=1,
                col=1,
                message="this is a workflow file, not a program file",
                hint="Pass the program YAML; it names its workflows under `workflows:`.",
            ),
            ExitCode.USAGE,
        )
    program = Program(path=p, data=with_defaults(doc.data))
    from loyalty_cli.config.semantic import workflow_paths

    paths, _ = workflow_paths(doc)
    for wp in paths:
        wdoc, _ = load_yaml_file(wp)
        if wdoc is not None:
            program.workflows.append((wp, wdoc.data))
    if text is not None and text == p.read_bytes():  # unchanged while it was checked
        progcache.store(program, text, files_before)
    return program
