"""The `loyalty validate` command: output formats, exit codes and the shipped examples.

The JSON structure tested here is the stable contract documented in docs/validate.md:

    {
      "version": 1,                  # version of this structure
      "ok": false,                   # true when no file has an error
      "exit_code": 1,                # the process exit code (0, 1 or 2)
      "files": [{"path": ..., "kind": "program" | "workflow" | "unknown"}],
      "summary": {"files": N, "errors": N, "warnings": N},
      "diagnostics": [
        {"code", "message", "path", "line", "col", "hint", "severity", "where"}
      ],
      "usage_errors": [...]          # paths that do not exist (exit code 2)
    }
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loyalty_cli.cli import app

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "invalid"
EXAMPLES = ROOT / "examples" / "programs"


def invoke(*args: str):
    result = CliRunner().invoke(app, ["validate", *args])
    # typer.Exit(0) leaves no exception; any other exit is a SystemExit, never a crash.
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    return result


def test_json_structure_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)
    result = invoke("34-reward-unknown-coupon-pool/program.yaml", "--format", "json")
    assert result.exit_code == 1
    assert json.loads(result.stdout) == {
        "version": 1,
        "ok": False,
        "exit_code": 1,
        "files": [
            {"path": "34-reward-unknown-coupon-pool/program.yaml", "kind": "program"},
            {"path": "34-reward-unknown-coupon-pool/workflows/welcome.yaml", "kind": "workflow"},
        ],
        "summary": {"files": 2, "errors": 1, "warnings": 0},
        "diagnostics": [
            {
                "code": "R302",
                "message": "reward 'discount-20' uses unknown coupon pool 'reward-25'",
                "path": "34-reward-unknown-coupon-pool/program.yaml",
                "line": 34,
                "col": 18,
                "hint": "Known coupon pools: reward-20.",
                "severity": "error",
                "where": "rewards[0].coupon_pool",
            }
        ],
        "usage_errors": [],
    }


def test_json_keys_and_types_on_every_diagnostic() -> None:
    result = invoke(str(FIXTURES), "--format", "json")
    payload = json.loads(result.stdout)
    assert set(payload) == {
        "version", "ok", "exit_code", "files", "summary", "diagnostics", "usage_errors",
    }  # fmt: skip
    assert payload["version"] == 1
    assert payload["ok"] is False
    assert payload["exit_code"] == result.exit_code == 1
    assert payload["summary"]["files"] == len(payload["files"])
    errors = [d for d in payload["diagnostics"] if d["severity"] == "error"]
    warnings = [d for d in payload["diagnostics"] if d["severity"] == "warning"]
    assert payload["summary"]["errors"] == len(errors) > 0
    assert payload["summary"]["warnings"] == len(warnings)
    for f in payload["files"]:
        assert set(f) == {"path", "kind"}
        assert f["kind"] in ("program", "workflow", "unknown")
    for d in payload["diagnostics"]:
        assert {"code", "message", "path", "line", "col", "hint", "severity", "where"} <= set(d)
        assert set(d) - {"extra"} == {
            "code", "message", "path", "line", "col", "hint", "severity", "where",
        }  # fmt: skip
        assert re.fullmatch(r"[YSRETD][1-6]\d\d", d["code"])
        assert d["severity"] in ("error", "warning", "info")
        assert isinstance(d["message"], str) and d["message"]
        assert d["line"] is None or (isinstance(d["line"], int) and d["line"] >= 1)
        assert d["col"] is None or (isinstance(d["col"], int) and d["col"] >= 1)


def test_json_ok_for_a_valid_program() -> None:
    result = invoke(str(EXAMPLES / "starter" / "program.yaml"), "--format", "json")
    payload = json.loads(result.stdout)
    assert result.exit_code == 0
    assert payload["ok"] is True
    assert payload["exit_code"] == 0
    assert payload["summary"] == {"files": 2, "errors": 0, "warnings": 0}
    assert payload["diagnostics"] == []
    assert [f["kind"] for f in payload["files"]] == ["program", "workflow"]


def test_github_annotation_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)
    result = invoke("07-unknown-key-top-level/program.yaml", "--format", "github")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        "::error file=07-unknown-key-top-level/program.yaml,line=50,col=1,title=S201::"
        "unknown key 'reward_pools' (hint: Did you mean 'rewards'? Allowed keys here: "
        "bonuses, coupons, data, earning, expiry, messaging, program, rewards, segments, "
        "sources, templates, tiers, version, workflows.)"
    ]


def test_github_annotations_one_line_per_diagnostic() -> None:
    result = invoke(str(FIXTURES), "--format", "github")
    lines = result.stdout.splitlines()
    pattern = re.compile(
        r"::(error|warning|notice) file=[^,:]+(,line=\d+(,col=\d+)?)?,title=[A-Z]\d{3}::.+"
    )
    assert lines
    for line in lines:
        assert pattern.fullmatch(line), line


def test_github_missing_path_is_an_error_annotation() -> None:
    result = invoke("no-such-program.yaml", "--format", "github")
    assert result.exit_code == 2
    assert "::error::no-such-program.yaml: no such file or folder" in result.stdout.splitlines()


def test_text_shows_numbered_snippet_with_caret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(FIXTURES)
    result = invoke("19-expr-unknown-column-order-totl/program.yaml")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    head = (
        "19-expr-unknown-column-order-totl/program.yaml:18:21: error[E402] "
        "earning.rules[0].points: unknown column `order.totl`"
    )
    assert head in lines
    at = lines.index(head)
    assert lines[at + 1 : at + 5] == [
        "  17 |       on: order",
        "> 18 |       points: order.totl",
        " " * 27 + "^",  # 7 characters of margin, then column 21
        "  19 | expiry:",
    ]
    # The caret sits under the column's name: `totl`.
    source_line, caret = lines[at + 2], lines[at + 3]
    assert source_line[caret.index("^") :].startswith("totl")
    assert lines[at + 5].strip().startswith("hint:")
    assert lines[-1] == "1 error(s), 0 warning(s) in 2 file(s)"


def test_text_ok_summary() -> None:
    result = invoke(str(EXAMPLES / "starter" / "program.yaml"))
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "ok: 2 file(s) valid"


def test_exit_2_for_a_missing_path() -> None:
    result = invoke("no-such-program.yaml")
    assert result.exit_code == 2
    assert "no-such-program.yaml: no such file or folder" in result.output


def test_exit_2_wins_over_invalid_files() -> None:
    result = invoke(
        str(FIXTURES / "07-unknown-key-top-level" / "program.yaml"), "missing/", "--format", "json"
    )
    payload = json.loads(result.stdout)
    assert result.exit_code == payload["exit_code"] == 2
    assert payload["usage_errors"] == ["missing/: no such file or folder"]
    assert payload["summary"]["errors"] >= 1


def test_exit_2_for_a_glob_matching_nothing(tmp_path: Path) -> None:
    result = invoke(str(tmp_path / "*.yaml"))
    assert result.exit_code == 2


@pytest.mark.parametrize(
    "example", sorted(p.name for p in EXAMPLES.iterdir() if (p / "program.yaml").is_file())
)
def test_examples_validate(example: str) -> None:
    result = invoke(str(EXAMPLES / example / "program.yaml"), "--format", "json")
    payload = json.loads(result.stdout)
    assert result.exit_code == 0, payload["diagnostics"]
    assert payload["ok"] is True
    assert payload["summary"]["errors"] == 0


def test_six_examples_validate_together() -> None:
    examples = sorted(p for p in EXAMPLES.iterdir() if (p / "program.yaml").is_file())
    assert len(examples) == 6
    result = invoke(str(EXAMPLES))
    assert result.exit_code == 0, result.output


def test_every_code_is_documented() -> None:
    from loyalty_cli.diagnostics import CODES

    text = (ROOT / "docs" / "diagnostics.md").read_text(encoding="utf-8")
    assert [code for code in CODES if f"| `{code}` |" not in text] == []


def test_github_usage_errors_are_escaped(tmp_path: Path) -> None:
    odd = str(tmp_path / "no\npe%.yaml")
    result = invoke(odd, "--format", "github")
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        f"::error::{tmp_path}/no%0Ape%25.yaml: no such file or folder"
    ]


def test_a_fifo_is_a_usage_error_never_read(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "program.yaml"
    os.mkfifo(fifo)  # reading it would block: it is never opened
    result = invoke(str(fifo), "--format", "json")
    payload = json.loads(result.stdout)
    assert result.exit_code == payload["exit_code"] == 2
    assert payload["usage_errors"] == [f"{fifo}: not a regular file (a FIFO, socket or device)"]
    result = invoke(str(fifo), str(EXAMPLES / "starter" / "program.yaml"), "--format", "github")
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        f"::error::{fifo}: not a regular file (a FIFO, socket or device)"
    ]
