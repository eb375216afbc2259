"""The engine commands end to end through the CLI: run, plan, backfill, explain, refusals."""

from __future__ import annotations

import json
from pathlib import Path

from enginekit import Shop, customer, event, order, state_held
from typer.testing import CliRunner

from loyalty_cli.cli import app

PROGRAM = """
earning:
  pending_days: 0
  rules:
    - {id: base, on: order, points: order.total}
bonuses:
  - {id: welcome, trigger: joined, points: 50}
"""


def run_cli(*args: str):
    return CliRunner().invoke(app, list(args))


def test_explain_keeps_every_value_whole_in_a_narrow_terminal(tmp_path, monkeypatch):
    shop = Shop(
        tmp_path,
        """
earning:
  pending_days: 0
  rules:
    - {id: base, on: order, points: order.total}
    - {id: unsubscribed, on: event, when: "event.type = 'unsubscribe'", points: -500}
""",
    )
    shop.add("customers", customer("A"), customer("B"))
    long_id = "WEBSHOP-ORDER-2026-03-01-000000000001"
    shop.add(
        "orders",
        order(long_id, "A", "2026-03-01 12:00:00", "120.50"),
        order("O2", "B", "2026-03-01 13:00:00", "30.00"),
    )
    shop.add("events", event("E1", "A", "2026-03-01 14:00:00", "unsubscribe"))
    shop.run("2026-03-01")
    state = str(shop.state)

    monkeypatch.setenv("COLUMNS", "200")
    wide = run_cli("explain", "A", "--state", state).output
    # A: 120 points, then the -500 debit takes them all and falls 380 short.
    assert long_id in wide and "shortfall" in wide and " 380" in wide
    for columns in ("80", "60"):
        monkeypatch.setenv("COLUMNS", columns)
        for member in ("A", "B"):
            res = run_cli("explain", member, "--state", state)
            assert res.exit_code == 0, res.output
            tables = res.output.splitlines()[1:]  # the first line is a sentence
            assert max(len(line) for line in tables) <= int(columns)
            assert "…" not in res.output
            # Short values stay whole: kinds, days, amounts.
            for word in ("earn", "2026-03-01", "120" if member == "A" else "30"):
                assert word in res.output
    # Nothing fell short for B: no shortfall column, and no empty reason column.
    monkeypatch.setenv("COLUMNS", "80")
    narrow_b = run_cli("explain", "B", "--state", state).output
    assert "shortfall" not in narrow_b and "reason" not in narrow_b
    assert "shortfall" in run_cli("explain", "A", "--state", state).output


def plan_cli(shop: Shop, day: str, *extra: str):
    """`loyalty plan` of the shop's program, exports and state for `day`."""
    return run_cli(
        "plan",
        str(shop.program),
        "--data",
        str(shop.data),
        "--as-of",
        day,
        "--state",
        str(shop.state),
        *extra,
    )


def small_shop(tmp_path) -> Shop:
    shop = Shop(tmp_path, PROGRAM)
    shop.add(
        "customers", customer("A", "2026-03-01 08:00:00"), customer("B", "2026-03-02 08:00:00")
    )
    shop.add(
        "orders",
        {"order_id": "O1", "customer_id": "A", "ordered_at": "2026-03-01 12:00", "total": "120.50"},
        {"order_id": "O2", "customer_id": "B", "ordered_at": "2026-03-02 12:00", "total": "30.00"},
    )
    return shop


def test_run_writes_balances_and_explain_shows_the_causes(tmp_path):
    shop = small_shop(tmp_path)
    res = run_cli(
        "run",
        str(shop.program),
        "--data",
        str(shop.data),
        "--as-of",
        "2026-03-02",
        "--state",
        str(shop.state),
        "--out",
        str(shop.out),
        "--format",
        "json",
    )
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output[res.output.index("[") :])
    assert payload[0]["as_of"] == "2026-03-02"
    assert payload[0]["counts"]["earning"] == {"base.points": 150, "base.rows": 2}
    # 170 + 80 points at point_value 0.01: 2.50 PLN, money with its two places.
    assert payload[0]["summary"]["liability"] == "2.50"
    assert payload[0]["summary"]["currency"] == "PLN"
    assert shop.csv("2026-03-02", "balances.csv") == [
        {
            "customer_id": "A",
            "available": "170",
            "pending": "0",
            "tier": "",
            "next_expiry_on": "",
            "next_expiry_points": "",
            "lifetime_earned": "170",
        },
        {
            "customer_id": "B",
            "available": "80",
            "pending": "0",
            "tier": "",
            "next_expiry_on": "",
            "next_expiry_points": "",
            "lifetime_earned": "80",
        },
    ]
    res = run_cli("explain", "A", "--state", str(shop.state), "--format", "json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert [(e["kind"], e["points"], e["rule_id"], e["source_id"]) for e in info["ledger"]] == [
        ("earn", 120, "base", "O1"),
        ("bonus", 50, "welcome", "A"),
    ]
    assert [
        (o["order_id"], o["status"], o["granted"], o["cancelled_on"]) for o in info["orders"]
    ] == [("O1", "completed", 120, None)]
    text = run_cli("explain", "A", "--state", str(shop.state))
    assert text.exit_code == 0 and "Ledger" in text.output and "welcome" in text.output
    assert "Orders" in text.output and "O1" in text.output
    missing = run_cli("explain", "NOPE", "--state", str(shop.state))
    assert missing.exit_code == 1 and "no customer 'NOPE'" in missing.output


def test_plan_writes_nothing(tmp_path):
    shop = small_shop(tmp_path)
    res = plan_cli(shop, "2026-03-02", "--format", "json")
    assert res.exit_code == 0, res.output
    plan = json.loads(res.output)
    assert plan["status"] == "planned"
    assert plan["counts"]["earning"]["base.points"] == 150
    assert plan["counts"]["bonuses"] == {"welcome": 2}
    assert not shop.state.exists()
    assert not shop.out.exists()
    # On an existing state, plan shows the next day without changing the state.
    shop.run("2026-03-02")
    before = shop.query("SELECT count(*), sum(points) FROM ledger")
    shop.add(
        "orders",
        {"order_id": "O3", "customer_id": "B", "ordered_at": "2026-03-03 12:00", "total": "10.00"},
    )
    res = plan_cli(shop, "2026-03-03", "--format", "json")
    assert json.loads(res.output)["counts"]["earning"] == {"base.points": 10, "base.rows": 1}
    assert shop.query("SELECT count(*), sum(points) FROM ledger") == before


def test_backfill_runs_each_day(tmp_path):
    shop = small_shop(tmp_path)
    res = run_cli(
        "backfill",
        str(shop.program),
        "--data",
        str(shop.data),
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-03",
        "--state",
        str(shop.state),
        "--out",
        str(shop.out),
    )
    assert res.exit_code == 0, res.output
    assert "backfill done: 3 day(s), 2026-03-01 .. 2026-03-03" in res.output
    assert sorted(p.name for p in shop.out.iterdir()) == ["2026-03-01", "2026-03-02", "2026-03-03"]
    assert [r["customer_id"] for r in shop.csv("2026-03-01", "balances.csv")] == ["A"]
    # From 03-06 after a last run of 03-03: the missed 03-04 and 03-05 come first, and the
    # summary names the days run.
    args = ["--data", str(shop.data), "--state", str(shop.state), "--out", str(shop.out)]
    res = run_cli(
        "backfill", str(shop.program), "--from", "2026-03-06", "--to", "2026-03-07", *args
    )
    assert res.exit_code == 0, res.output
    assert "backfill done: 4 day(s), 2026-03-04 .. 2026-03-07" in res.output


def test_usage_errors_exit_2(tmp_path):
    shop = small_shop(tmp_path)
    res = run_cli("run", str(shop.program), "--data", str(tmp_path / "nope"))
    assert res.exit_code == 2 and "the --data folder does not exist" in res.output
    res = run_cli("run", str(shop.program), "--data", str(shop.program))
    assert res.exit_code == 2 and "the --data folder is a file, not a folder" in res.output
    res = run_cli("run", str(shop.program), "--data", str(shop.data), "--as-of", "yesterday")
    assert res.exit_code == 2
    res = run_cli("run", str(shop.program), "--bogus")
    assert res.exit_code == 2
    # An --out that is a file, a state file in a folder that does not exist: said before
    # any work, nothing written.
    (tmp_path / "afile").write_text("")
    common = ["--data", str(shop.data), "--as-of", "2026-03-01"]
    res = run_cli(
        "run",
        str(shop.program),
        *common,
        "--state",
        str(shop.state),
        "--out",
        str(tmp_path / "afile"),
    )
    assert res.exit_code == 2 and "the --out folder is a file, not a folder" in res.output
    assert not shop.state.exists()
    res = run_cli(
        "backfill",
        str(shop.program),
        "--data",
        str(shop.data),
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-02",
        "--state",
        str(shop.state),
        "--out",
        str(tmp_path / "afile"),
    )
    assert res.exit_code == 2 and "D608" in res.output
    missing = tmp_path / "no-such-folder" / "state.duckdb"
    res = run_cli(
        "run", str(shop.program), *common, "--state", str(missing), "--out", str(shop.out)
    )
    assert res.exit_code == 2
    assert "the state file's folder" in res.output and "does not exist" in res.output
    assert not missing.parent.exists()


def test_invalid_program_exits_1_with_location(tmp_path):
    shop = small_shop(tmp_path)
    shop.program.write_text(shop.program.read_text().replace("order.total", "order.totl"))
    res = run_cli(
        "run",
        str(shop.program),
        "--data",
        str(shop.data),
        "--as-of",
        "2026-03-02",
        "--state",
        str(shop.state),
    )
    assert res.exit_code == 1
    assert "E402" in res.output and "order.totl" in res.output
    assert "Traceback" not in res.output


def test_second_run_on_a_locked_state_is_refused(tmp_path):
    shop = small_shop(tmp_path)
    shop.run("2026-03-01")
    with state_held(shop.state):
        proc = shop.run_cli("2026-03-02", timeout=120)
        # A plan copies the state under a read-only lock: refused the same way.
        planned = plan_cli(shop, "2026-03-02")
        # explain only reads, but cannot open the state either.
        explained = run_cli("explain", "A", "--state", str(shop.state))
    assert proc.returncode == 3, proc.stderr
    assert "in use by another run" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert planned.exit_code == 3, planned.output
    assert "in use by another run" in planned.output
    assert explained.exit_code == 3, explained.output
    assert "in use by another run" in explained.output
    assert "Wait for the run to finish" in explained.output
    assert "two runs on one state" not in explained.output


def test_plan_works_on_a_copy_it_removes(tmp_path, monkeypatch):
    import tempfile

    shop = small_shop(tmp_path)
    shop.run("2026-03-01")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    before = shop.state.read_bytes()
    res = plan_cli(shop, "2026-03-02", "--format", "json")
    assert res.exit_code == 0, res.output
    # 03-02: B joins (welcome 50) and orders 30.00 -> 30 points.
    assert json.loads(res.output)["counts"]["earning"] == {"base.points": 30, "base.rows": 1}
    assert shop.state.read_bytes() == before
    assert list(scratch.iterdir()) == []
    # While the plan runs, its copy is in the temporary folder.
    import datetime as dt

    from loyalty_cli.engine.run import plan

    during = []
    plan(
        shop.program,
        shop.data,
        dt.date(2026, 3, 2),
        shop.state,
        progress=lambda d, s: during.append(sorted(p.name for p in scratch.glob("*/*"))),
    )
    assert during[0] == [shop.state.name]
    assert list(scratch.iterdir()) == []


def test_help_reflows_paragraphs_and_names_values(monkeypatch):
    # A docstring's line breaks are not the terminal's: a paragraph is one paragraph at any
    # width, and options say what they take (a DATE, a DIR), not a Python type.
    monkeypatch.setenv("COLUMNS", "200")
    result = run_cli("run", "--help")
    assert result.exit_code == 0
    assert (
        "Exit 3 when the run is refused for its data (too many rejects, a short coupon pool, "
        "state in use); the state is then untouched." in result.output
    )
    for option, metavar in (("--data", "DIR"), ("--as-of", "DATE"), ("--state", "FILE")):
        line = next(x for x in result.output.splitlines() if f" {option} " in x)
        assert metavar in line.split(), line
    listing = run_cli("--help").output
    assert "points by rule, tiers, expiry, redemptions, rejects). Writes nothing." in listing


def test_liability_is_exact_money_in_the_currency_minor_unit():
    from decimal import Decimal

    from loyalty_cli.engine.outputs import liability

    # 1 x 0.015 = 0.015 exactly, half up to 0.02 (the float product rounds to 0.01);
    # 5 x 0.025 = 0.125 -> 0.13 (float: 0.12); 3 x 0.005 = 0.015 -> 0.02 (float: 0.01).
    assert liability(1, 0.015, "PLN") == Decimal("0.02")
    assert liability(5, 0.025, "EUR") == Decimal("0.13")
    assert liability(3, 0.005, "PLN") == Decimal("0.02")
    assert str(liability(1_259_570, 0.01, "PLN")) == "12595.70"
    # The yen has no minor unit: 7 x 0.5 = 3.5 -> 4.
    assert str(liability(7, 0.5, "JPY")) == "4"
    assert str(liability(10, None, "PLN")) == "0.00"


def test_progress_reports_the_days_then_each_stage_of_each_day(tmp_path):
    import datetime as dt

    from loyalty_cli.engine.run import STAGES, plan

    shop = small_shop(tmp_path)
    shop.run("2026-03-01")
    seen, days = [], []
    # Last run 03-01, asked for 03-03: 03-02 is caught up first.
    shop.run(
        "2026-03-03", progress=lambda d, s: seen.append((d.isoformat(), s)), planned=days.append
    )
    assert days == [[dt.date(2026, 3, 2), dt.date(2026, 3, 3)]]
    assert seen == [
        *[("2026-03-02", s) for s in (*STAGES, "done")],
        *[("2026-03-03", s) for s in (*STAGES, "done")],
    ]
    assert STAGES[0] == "load" and STAGES[-2:] == ("outputs", "commit")
    # A plan commits nothing: every stage but the commit.
    seen.clear()
    plan(
        shop.program,
        shop.data,
        dt.date(2026, 3, 4),
        shop.state,
        progress=lambda d, s: seen.append(s),
    )
    assert seen == [*STAGES[:-1], "done"]


def test_run_prints_a_line_per_day_caught_up_and_the_table_for_the_day_asked(tmp_path):
    shop = small_shop(tmp_path)
    common = ["--data", str(shop.data), "--state", str(shop.state), "--out", str(shop.out)]
    assert run_cli("run", str(shop.program), "--as-of", "2026-03-01", *common).exit_code == 0
    res = run_cli("run", str(shop.program), "--as-of", "2026-03-03", *common)
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    # 03-02: A (120 + 50 welcome) and B (30 + 50, joined 03-02): 250 points, nothing pending.
    assert lines[0] == (
        "2026-03-02: ok | members 2 | available 250 | pending 0 | 0 rejected row(s)"
    )
    assert lines[1] == "run for 2026-03-03"
    assert sum("run for" in x for x in lines) == 1
    # The exports, one row per source (files, rows read, held back, rejected, duplicates,
    # loaded): the orders file holds O1 and O2 (both processed before; the engine, not the
    # loader, leaves them out); the customers file A and B.
    exports = lines.index(next(x for x in lines if x.strip() == "exports"))
    summary = lines.index(next(x for x in lines if x.startswith("members ")))
    assert lines[exports + 1].split() == [
        "source",
        "files",
        "rows",
        "read",
        "held",
        "back",
        "rejected",
        "duplicates",
        "loaded",
    ]
    cells = {row[0]: row[1:] for row in (x.split() for x in lines[exports + 3 : summary])}
    assert cells["orders"] == ["1", "2", "0", "0", "0", "2"]
    assert cells["customers"] == ["1", "2", "0", "0", "0", "2"]
    # Nothing new on 03-03: no step counted anything, so there is no table of steps.
    assert not any(x.strip() == "steps" for x in lines)


def test_the_progress_display_shows_day_stage_and_days_done_on_a_terminal():
    import datetime as dt
    import io

    from rich.console import Console

    from loyalty_cli.cli import _day_progress

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=100)
    with _day_progress(console) as (planned, progress):
        planned([dt.date(2026, 3, 1), dt.date(2026, 3, 2)])
        progress(dt.date(2026, 3, 1), "done")
        progress(dt.date(2026, 3, 2), "earning")
    assert "2026-03-02 earning" in screen.getvalue()
    assert "1/2" in screen.getvalue()
    # Not a terminal (cron, CI, a pipe): no display and no callbacks.
    with _day_progress(Console(file=io.StringIO())) as callbacks:
        assert callbacks == (None, None)


def test_a_state_refuses_another_programs_runs(tmp_path):
    shop = small_shop(tmp_path)
    shop.run("2026-03-01")
    other = tmp_path / "other.yaml"
    other.write_text(shop.program.read_text().replace("id: test-club", "id: other-club"))
    before = shop.query("SELECT count(*), sum(points) FROM ledger")
    common = ["--data", str(shop.data), "--as-of", "2026-03-02", "--state", str(shop.state)]
    for command in (
        ["run", str(other), *common, "--out", str(shop.out)],
        ["plan", str(other), *common],
        [
            "backfill",
            str(other),
            "--data",
            str(shop.data),
            "--from",
            "2026-03-02",
            "--to",
            "2026-03-03",
            "--state",
            str(shop.state),
            "--out",
            str(shop.out),
        ],
    ):
        res = run_cli(*command)
        assert res.exit_code == 3, res.output
        assert "D609" in res.output
        assert "program 'test-club', not of 'other-club'" in res.output
    assert shop.query("SELECT count(*), sum(points) FROM ledger") == before
    assert sorted(p.name for p in shop.out.iterdir()) == ["2026-03-01"]
    # A refused run makes no --out folder either.
    fresh = tmp_path / "fresh-out"
    assert run_cli("run", str(other), *common, "--out", str(fresh)).exit_code == 3
    assert not fresh.exists()
    # The program itself goes on.
    assert run_cli("run", str(shop.program), *common, "--out", str(shop.out)).exit_code == 0


def test_memory_errors_say_what_to_do_and_leave_the_state(tmp_path, monkeypatch, capsys):
    import duckdb
    import pytest

    from loyalty_cli import cli
    from loyalty_cli.engine import earning

    shop = small_shop(tmp_path)
    shop.run("2026-03-01")
    before = shop.query("SELECT count(*), sum(points) FROM ledger")
    args = ["--data", str(shop.data), "--state", str(shop.state), "--out", str(shop.out)]

    # A cap that is not an amount of memory: a usage error, nothing run.
    monkeypatch.setenv("LOYALTY_MEMORY_LIMIT", "lots")
    res = run_cli("run", str(shop.program), "--as-of", "2026-03-02", *args)
    assert res.exit_code == 2 and "D611" in res.output
    assert "LOYALTY_MEMORY_LIMIT='lots' is not an amount of memory" in res.output

    # DuckDB out of memory in a step: D610 naming the step, exit 1, the run rolled back.
    monkeypatch.setenv("LOYALTY_MEMORY_LIMIT", "900MB")

    def starved(ctx):
        raise duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block")

    monkeypatch.setattr(earning, "apply_earning", starved)
    res = run_cli("run", str(shop.program), "--as-of", "2026-03-02", *args)
    assert res.exit_code == 1, res.output
    assert "D610" in res.output
    assert "running the earning step for 2026-03-02, under the cap of 900MB" in res.output
    assert "Raise LOYALTY_MEMORY_LIMIT" in res.output
    assert shop.query("SELECT count(*), sum(points) FROM ledger") == before
    assert sorted(p.name for p in shop.out.iterdir()) == ["2026-03-01"]

    # The disk of the state (or of DuckDB's spill folder) failing: D612, rolled back too.
    def disk_full(ctx):
        raise duckdb.IOException("IO Error: No space left on device")

    monkeypatch.setattr(earning, "apply_earning", disk_full)
    res = run_cli("run", str(shop.program), "--as-of", "2026-03-02", *args)
    assert res.exit_code == 1, res.output
    assert "D612" in res.output
    assert "the disk failed while running the earning step for 2026-03-02" in res.output
    assert "No space left on device" in res.output
    assert shop.query("SELECT count(*), sum(points) FROM ledger") == before
    assert sorted(p.name for p in shop.out.iterdir()) == ["2026-03-01"]

    # Anywhere else, the last line of defence says the same instead of "internal error".
    def everywhere(*a, **k):
        raise duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate")

    monkeypatch.setattr(cli, "app", everywhere)
    with pytest.raises(SystemExit) as exit_:
        cli.main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err
    assert "D610" in err and "internal error" not in err


def test_a_cap_too_small_for_the_state_tables_is_d610(tmp_path):
    shop = small_shop(tmp_path)
    proc = shop.run_cli("2026-03-01", env={"LOYALTY_MEMORY_LIMIT": "1MB"})
    assert proc.returncode == 1, proc.stderr
    assert "D610" in proc.stderr and "under the cap of 1MB" in proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr


def test_plan_upgrades_a_copy_of_an_older_state_and_explain_asks_for_a_run(tmp_path):
    import duckdb
    from test_state import _v1_state

    shop = small_shop(tmp_path)
    _v1_state(shop.state)
    before = shop.state.read_bytes()
    res = plan_cli(shop, "2026-03-02", "--format", "json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["counts"]["bonuses"] == {"welcome": 2}
    assert shop.state.read_bytes() == before
    con = duckdb.connect(str(shop.state), read_only=True)
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("1",)
    con.close()
    res = run_cli("explain", "A", "--state", str(shop.state))
    assert res.exit_code == 1 and "schema version 1" in res.output


def test_plan_says_when_the_temporary_folder_has_no_room_for_its_copy(tmp_path, monkeypatch):
    import shutil

    shop = small_shop(tmp_path)
    shop.run("2026-03-01")

    def no_room(src, dst, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", no_room)
    res = plan_cli(shop, "2026-03-02")
    assert res.exit_code == 1, res.output
    assert "D605" in res.output and "cannot copy the state for the plan" in res.output
    assert "No space left on device" in res.output and "TMPDIR" in res.output


def test_ids_and_paths_that_look_like_markup_are_printed_as_they_are(tmp_path):
    """Terminal output treats the shop's ids, header names and paths as text: `[/x]` is
    neither an error nor removed, `[bold]` is not a style."""
    shop = Shop(tmp_path, "earning:\n  rules:\n    - {id: base, on: order, points: order.total}\n")
    shop.add("customers", customer("[bold]B", "2026-01-01 08:00:00"))
    shop.add("orders", order("SKU[/x]-1", "[bold]B", "2026-03-01 12:00", "10.00"))
    shop.export()
    # A header name with a closing tag: the run warns about it, by name.
    orders = shop.data / "orders.csv"
    lines = orders.read_text().splitlines()
    orders.write_text("\n".join([lines[0] + ",[/x],[/x]"] + [x + ",1,2" for x in lines[1:]]))
    out = tmp_path / "out[/prod]"
    res = CliRunner().invoke(
        app,
        ["run", str(shop.program), "--data", str(shop.data), "--as-of", "2026-03-01"]
        + ["--state", str(shop.state), "--out", str(out)],
    )
    assert res.exit_code == 0, res.output
    assert "the header repeats '[/x]'" in res.output
    assert f"files: {out / '2026-03-01'}" in res.output
    res = CliRunner().invoke(app, ["explain", "[bold]B", "--state", str(shop.state)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("[bold]B joined 2026-01-01 | tier (lowest) | available 10")
    assert "SKU[/x]-1" in res.output


def plain(output: str) -> str:
    """The CLI's output with rich's error box taken away and the lines joined."""
    return " ".join(output.replace("│", "").replace("╭", "").replace("╰", "").split())


def test_days_out_of_range_are_usage_errors_for_every_command(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    shop = small_shop(tmp_path)
    p, d, st = str(shop.program), str(shop.data), str(shop.state)
    cases = [
        (["run", p, "--data", d, "--state", st, "--as-of", "9999-12-31"], "--as-of",
         "9999-12-31"),
        (["plan", p, "--data", d, "--state", st, "--as-of", "0001-01-01"], "--as-of",
         "0001-01-01"),
        (["backfill", p, "--data", d, "--state", st, "--from", "1899-12-31", "--to",
          "2026-03-01"], "--from", "1899-12-31"),
        (["backfill", p, "--data", d, "--state", st, "--from", "2026-03-01", "--to",
          "3000-01-01"], "--to", "3000-01-01"),
        (["simulate", p, "--baseline", p, "--data", d, "--from", "2026-03-01", "--to",
          "9999-12-31"], "--to", "9999-12-31"),
        (["coupons", "status", p, "--state", st, "--as-of", "9999-12-31"], "--as-of",
         "9999-12-31"),
    ]  # fmt: skip
    for args, option, day in cases:
        res = run_cli(*args)
        assert res.exit_code == 2, args
        assert (
            f"Invalid value for {option}: {day} is out of range; days from 1900-01-01 to "
            "2999-12-31 are accepted" in plain(res.output)
        )
    assert not shop.state.exists() and not shop.out.exists()
    # The last day of the range is planned; a run may not go past today (test_first_week.py).
    res = run_cli("plan", p, "--data", d, "--as-of", "2999-12-31", "--state", str(shop.state))
    assert res.exit_code == 0, res.output
    res = run_cli("run", p, "--data", d, "--as-of", "2999-12-31", "--state", str(shop.state),
                  "--out", str(shop.out))  # fmt: skip
    assert res.exit_code == 2 and "2999-12-31 is after today" in plain(res.output)
    assert not shop.state.exists() and not shop.out.exists()


def test_errors_in_json_are_a_json_object_on_stdout(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    shop = small_shop(tmp_path)
    for command in ("plan", "run"):
        res = run_cli(command, str(shop.program), "--data", str(tmp_path / "nope"), "-f", "json")
        assert res.exit_code == 2
        assert json.loads(res.stdout) == {
            "status": "error",
            "exit_code": 2,
            "diagnostics": [
                {
                    "code": "D601",
                    "message": "the --data folder does not exist",
                    "path": str(tmp_path / "nope"),
                    "line": None,
                    "col": None,
                    "hint": "Pass the folder holding the night's exports.",
                    "severity": "error",
                    "where": "",
                }
            ],
            "usage_errors": [],
        }
    res = run_cli("plan", str(shop.program), "--data", str(shop.data), "--as-of", "2026-02-30",
                  "-f", "json")  # fmt: skip
    assert res.exit_code == 2
    assert json.loads(res.stdout) == {
        "status": "error",
        "exit_code": 2,
        "diagnostics": [],
        "usage_errors": ["Invalid value for --as-of: '2026-02-30' is not a date; write YYYY-MM-DD"],
    }
    shop.program.write_text(shop.program.read_text().replace("order.total", "order.totl"))
    res = run_cli("plan", str(shop.program), "--data", str(shop.data), "-f", "json")
    assert res.exit_code == 1
    payload = json.loads(res.stdout)
    assert [(d["code"], d["path"], d["line"]) for d in payload["diagnostics"]] == [
        ("E402", str(shop.program), 20)
    ]


def test_github_format_annotates_diagnostics_refusals_and_warnings(tmp_path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "300")
    shop = small_shop(tmp_path)
    (shop.data / "events.csv").write_text("")  # an empty export: a warning
    common = ["--data", str(shop.data), "--state", str(shop.state), "-f", "github"]
    res = run_cli("run", str(shop.program), *common, "--as-of", "2026-03-01", "--out",
                  str(shop.out))  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (
        "::warning::run for 2026-03-01: events.csv: the file is empty; read as no rows"
        in res.stdout.splitlines()
    )
    res = run_cli("plan", str(shop.program), *common, "--as-of", "2026-03-02")
    assert "::warning::run for 2026-03-02: events.csv: the file is empty; read as no rows" in (
        res.stdout.splitlines()
    )
    # A refused day: an error annotation with the reason.
    shop.add("orders", order("O3", "B", "2026-03-03 12:00:00", "lots"))
    res = run_cli("run", str(shop.program), *common, "--as-of", "2026-03-03", "--out",
                  str(shop.out))  # fmt: skip
    assert res.exit_code == 3
    refusals = [line for line in res.stdout.splitlines() if line.startswith("::error")]
    assert refusals == [  # % is written %25, as GitHub asks
        "::error::refused run for 2026-03-03: orders: 1 of 1 new rows rejected (100.00%25), "
        "above data.max_reject_rate 1.00%25 (see rejects.csv)"
    ]
    # A diagnostic of the program: its file, line and column.
    shop.program.write_text(shop.program.read_text().replace("order.total", "order.totl"))
    res = run_cli("plan", str(shop.program), *common)
    assert res.exit_code == 1
    assert res.stdout.splitlines() == [
        f"::error file={shop.program},line=20,col=43,title=E402::earning.rules[0].points: "
        "unknown column `order.totl` (hint: did you mean order.total?)"
    ]
    # A usage error: escaped as GitHub asks (%, CR and LF).
    shop.program.write_text(shop.program.read_text().replace("order.totl", "order.total"))
    res = run_cli("run", str(shop.program), "--data", "a%b\nc", "-f", "github")
    assert res.exit_code == 2
    assert res.stdout.splitlines() == [
        "::error file=a%25b%0Ac,title=D601::the --data folder does not exist (hint: Pass the "
        "folder holding the night's exports.)"
    ]


def test_run_of_a_program_without_tiers_says_no_tiers(tmp_path):
    shop = Shop(tmp_path, "earning:\n  rules:\n    - {id: base, on: order, points: order.total}\n")
    shop.add("customers", customer("A", "2026-01-05 10:00:00"))
    res = run_cli("run", str(shop.program), "--data", str(shop.data), "--as-of", "2026-03-01",
                  "--state", str(shop.state), "--out", str(shop.out))  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "| tiers (no tiers)" in res.output and "None" not in res.output


def test_a_workflow_file_given_for_a_program_is_a_usage_error(tmp_path):
    shop = small_shop(tmp_path)
    flow = tmp_path / "welcome.yaml"
    flow.write_text(
        "version: 1\nworkflow:\n  id: welcome\n  trigger: joined\n  steps:\n"
        "    - {id: hello, wait: 1 day}\n"
    )
    res = run_cli("compile", str(flow))
    assert res.exit_code == 2
    assert "this is a workflow file, not a program file" in res.output
    res = run_cli("simulate", str(flow), "--baseline", str(shop.program), "--data",
                  str(shop.data), "--from", "2026-03-01", "--to", "2026-03-01")  # fmt: skip
    assert res.exit_code == 2
    assert "this is a workflow file, not a program file" in res.output


def test_validate_keeps_its_summary_line_after_a_usage_error(tmp_path):
    # (Here rather than in test_validate_cli.py, which others are changing.)
    starter = Path(__file__).resolve().parent.parent / "examples/programs/starter/program.yaml"
    res = run_cli("validate", str(tmp_path / "nope.yaml"), str(starter))
    assert res.exit_code == 2
    assert res.stdout.splitlines()[-1] == (
        "0 error(s), 0 warning(s) in 2 file(s); 1 path(s) not checked"
    )
    assert f"error: {tmp_path / 'nope.yaml'}: no such file or folder" in res.output


def test_a_missing_data_folder_is_one_usage_error_for_every_command(tmp_path):
    shop = small_shop(tmp_path)
    nope = str(tmp_path / "nope")
    state = ["--state", str(shop.state)]
    days = ["--from", "2026-03-01", "--to", "2026-03-02"]
    for args in (
        ["run", str(shop.program), "--data", nope, *state, "--out", str(shop.out)],
        ["plan", str(shop.program), "--data", nope, *state],
        ["backfill", str(shop.program), "--data", nope, *days, *state, "--out", str(shop.out)],
        ["simulate", str(shop.program), "--baseline", str(shop.program), "--data", nope, *days],
    ):
        res = run_cli(*args)
        assert res.exit_code == 2, args
        assert res.output == (
            f"{nope}: error[D601] the --data folder does not exist\n"
            "  hint: Pass the folder holding the night's exports.\n"
        )
        assert not shop.state.exists() and not shop.out.exists()


def test_explain_text_shows_the_tier_dates_and_the_cost_of_redemptions(tmp_path, monkeypatch):
    shop = Shop(
        tmp_path,
        """
earning:
  pending_days: 0
  rules:
    - {id: base, on: order, points: order.total}
tiers:
  levels:
    - {id: bronze, name: Bronze, min: 0}
    - {id: silver, name: Silver, min: 100}
rewards:
  - {id: mug, name: Mug, cost: 40}
""",
    )
    shop.add("customers", customer("A", "2026-01-01 10:00:00"))
    shop.add("orders", order("O1", "A", "2026-03-01 12:00:00", "150.00"))
    shop.run("2026-03-01")  # silver since 03-01
    shop.add(
        "redemptions",
        {
            "redemption_id": "R1",
            "customer_id": "A",
            "reward_id": "mug",
            "requested_at": "2026-03-02 09:00:00",
        },
    )
    shop.run("2026-03-02")  # renewed 03-02; 150 - 40 = 110
    monkeypatch.setenv("COLUMNS", "120")
    out = run_cli("explain", "A", "--state", str(shop.state)).output
    assert out.splitlines()[0] == (
        "A joined 2026-01-01 | tier silver (since 2026-03-01, renewed 2026-03-02) | "
        "available 110 | pending 0"
    )
    row = next(line for line in out.splitlines() if line.startswith("R1 "))
    assert row.split() == ["R1", "mug", "40", "accepted"]


def test_a_folder_given_as_the_program_is_named_so(tmp_path):
    shop = small_shop(tmp_path)
    res = run_cli("run", str(tmp_path), "--data", str(shop.data), "--as-of", "2026-03-01")
    assert res.exit_code == 2
    assert "error[Y104] is a folder, not a program file" in res.output
    assert f"Pass the program's YAML file, e.g. {shop.program}." in " ".join(res.output.split())
