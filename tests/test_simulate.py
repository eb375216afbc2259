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


def test_simulate_of_programs_without_tiers(tmp_path):
    base, new = shops(tmp_path)
    args = ["simulate", str(new.program), "--baseline", str(base.program)]
    args += ["--data", str(base.data), "--from", "2026-03-01", "--to", "2026-03-02"]
    res = CliRunner().invoke(app, [*args, "-f", "json"])
    assert res.exit_code == 0, res.output
    result = json.loads(res.output)
    assert (result["baseline"]["tiers"], result["new"]["tiers"]) == (None, None)
    res = CliRunner().invoke(app, args)
    tiers = [line.split() for line in res.output.splitlines() if line.startswith("tiers")]
    assert tiers == [["tiers", "(no", "tiers)", "members", "2", "2", "="]]
    assert "None" not in res.output
    # Tiers in one program only: its tiers, and the other's "(no tiers)".
    tiered = base.program.read_text() + (
        "tiers:\n  basis: spend\n  levels:\n    - {id: bronze, name: Bronze, min: 0}\n"
        "    - {id: gold, name: Gold, min: 45}\n"
    )
    new.program.write_text(tiered)
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    tiers = [line.split() for line in res.output.splitlines() if line.startswith("tiers")]
    assert tiers == [
        ["tiers", "(no", "tiers)", "members", "2", "only", "in", "baseline"],
        ["tiers", "bronze", "members", "1", "only", "in", "new"],
        ["tiers", "gold", "members", "1", "only", "in", "new"],
    ]


def test_a_refused_simulation_says_what_was_rejected(tmp_path):
    base, new = shops(tmp_path)
    for shop in (base, new):
        shop.add(
            "orders",
            order("O4", "A", "2026-03-01 10:00:00", "ten"),
            order("O5", "B", "2026-03-01 11:00:00", "-"),
        )
    args = ["simulate", str(new.program), "--baseline", str(base.program)]
    args += ["--data", str(base.data), "--from", "2026-03-01", "--to", "2026-03-02"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 3
    out = " ".join(res.output.split())
    assert "rejects.csv)" not in out
    # O3 is of 03-02: the first day's run reads 4 orders, 2 of them bad.
    assert (
        "error[D606] the baseline program's run for 2026-03-01 was refused: orders: 2 of 4 new "
        "rows rejected (50.00%), above data.max_reject_rate 1.00%; rejected: orders.csv:5 "
        "total: bad_number; orders.csv:6 total: bad_number hint: `loyalty run` for 2026-03-01 "
        "on a copy of the state writes every rejected row to rejects.csv"
    ) in out
    res = CliRunner().invoke(app, [*args, "-f", "json"])
    assert res.exit_code == 3
    (diag,) = json.loads(res.stdout)["diagnostics"]
    assert diag["code"] == "D606"
    assert diag["message"].endswith(
        "rejected: orders.csv:5 total: bad_number; orders.csv:6 total: bad_number"
    )


def test_simulate_without_the_data_folder_is_one_usage_error(tmp_path):
    base, new = shops(tmp_path)
    args = ["simulate", str(new.program), "--baseline", str(base.program)]
    args += ["--data", str(tmp_path / "nope"), "--from", "2026-03-01", "--to", "2026-03-02"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2
    assert res.output == f"{tmp_path / 'nope'}: error[D601] the --data folder does not exist\n" + (
        "  hint: Pass the folder holding the night's exports.\n"
    )


def test_a_rule_both_programs_have_is_0_where_it_earned_nothing(tmp_path):
    """`big` exists in both programs; only the baseline's reaches it: the new program's
    row is 0 (a change of -50), not "only in baseline"."""
    rules = "earning:\n  rules:\n    - {id: base, on: order, points: order.total}\n"
    base = Shop(
        tmp_path / "base",
        rules + "    - {id: big, on: order, when: order.total >= 40, points: 50}\n",
    )
    new = Shop(
        tmp_path / "new",
        rules + "    - {id: big, on: order, when: order.total >= 400, points: 50}\n",
    )
    for shop in (base, new):
        shop.add("customers", customer("A", "2026-01-05 10:00:00"))
        shop.add("orders", order("O1", "A", "2026-01-10 10:00:00", "50.00"))
    result = simulate(
        new.program, base.program, base.data, dt.date(2026, 3, 1), dt.date(2026, 3, 1)
    )
    assert result["baseline"]["earned_by_rule"] == {"base": 50, "big": 50}
    assert result["new"]["earned_by_rule"] == {"base": 50, "big": 0}
    assert ("rules", "big earned", 50, 0) in comparison(result)
