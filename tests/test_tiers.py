"""Tier step (SPEC 5 step 7, 9.5, 9.13, 9.14) on literal rows in an in-memory state."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from loyalty_cli import state
from loyalty_cli.config.model import Program, with_defaults
from loyalty_cli.engine.context import RunContext
from loyalty_cli.engine.segments import refresh_order_days
from loyalty_cli.engine.tiers import apply_tiers, member_tiers_sql, tier_as_of_sql

LEVELS = [
    {"id": "bronze", "name": "Bronze", "min": 0},
    {"id": "silver", "name": "Silver", "min": 1000, "multiplier": 1.25},
    {"id": "gold", "name": "Gold", "min": 5000, "multiplier": 1.5},
]
D = date(2026, 3, 31)


def make_program(tiers: dict | None = None, **overrides: object) -> Program:
    data: dict = {
        "version": 1,
        "program": {"id": "club", "name": "Club", "currency": "PLN", "timezone": "Europe/Warsaw"},
    }
    if tiers is not None or overrides:
        data["tiers"] = {"levels": LEVELS, **(tiers or {}), **overrides}
    return Program(Path("p.yaml"), with_defaults(data))


@pytest.fixture
def con():
    c = state.connect(None)
    yield c
    c.close()


def add_customer(con, customer_id: str, join_day: date = date(2025, 1, 1)) -> None:
    con.execute(
        "INSERT INTO customers (customer_id, joined_at, join_day) VALUES (?, ?, ?)",
        [customer_id, join_day, join_day],
    )


_order_seq = iter(range(1, 10**6))


def add_order(
    con,
    customer_id: str,
    day: date,
    total: str = "0",
    *,
    returned: str = "0",
    status: str = "completed",
    qualifying: int = 0,
    qualifying_reversed: int = 0,
) -> None:
    con.execute(
        """INSERT INTO orders (order_id, customer_id, ordered_at, day, total, status, returned,
                               qualifying, qualifying_reversed)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            f"o{next(_order_seq)}",
            customer_id,
            day,
            day,
            Decimal(total),
            status,
            Decimal(returned),
            qualifying,
            qualifying_reversed,
        ],
    )


def set_tier(con, customer_id: str, tier: str, renewed_on: date, since: date | None = None):
    con.execute(
        "INSERT INTO tiers VALUES (?, ?, ?, ?)",
        [customer_id, tier, renewed_on, since or renewed_on],
    )


def run(con, program: Program, day: date) -> RunContext:
    ctx = RunContext(con=con, program=program, as_of=day, window_start=day - timedelta(days=1))
    # As a run does: order_days (the spend basis) is brought up to date before the tier step.
    refresh_order_days(ctx, everyone=True)
    apply_tiers(ctx)
    return ctx


def tier_of(con, customer_id: str):
    return con.execute(
        "SELECT tier, renewed_on, since FROM tiers WHERE customer_id = ?", [customer_id]
    ).fetchone()


def changes(con) -> list[tuple]:
    return con.execute(
        """SELECT customer_id, from_tier, to_tier, change, effective_on, basis
        FROM tier_changes ORDER BY customer_id, effective_on"""
    ).fetchall()


def test_promotion_on_the_exact_day_the_basis_reaches_min(con):
    program = make_program({})
    add_customer(con, "a")
    add_order(con, "a", D - timedelta(days=1), "600")
    ctx = run(con, program, D - timedelta(days=1))
    assert tier_of(con, "a") == ("bronze", D - timedelta(days=1), date(2025, 1, 1))
    assert changes(con) == []
    assert "promoted" not in ctx.counts["tiers"]

    add_order(con, "a", D, "400")  # 600 + 400 = 1000 = silver's min
    ctx = run(con, program, D)
    assert tier_of(con, "a") == ("silver", D, D)
    assert changes(con) == [("a", "bronze", "silver", "up", D, Decimal("1000.00"))]
    assert ctx.counts["tiers"] == {"promoted": 1}


def test_promotion_goes_straight_to_the_qualified_level(con):
    add_customer(con, "a")
    add_order(con, "a", D, "5000")
    run(con, make_program({}), D)
    assert tier_of(con, "a")[0] == "gold"
    assert changes(con) == [("a", "bronze", "gold", "up", D, Decimal("5000.00"))]


def test_spend_is_net_of_returns_and_never_below_zero_per_order(con):
    for c in ("net", "floor", "cancelled"):
        add_customer(con, c)
    add_order(con, "net", D, "1200", returned="300")  # 900: stays bronze
    add_order(con, "floor", D, "1000")
    add_order(con, "floor", D, "50", returned="80")  # counts 0, not -30
    add_order(con, "cancelled", D, "5000", status="cancelled")
    run(con, make_program({}), D)
    assert tier_of(con, "net")[0] == "bronze"
    assert tier_of(con, "floor")[0] == "silver"
    assert tier_of(con, "cancelled")[0] == "bronze"
    assert changes(con) == [("floor", "bronze", "silver", "up", D, Decimal("1000.00"))]


def test_window_boundary(con):
    program = make_program({"window": "30 days"})
    for c in ("outside", "inside", "future"):
        add_customer(con, c)
    add_order(con, "outside", D - timedelta(days=30), "1000")  # 2026-03-01: not in (03-01, 03-31]
    add_order(con, "inside", D - timedelta(days=29), "1000")  # 2026-03-02: first day in
    add_order(con, "future", D + timedelta(days=1), "1000")  # after D: waits
    run(con, program, D)
    assert [tier_of(con, c)[0] for c in ("outside", "inside", "future")] == [
        "bronze",
        "silver",
        "bronze",
    ]


def test_members_who_join_after_d_are_left_out(con):
    add_customer(con, "early", D)
    add_customer(con, "late", D + timedelta(days=1))
    run(con, make_program({}), D)
    assert tier_of(con, "early") == ("bronze", D, D)
    assert tier_of(con, "late") is None


def test_renewal_moves_the_renewal_day_without_a_change(con):
    program = make_program({})
    add_customer(con, "a")
    set_tier(con, "a", "silver", date(2025, 6, 1), date(2025, 2, 1))
    add_order(con, "a", D, "1500")
    ctx = run(con, program, D)
    assert tier_of(con, "a") == ("silver", D, date(2025, 2, 1))
    assert changes(con) == []
    assert ctx.counts["tiers"] == {"renewed": 1}


def test_retain_keeps_the_tier_until_exactly_retain_has_passed(con):
    program = make_program({"window": "5 days", "retain": "10 days"})
    add_customer(con, "a")
    add_order(con, "a", date(2026, 3, 1), "1000")
    run(con, program, date(2026, 3, 1))
    assert tier_of(con, "a") == ("silver", date(2026, 3, 1), date(2026, 3, 1))

    run(con, program, date(2026, 3, 6))  # the order left the window: q = bronze
    run(con, program, date(2026, 3, 10))  # 9 days after the renewal: kept
    assert tier_of(con, "a") == ("silver", date(2026, 3, 1), date(2026, 3, 1))

    ctx = run(con, program, date(2026, 3, 11))  # 10 days: demoted
    assert tier_of(con, "a") == ("bronze", date(2026, 3, 11), date(2026, 3, 11))
    assert changes(con)[-1] == ("a", "silver", "bronze", "down", date(2026, 3, 11), Decimal(0))
    assert ctx.counts["tiers"] == {"demoted": 1}


def test_retain_in_months_clamps_to_the_month_end(con):
    program = make_program({"retain": "1 month"})
    add_customer(con, "a")
    set_tier(con, "a", "silver", date(2026, 1, 31))
    run(con, program, date(2026, 2, 27))
    assert tier_of(con, "a")[0] == "silver"
    run(con, program, date(2026, 2, 28))  # Jan 31 + 1 month = Feb 28
    assert tier_of(con, "a")[0] == "bronze"


@pytest.mark.parametrize(
    ("downgrade", "expected"), [("one_level", "silver"), ("to_qualified", "bronze")]
)
def test_demotion_from_gold_with_bronze_basis(con, downgrade, expected):
    program = make_program({"downgrade": downgrade})
    add_customer(con, "a")
    set_tier(con, "a", "gold", date(2025, 3, 31))  # exactly 365 days before D
    add_order(con, "a", D, "100")
    run(con, program, D)
    assert tier_of(con, "a") == (expected, D, D)
    assert changes(con) == [("a", "gold", expected, "down", D, Decimal("100.00"))]


def test_one_level_drops_one_more_level_after_another_retain(con):
    program = make_program({"window": "30 days"})
    add_customer(con, "a")
    set_tier(con, "a", "gold", date(2025, 1, 1))
    run(con, program, D)
    assert tier_of(con, "a") == ("silver", D, D)

    run(con, program, D + timedelta(days=364))
    assert tier_of(con, "a") == ("silver", D, D)
    run(con, program, D + timedelta(days=365))
    later = D + timedelta(days=365)
    assert tier_of(con, "a") == ("bronze", later, later)
    assert [c[1:4] for c in changes(con)] == [
        ("gold", "silver", "down"),
        ("silver", "bronze", "down"),
    ]


def test_to_qualified_stops_at_the_qualified_level(con):
    program = make_program({"downgrade": "to_qualified"})
    add_customer(con, "a")
    set_tier(con, "a", "gold", date(2025, 1, 1))
    add_order(con, "a", D, "1200")
    run(con, program, D)
    assert tier_of(con, "a")[0] == "silver"


def test_points_basis(con):
    program = make_program({"basis": "points", "window": "30 days"})
    for c in ("exact", "short"):
        add_customer(con, c)
        # Outside the window: ignored.
        add_order(con, c, D - timedelta(days=30), qualifying=5000)
        con.execute("INSERT INTO qualifying_days VALUES (?, ?, 5000)", [c, D - timedelta(days=30)])
    # 800 - 100 + 300 = 1000: silver.
    add_order(con, "exact", D - timedelta(days=3), "1", qualifying=800, qualifying_reversed=100)
    con.execute("INSERT INTO qualifying_days VALUES ('exact', ?, 300)", [D])
    # 800 - 101 + 300 = 999: bronze.
    add_order(con, "short", D, "1", qualifying=800, qualifying_reversed=101)
    con.execute("INSERT INTO qualifying_days VALUES ('short', ?, 300)", [D - timedelta(days=29)])
    run(con, program, D)
    assert tier_of(con, "exact")[0] == "silver"
    assert tier_of(con, "short")[0] == "bronze"
    assert changes(con) == [("exact", "bronze", "silver", "up", D, Decimal("1000.00"))]


def _snapshot(con):
    tiers = con.execute("SELECT * FROM tiers ORDER BY customer_id").fetchall()
    return tiers, changes(con)


def test_a_second_run_for_the_same_day_changes_nothing(con):
    program = make_program({"retain": "0 days"})
    for c in ("up", "down", "renew", "low"):
        add_customer(con, c)
    add_order(con, "up", D, "6000")
    set_tier(con, "down", "gold", date(2025, 1, 1))
    set_tier(con, "renew", "silver", date(2025, 12, 1))
    add_order(con, "renew", D, "1000")
    first = run(con, program, D)
    assert first.counts["tiers"] == {"promoted": 1, "demoted": 1, "renewed": 1}
    before = _snapshot(con)
    assert before[0] == [
        ("down", "silver", D, D),
        ("low", "bronze", D, date(2025, 1, 1)),
        ("renew", "silver", D, date(2025, 12, 1)),
        ("up", "gold", D, D),
    ]

    second = run(con, program, D)
    assert _snapshot(con) == before
    assert "tiers" not in second.counts


def test_a_rerun_with_new_data_amends_the_days_change(con):
    program = make_program({})
    add_customer(con, "a")
    add_order(con, "a", D, "1000")
    run(con, program, D)
    add_order(con, "a", D, "4000")  # a late export for the same day
    run(con, program, D)
    assert changes(con) == [("a", "bronze", "gold", "up", D, Decimal("5000.00"))]
    assert tier_of(con, "a") == ("gold", D, D)


def test_a_rerun_that_undoes_the_days_change_leaves_no_change(con):
    program = make_program({"window": "5 days", "retain": "10 days"})
    add_customer(con, "a")
    add_order(con, "a", date(2026, 1, 1), "5000")
    run(con, program, date(2026, 1, 1))
    run(con, program, date(2026, 1, 15))
    assert tier_of(con, "a") == ("silver", date(2026, 1, 15), date(2026, 1, 15))
    add_order(con, "a", date(2026, 1, 15), "5000")  # a late export for the same day
    ctx = run(con, program, date(2026, 1, 15))
    assert tier_of(con, "a") == ("gold", date(2026, 1, 15), date(2026, 1, 1))
    assert [c[1:5] for c in changes(con)] == [("bronze", "gold", "up", date(2026, 1, 1))]
    # The rerun undid the day's demotion: the day's counts add up to the renewal of gold
    # (basis 5000 >= 5000) that one run of the day would have counted.
    assert ctx.counts["tiers"] == {"demoted": -1, "renewed": 1}


def test_a_level_removed_from_the_program_reads_as_the_lowest(con):
    program = make_program({})
    add_customer(con, "a")
    set_tier(con, "a", "platinum", date(2026, 1, 1))
    assert con.execute(member_tiers_sql(RunContext(con, program, D))).fetchall() == [
        ("a", "bronze")
    ]
    add_order(con, "a", D, "1000")
    run(con, program, D)
    assert changes(con) == [("a", "platinum", "silver", "up", D, Decimal("1000.00"))]


def test_tier_as_of_applies_a_change_from_the_next_day(con):
    program = make_program({})
    add_customer(con, "a")
    add_customer(con, "b")
    add_order(con, "a", D, "1000")
    ctx = run(con, program, D)
    rows = """SELECT * FROM (VALUES ('a', DATE '2026-03-31'), ('a', DATE '2026-04-01'),
                                    ('b', DATE '2026-04-01')) v(customer_id, day)"""
    got = con.execute(f"SELECT * FROM ({tier_as_of_sql(ctx, rows)}) ORDER BY ALL").fetchall()
    assert got == [
        ("a", D, "bronze", Decimal("1.0000")),
        ("a", D + timedelta(days=1), "silver", Decimal("1.2500")),
        ("b", D + timedelta(days=1), "bronze", Decimal("1.0000")),
    ]
    types = con.execute(f"SELECT * FROM ({tier_as_of_sql(ctx, rows)})").description
    assert str(types[3][1]) == "DECIMAL(9,4)"


def test_tier_as_of_takes_a_timestamp_column(con):
    program = make_program({})
    add_customer(con, "a")
    add_order(con, "a", D, "5000")
    ctx = run(con, program, D)
    rows = "SELECT 'a' AS customer_id, TIMESTAMP '2026-04-01 00:00:00' AS ordered_at"
    got = con.execute(tier_as_of_sql(ctx, rows, "ordered_at")).fetchall()
    assert got == [("a", datetime(2026, 4, 1), "gold", Decimal("1.5000"))]


def test_member_tiers(con):
    program = make_program({})
    add_customer(con, "a")
    add_customer(con, "b")
    set_tier(con, "a", "gold", D)
    ctx = RunContext(con, program, D)
    got = con.execute(f"SELECT * FROM ({member_tiers_sql(ctx)}) ORDER BY customer_id").fetchall()
    assert got == [("a", "gold"), ("b", "bronze")]


def test_without_tiers_nothing_happens(con):
    program = make_program()
    add_customer(con, "a")
    add_order(con, "a", D, "9000")
    ctx = run(con, program, D)
    assert con.execute("SELECT count(*) FROM tiers").fetchone() == (0,)
    assert not ctx.counts
    rows = "SELECT 'a' AS customer_id, DATE '2026-04-01' AS day"
    assert con.execute(tier_as_of_sql(ctx, rows)).fetchall() == [
        ("a", D + timedelta(days=1), None, Decimal("1.0000"))
    ]
    assert con.execute(member_tiers_sql(ctx)).fetchall() == [("a", None)]


def test_lowest_level_members_are_not_rewritten_to_renew(con):
    # Nobody drops below the lowest level, so its renewal day is not kept up to date;
    # members above it are renewed as of D when they still qualify.
    program = make_program({})
    add_customer(con, "low")
    add_customer(con, "high")
    add_order(con, "high", D - timedelta(days=3), "1200")
    set_tier(con, "low", "bronze", date(2026, 1, 1))
    set_tier(con, "high", "silver", date(2026, 1, 1))
    run(con, program, D)
    assert tier_of(con, "low") == ("bronze", date(2026, 1, 1), date(2026, 1, 1))
    assert tier_of(con, "high") == ("silver", D, date(2026, 1, 1))
    assert changes(con) == []


def test_a_rerun_decides_from_the_tier_at_the_start_of_the_day(con):
    """Silver (renewed 2026-03-20, retain 365 days) promoted to gold on D; a late return
    in a rerun of D brings the basis to 600, below silver's 1000: one run of D would have
    kept silver (retain not passed), so the rerun ends the day at silver, with no change.
    Its renewal day is D: the start tier's own renewal day is not kept by the first run, and
    counting it renewed on D keeps the member from being demoted on a guess."""
    program = make_program({})
    add_customer(con, "a")
    set_tier(con, "a", "silver", date(2026, 3, 20), since=date(2026, 2, 1))
    con.execute(
        "INSERT INTO tier_changes VALUES ('a', 'bronze', 'silver', 'up', ?, 1000)",
        [date(2026, 2, 1)],
    )
    add_order(con, "a", D, "5000")
    first = run(con, program, D)
    assert tier_of(con, "a") == ("gold", D, D)
    assert first.counts["tiers"] == {"promoted": 1}
    con.execute("UPDATE orders SET returned = 4400")  # a late return: 5000 - 4400 = 600
    second = run(con, program, D)
    assert tier_of(con, "a") == ("silver", D, date(2026, 2, 1))
    assert [c[1:5] for c in changes(con)] == [("bronze", "silver", "up", date(2026, 2, 1))]
    assert second.counts["tiers"] == {"promoted": -1}  # the day's net: no change
