"""Malformed exports: loading never fails with anything but a LoyaltyError naming the file.

The cases and their expected outcomes are in tests/fixtures/bad_exports/manifest.json.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest

from loyalty_cli.diagnostics import CODES, LoyaltyError
from loyalty_cli.engine.sources import load_sources

FIXTURES = Path(__file__).parent / "fixtures" / "bad_exports"
CASES = json.loads((FIXTURES / "manifest.json").read_text(encoding="utf-8"))["cases"]


def test_manifest_lists_every_fixture():
    listed = {case["file"] for case in CASES}
    present = {p.name for p in FIXTURES.iterdir() if p.name != "manifest.json"}
    assert listed == present
    assert len(listed) >= 15


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_bad_export(case, tmp_path):
    shutil.copy(FIXTURES / case["file"], tmp_path / case["file"])
    (tmp_path / "customers.csv").write_text("customer_id,joined_at\nC1,2026-01-01\nC2,2026-01-01\n")
    (tmp_path / "orders.csv").write_text("order_id,customer_id,ordered_at,total\n")
    sources = {"customers": {"path": "customers.csv"}, "orders": {"path": "orders.csv"}}
    sources[case["source"]] = {"path": case["file"]}
    con = duckdb.connect()
    expect = case["expect"]
    try:
        result = load_sources(con, sources, tmp_path, date(2026, 12, 31), "Europe/Warsaw", "PLN")
    except LoyaltyError as err:
        assert "error" in expect, f"unexpected {err}"
        diag = err.diagnostics[0]
        assert diag.code == expect["error"]
        assert diag.code in CODES
        assert case["file"] in str(err)
        assert case["file"] in diag.path
        assert diag.line == expect.get("line")
        assert "Traceback" not in str(err)
        return
    assert "error" not in expect, f"expected {expect['error']}, loaded fine"
    rejects = con.execute(
        f'SELECT file, line, "column", reason FROM {result.rejects_table} ORDER BY line'
    ).fetchall()
    assert {r[0] for r in rejects} <= {case["file"]}
    assert [list(r[1:]) for r in rejects] == expect["rejects"]
    for text in expect.get("warnings", []):
        assert any(text in w for w in result.warnings), result.warnings


@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_bad_export_through_the_cli_never_shows_a_traceback(case, tmp_path):
    """The whole `loyalty run` on each bad file: a diagnostic or a run, exit 0, 1 or 3."""
    from typer.testing import CliRunner

    from loyalty_cli.cli import app

    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(FIXTURES / case["file"], data / case["file"])
    (data / "customers.csv").write_text("customer_id,joined_at\nC1,2026-01-01\nC2,2026-01-01\n")
    if case["source"] != "orders":
        (data / "orders.csv").write_text("order_id,customer_id,ordered_at,total\n")
    paths = {"customers": "customers.csv", "orders": "orders.csv", case["source"]: case["file"]}
    program = tmp_path / "program.yaml"
    program.write_text(
        "version: 1\nprogram: {id: p, name: P, currency: PLN, timezone: Europe/Warsaw}\n"
        "sources:\n"
        + "".join(f"  {k}: {{path: {v!r}}}\n" for k, v in paths.items())
        + "earning:\n  rules:\n    - {id: base, on: order, points: order.total}\n"
    )
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(program),
            "--data",
            str(data),
            "--as-of",
            "2026-06-30",  # a day already past: a run may not go ahead of today
            "--state",
            str(tmp_path / "s.duckdb"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1, 3)
    if "error" in case["expect"]:
        assert result.exit_code == 1
        assert case["expect"]["error"] in result.output and case["file"] in result.output


def test_a_snippet_shows_a_long_line_cut_and_reads_only_as_far_as_it_needs(tmp_path):
    from rich.console import Console

    from loyalty_cli import reporters
    from loyalty_cli.diagnostics import Diagnostic

    path = tmp_path / "orders.csv"
    path.write_text("order_id,customer_id\n" + "O1," + "x" * 3_000_000 + "\nO2,C2\n")
    console = Console(width=300, record=True, no_color=True)
    diag = Diagnostic(code="D603", path=str(path), line=2, message="a line is too long")
    reporters.render_text([diag], console)
    text = console.export_text()
    assert len(text) < 1_000
    assert "> 2 | O1," + "x" * 197 + "..." in text
    assert "  3 | O2,C2" in text
    assert reporters._source_lines(str(path), 1) == ["order_id,customer_id"]
    assert reporters._source_lines(str(tmp_path), 1) is None


def test_the_caret_sits_under_its_column_after_wide_characters():
    from loyalty_cli import reporters
    from loyalty_cli.diagnostics import Diagnostic

    d = Diagnostic(code="E402", path="p.yaml", line=1, col=5, message="unknown name")
    # 名 and 前 take two cells each on a terminal: the caret goes 6 cells in, under x.
    assert reporters.snippet(d, ["名前: x"], context=0) == ["> 1 | 名前: x", " " * 12 + "^"]
