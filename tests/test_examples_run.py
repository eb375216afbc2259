"""Every example program runs end to end on the shipped sample data, twice for one day."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from enginekit import check_invariants

from loyalty_cli.engine.run import run

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p.name for p in (ROOT / "examples" / "programs").iterdir() if p.is_dir())
DATA = ROOT / "examples" / "data" / "demo"


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_runs_on_the_sample_data(name, tmp_path):
    program = ROOT / "examples" / "programs" / name / "program.yaml"
    state, out = tmp_path / "s.duckdb", tmp_path / "out"
    (first,) = run(program, DATA, dt.date(2026, 6, 1), state, out)
    assert first.status == "ok"
    assert first.summary["members"] > 250
    check_invariants(state)
    # The next day, then the same day again: nothing changes the second time.
    (second,) = run(program, DATA, dt.date(2026, 6, 2), state, out)
    before = (out / "2026-06-02" / "balances.csv").read_bytes()
    ledger = (out / "2026-06-02" / "ledger.csv").read_bytes()
    (again,) = run(program, DATA, dt.date(2026, 6, 2), state, out)
    assert (out / "2026-06-02" / "balances.csv").read_bytes() == before
    assert (out / "2026-06-02" / "ledger.csv").read_bytes() == ledger
    assert again.summary == second.summary
    check_invariants(state)
