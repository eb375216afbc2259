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
