"""`loyalty simulate`: two programs over the same literal history, compared."""

from __future__ import annotations

import datetime as dt
import json
import tempfile

from enginekit import Shop, customer, order
from typer.testing import CliRunner

from loyalty_cli.cli import app
from loyalty_cli.engine.simulate import comparison, simulate

BASELINE = """
earning:
  rules:
    - {id: base, on: order, points: order.total}
"""
NEW = """
earning:
  rules:
    - {id: base, on: order, points: order.total * 2}
bonuses:
  - {id: welcome, trigger: joined, points: 10}
"""


def shops(tmp_path) -> tuple[Shop, Shop]:
    base, new = Shop(tmp_path / "base", BASELINE), Shop(tmp_path / "new", NEW)
    for shop in (base, new):
        shop.add(
            "customers",
            customer("A", "2026-01-05 10:00:00"),
            customer("B", "2026-01-06 10:00:00"),
        )
        shop.add(
            "orders",
            order("O1", "A", "2026-01-10 10:00:00", "50.00"),
            order("O2", "B", "2026-02-01 10:00:00", "30.50"),
            order("O3", "B", "2026-03-02 10:00:00", "9.99"),
        )
    return base, new


def test_simulate_compares_the_two_programs(tmp_path, monkeypatch):
    base, new = shops(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    seen: list[tuple[str, str]] = []
    result = simulate(
        new.program,
        base.program,
        base.data,
        dt.date(2026, 3, 1),
        dt.date(2026, 3, 2),
        progress=lambda label, day, stage: (
            seen.append((label, str(day))) if stage == "done" else None
        ),
    )
    assert seen == [
        ("baseline", "2026-03-01"),
        ("baseline", "2026-03-02"),
        ("new", "2026-03-01"),
        ("new", "2026-03-02"),
    ]
    b, n = result["baseline"], result["new"]
    # Baseline: 50 + floor(30.50) + floor(9.99) = 50 + 30 + 9 = 89 points.
    # New: 100 + 61 + floor(19.98) = 180 for orders, and 10 + 10 for joining.
    assert b["earned_by_rule"] == {"base": 89}
    assert n["earned_by_rule"] == {"base": 180, "welcome": 20}
    assert (b["points"]["earned"], n["points"]["earned"]) == (89, 200)
    assert (b["liability"], n["liability"]) == ("0.89", "2.00")
    assert (b["members"], n["members"]) == (2, 2)
    rows = comparison(result)
    assert ("rules", "welcome earned", None, 20) in rows
    assert ("cost", "points earned", 89, 200) in rows
    # Nothing is left behind.
    assert list(scratch.iterdir()) == []


def test_simulate_cli(tmp_path):
    base, new = shops(tmp_path)
    args = ["simulate", str(new.program), "--baseline", str(base.program)]
    args += ["--data", str(base.data), "--from", "2026-03-01", "--to", "2026-03-02"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    earned = next(line for line in res.output.splitlines() if "points earned" in line)
    assert earned.split() == ["cost", "points", "earned", "89", "200", "+111", "(+124.7%)"]
    welcome = next(line for line in res.output.splitlines() if "welcome earned" in line)
    assert welcome.split() == ["rules", "welcome", "earned", "20", "only", "in", "new"]
    res = CliRunner().invoke(app, [*args, "-f", "json"])
    assert json.loads(res.output)["new"]["points"]["earned"] == 200
    res = CliRunner().invoke(app, [*args[:-4], "--from", "2026-03-02", "--to", "2026-03-01"])
    assert res.exit_code == 2 and "--to is before --from" in res.output
