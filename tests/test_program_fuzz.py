"""Programs edited at random: `validate` reports, it never crashes.

An example program or one of its workflows gets a few random line edits: a line deleted,
repeated, indented or dedented, a value replaced by something of another
kind (a number, a list, an anchor, a date that does not exist, an expression that does not
parse, ...), a stray key added. Whatever the edit, `validate_paths` must return a report
whose every diagnostic has a code and a file, and every error a line; and a program it
finds no error in must load (`load_program`, what `run` does first), and one with errors
must load or be refused with a LoyaltyError.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import hypothesis
from enginekit import hunt_settings
from hypothesis import given
from hypothesis import strategies as st

from loyalty_cli.config.model import load_program
from loyalty_cli.config.validate import validate_paths
from loyalty_cli.diagnostics import CODES, LoyaltyError

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples" / "programs"
PROGRAMS = sorted(p.name for p in EXAMPLES_DIR.iterdir() if (p / "program.yaml").is_file())

VALUES = [
    "",
    "0",
    "-1",
    "1e400",
    "null",
    "[]",
    "{}",
    '"x"',
    "yes",
    "~",
    "&a x",
    "*a",
    "'unterminated",
    "!!binary eA==",
    "2026-02-30",
    "P1D",
    "3 dayz",
    "order.total / 0",
    "order.total +* 2",
    "select 1",
    "{{ 1 }}",
    "[1, [2, {a: b}]]",
    "9999999999999999999999",
    "\t",
]


@st.composite
def edits(draw) -> tuple[str, str, list[tuple[float, str, str]]]:
    """An example program, the file edited (the program or one of its workflows) and a few
    edits: (which line, as a share; what; value)."""
    name = draw(st.sampled_from(PROGRAMS))
    files = ["program.yaml"] + sorted(
        f"workflows/{p.name}" for p in (EXAMPLES_DIR / name / "workflows").glob("*.yaml")
    )
    target = draw(st.sampled_from(files))
    changes = draw(
        st.lists(
            st.tuples(
                st.floats(0, 1, exclude_max=True),
                st.sampled_from(["delete", "repeat", "indent", "dedent", "value", "key"]),
                st.sampled_from(VALUES),
            ),
            min_size=1,
            max_size=3,
        )
    )
    return name, target, changes


def _edit(text: str, changes: list[tuple[float, str, str]]) -> str:
    lines = text.split("\n")
    for where, what, value in changes:
        i = int(where * len(lines))
        line = lines[i]
        if what == "delete":
            del lines[i]
        elif what == "repeat":
            lines.insert(i, line)
        elif what == "indent":
            lines[i] = "  " + line
        elif what == "dedent":
            lines[i] = line[2:] if line.startswith("  ") else line
        elif what == "value":
            # the text after the line's first `key:` (or after a list dash)
            head = re.match(r"\s*(?:- )?[\w-]+:\s*|\s*- ", line)
            lines[i] = (head.group(0) if head else "") + value
        else:
            indent = re.match(r"\s*", line).group(0)
            lines.insert(i, f"{indent}stray_key: {value}")
    return "\n".join(lines)


@hunt_settings(150)
@given(case=edits())
def test_an_edited_program_is_reported_never_a_crash(tmp_path_factory, case):
    name, target, changes = case
    root = tmp_path_factory.mktemp("prog") / name
    shutil.copytree(EXAMPLES_DIR / name, root)
    program, edited = root / "program.yaml", root / target
    edited.write_text(_edit(edited.read_text(encoding="utf-8"), changes), encoding="utf-8")
    report = validate_paths([str(program)])
    errors = [d for d in report.diagnostics if d.is_error]
    hypothesis.event(f"errors: {sorted({d.code for d in errors})[:1] or 'none'}")
    for d in report.diagnostics:
        assert d.code in CODES and d.path, d
    for d in errors:  # an error points at its line (a note may be about a whole file)
        assert d.line and d.line >= 1, d
    if not errors and not report.usage_errors:
        load_program(program)
        return
    try:  # `run` on a program with errors: refused with them, never a crash
        load_program(program)
    except LoyaltyError as err:
        assert all(d.code in CODES and d.path for d in err.diagnostics), err


def _example(tmp_path: Path, name: str, old: str, new: str) -> Path:
    root = tmp_path / name
    shutil.copytree(EXAMPLES_DIR / name, root)
    program = root / "program.yaml"
    text = program.read_text(encoding="utf-8")
    assert old in text
    program.write_text(text.replace(old, new), encoding="utf-8")
    return program


def test_a_number_where_a_segment_id_belongs_is_reported_with_the_workflows(tmp_path):
    """Found by the test above: the workflows' check sorted the ids of the program's segments
    and failed on a number among them."""
    program = _example(tmp_path, "engagement", "- id: engaged-browsers ", "- id: 1e400 ")
    got = {(d.code, Path(d.path).name, d.line) for d in validate_paths([str(program)]).errors}
    assert ("S202", "program.yaml", 86) in got  # segments[0].id should be text
    # the workflow's segment is unknown now, and the message lists the known ones
    assert ("R302", "first-purchase.yaml", 5) in got


def test_workflows_given_as_one_text_are_one_pattern(tmp_path):
    """Found by the test above: each character of the text was taken for a pattern, and `*`
    matched the program's folder, which was then read as a workflow file."""
    program = _example(
        tmp_path, "scoring", 'workflows: ["workflows/*.yaml"]', "workflows: workflows/*"
    )
    got = sorted((d.code, d.line, d.message) for d in validate_paths([str(program)]).errors)
    assert got == [("S202", 96, "workflows should be array, not a string")]
