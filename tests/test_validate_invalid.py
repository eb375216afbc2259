"""`loyalty validate` on broken programs: tests/fixtures/invalid/NN-what-is-wrong/.

Each folder is a complete small program (program.yaml, workflows/, templates/) with exactly
one fault, and an `expected.json` naming the diagnostic a user must get for it:
``{"file": ..., "code": ..., "line": ..., "col": ...}`` with the 1-based line and column of
where to look (the offending key or value, or the exact character inside an expression or
template). Positions were worked out by hand from the files, not copied from the validator.

Cases where the validator does not yet give the right answer are marked xfail(strict=True)
with the reason; when the validator is fixed they start passing and the mark must go.
"""

from __future__ import annotations

import json
import shutil
from functools import cache
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loyalty_cli.cli import app
from loyalty_cli.config.validate import ValidationReport, validate_paths

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "invalid"
CASES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())

# Bugs of the validator: case -> what goes wrong. The exact diagnostic (code, file, line,
# col) of these cases is not reported yet.
POSITION_BUGS: dict[str, str] = {}

# Cases whose expected code is not reported in the expected file at all.
CODE_BUGS: dict[str, str] = {}

# Cases validate does not detect at all.
UNDETECTED: dict[str, str] = {}


def _params(bugs: dict[str, str]) -> list:
    return [
        pytest.param(
            name, marks=pytest.mark.xfail(strict=True, reason=bugs[name]) if name in bugs else ()
        )
        for name in CASES
    ]


def expected(case: str) -> dict:
    return json.loads((FIXTURES / case / "expected.json").read_text(encoding="utf-8"))


@cache
def report_for(case: str) -> ValidationReport:
    return validate_paths([str(FIXTURES / case / "program.yaml")])


def relative(path: str, case_dir: Path) -> str:
    """A diagnostic's path relative to the case folder ('' when outside it)."""
    try:
        return Path(path).resolve().relative_to(case_dir.resolve()).as_posix()
    except ValueError:
        return ""


def found(case: str, report: ValidationReport) -> list[tuple]:
    case_dir = FIXTURES / case
    return [
        (d.code, relative(d.path, case_dir), d.line, d.col, d.severity) for d in report.diagnostics
    ]


def test_enough_cases() -> None:
    assert len(CASES) >= 36
    for case in CASES:
        folder = FIXTURES / case
        assert (folder / "program.yaml").is_file(), case
        assert (folder / "workflows").is_dir(), case
        assert (folder / "templates").is_dir(), case
        exp = expected(case)
        assert set(exp) == {"file", "code", "line", "col"}, case
        assert (folder / exp["file"]).is_file(), case


@pytest.mark.parametrize("case", _params(POSITION_BUGS))
def test_case_reports_expected_diagnostic(case: str) -> None:
    exp = expected(case)
    report = report_for(case)
    assert report.exit_code == 1
    want = (exp["code"], exp["file"], exp["line"], exp["col"], "error")
    assert want in found(case, report), found(case, report)


@pytest.mark.parametrize("case", _params(CODE_BUGS))
def test_case_reports_expected_code_in_expected_file(case: str) -> None:
    """The code and file alone (still checked where the position is not right yet)."""
    exp = expected(case)
    got = {
        (code, file)
        for code, file, _, _, severity in found(case, report_for(case))
        if severity == "error"
    }
    assert (exp["code"], exp["file"]) in got, got


@pytest.mark.parametrize("case", _params(UNDETECTED))
def test_cli_exit_1_without_traceback(case: str) -> None:
    runner = CliRunner()
    for fmt in ("text", "json", "github"):
        result = runner.invoke(
            app, ["validate", str(FIXTURES / case / "program.yaml"), "--format", fmt]
        )
        output = result.output + (result.stderr or "")
        assert "Traceback" not in output
        # typer.Exit(0) leaves no exception; anything else but SystemExit is a crash.
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(
            result.exception
        )
        assert result.exit_code == 1, (fmt, output)
        if fmt == "json":
            payload = json.loads(result.stdout)
            assert payload["ok"] is False and payload["exit_code"] == 1


@pytest.fixture(scope="module")
def whole_folder() -> ValidationReport:
    return validate_paths([str(FIXTURES)])


def test_whole_folder_at_once_exit_1(whole_folder: ValidationReport) -> None:
    assert whole_folder.exit_code == 1
    assert not whole_folder.usage_errors
    checked = {relative(p, FIXTURES).split("/", 1)[0] for p in whole_folder.files}
    assert checked == set(CASES)


@pytest.mark.parametrize("case", _params(UNDETECTED))
def test_whole_folder_at_once_reports_every_case(case: str, whole_folder: ValidationReport) -> None:
    """Validating all cases in one call collects the problems of every file, and finds
    everything validating the case alone finds."""
    mine = [d for d in whole_folder.diagnostics if relative(d.path, FIXTURES / case)]
    assert any(d.is_error for d in mine)
    alone = {
        (c, f, ln, col) for c, f, ln, col, sev in found(case, report_for(case)) if sev == "error"
    }
    together = {
        (d.code, relative(d.path, FIXTURES / case), d.line, d.col) for d in mine if d.is_error
    }
    assert alone <= together, alone - together


def test_duplicate_key_message_names_the_first_definition() -> None:
    (diag,) = [d for d in report_for("05-yaml-duplicate-key").diagnostics if d.code == "Y102"]
    assert "first defined on line 5" in diag.message


def test_schema_error_in_program_does_not_hide_workflow_problems(tmp_path: Path) -> None:
    case = tmp_path / "both"
    shutil.copytree(FIXTURES / "09-unknown-key-typo-pionts", case)
    shutil.copy(
        FIXTURES / "36-workflow-template-missing" / "workflows" / "welcome.yaml",
        case / "workflows" / "welcome.yaml",
    )
    for paths in ([str(case / "program.yaml")], [str(case)]):
        report = validate_paths(paths)
        got = {(d.code, relative(d.path, case)) for d in report.errors}
        assert ("S201", "program.yaml") in got
        assert ("T501", "workflows/welcome.yaml") in got, got
