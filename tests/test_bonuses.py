"""Bonuses (welcome, birthday, referral, challenges) and adjustments: SPEC 4, 5 step 4, 9.11.

Each test builds a state in memory from a few literal rows, the run's temporary tables
(`cust_view`, `member_view`, `new_*`) as the run makes them, and checks hand-computed
ledger entries, grants and progress.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest

from loyalty_cli import state
from loyalty_cli.config.model import Program, with_defaults
from loyalty_cli.engine import bonuses
from loyalty_cli.engine.context import RunContext

D = dt.date
T = dt.datetime


def program(bonus_list: list[dict], **program_extra: object) -> Program:
    data = {
        "version": 1,
        "program": {
            "id": "club",
            "name": "Club",
            "currency": "PLN",
            "timezone": "UTC",
            "point_value": 0.02,
            **program_extra,
        },
        "sources": {
            "customers": {"path": "customers.csv"},
            "orders": {"path": "orders.csv"},
            "order_items": {"path": "items.csv"},
            "events": {"path": "events.csv"},
            "adjustments": {"path": "adjustments.csv"},
        },
        "earning": {"pending_days": 14, "rules": []},
        "bonuses": bonus_list,
    }
    return Program(Path("p.yaml"), with_defaults(data))


@pytest.fixture
def con():
    c = state.connect(None)
    c.execute("CREATE TEMP VIEW cust_view AS SELECT c.* EXCLUDE (extra) FROM customers c")
    c.execute(
        """CREATE TEMP VIEW member_view AS
        SELECT customer_id, 'base' AS tier, CAST(0 AS BIGINT) AS balance,
               CAST(0 AS BIGINT) AS pending, CAST(NULL AS BIGINT) AS days_since_last_order,
               CAST(0 AS BIGINT) AS orders_count, CAST(0 AS DECIMAL(18,2)) AS lifetime_spend,
               CAST(NULL AS INTEGER) AS r, CAST(NULL AS INTEGER) AS f, CAST(NULL AS INTEGER) AS m
        FROM customers"""
    )
    c.execute(
        """CREATE TEMP TABLE new_orders (
            order_id VARCHAR, customer_id VARCHAR, ordered_at TIMESTAMP, total DECIMAL(18,2),
            currency VARCHAR, status VARCHAR, channel VARCHAR, day DATE)"""
    )
    c.execute(
        """CREATE TEMP TABLE new_items (
            order_id VARCHAR, sku VARCHAR, quantity BIGINT, unit_price DECIMAL(18,2),
            category VARCHAR, tags VARCHAR[], item_seq BIGINT)"""
    )
    c.execute(
        """CREATE TEMP TABLE new_events (
            event_id VARCHAR, customer_id VARCHAR, type VARCHAR, occurred_at TIMESTAMP,
            properties JSON, event_key VARCHAR, day DATE)"""
    )
    c.execute(
        """CREATE TEMP TABLE new_adjustments (
            adjustment_id VARCHAR, customer_id VARCHAR, points BIGINT, reason VARCHAR,
            created_at TIMESTAMP, day DATE)"""
    )
    yield c
    c.close()


def add_customer(
    con, cid: str, joined_at: T, birth_date: D | None = None, referred_by: str | None = None
) -> None:
    con.execute(
        "INSERT INTO customers (customer_id, birth_date, joined_at, join_day, referred_by) "
        "VALUES (?, ?, ?, ?, ?)",
        [cid, birth_date, joined_at, joined_at.date(), referred_by],
    )


def new_order(con, oid: str, cid: str, at: T, total: str, status: str = "completed") -> None:
    con.execute(
        "INSERT INTO new_orders VALUES (?, ?, ?, CAST(? AS DECIMAL(18,2)), 'PLN', ?, NULL, ?)",
        [oid, cid, at, total, status, at.date()],
    )


def stored_order(
    con,
    oid: str,
    cid: str,
    at: T,
    total: str,
    *,
    returned: str = "0",
    returned_on: D | None = None,
    processed_on: D | None = None,
    status: str = "completed",
) -> None:
    """An order in the state as earning leaves it (release_on = day + 14); a `returned`
    amount is one return of it, on `returned_on` (default: the next day). A `cancelled`
    order with an amount returned was processed completed and re-exported cancelled: that
    return is its cancellation."""
    if Decimal(returned):
        day = returned_on or at.date() + dt.timedelta(days=1)
        con.execute(
            "INSERT INTO returns VALUES (?, ?, CAST(? AS DECIMAL(18,2)), ?, ?)",
            [oid, T.combine(day, dt.time(12)), returned, day, processed_on or day],
        )
    con.execute(
        """INSERT INTO orders (order_id, customer_id, ordered_at, day, total, status, release_on,
                               granted, qualifying, returned, reversed, qualifying_reversed,
                               processed_on, cancelled_on)
        VALUES (?, ?, ?, ?, CAST(? AS DECIMAL(18,2)), ?, ?, 0, 0, CAST(? AS DECIMAL(18,2)),
                0, 0, ?, ?)""",
        [
            oid,
            cid,
            at,
            at.date(),
            total,
            status,
            at.date() + dt.timedelta(days=14),
            returned,
            processed_on or at.date(),
            day if status == "cancelled" and Decimal(returned) else None,
        ],
    )


def clear_new(con) -> None:
    for table in ("new_orders", "new_items", "new_events", "new_adjustments"):
        con.execute(f"DELETE FROM {table}")


def run(con, prog: Program, as_of: D, window_start: D | None) -> RunContext:
    ctx = RunContext(con, prog, as_of, window_start)
    bonuses.apply_bonuses(ctx)
    bonuses.apply_adjustments(ctx)
    return ctx


def entries(con, kind: str | None = None) -> list[tuple]:
    """(customer_id, kind, points, rule_id, source_id, occurred_on, reason, shortfall)."""
    where = "WHERE kind = ?" if kind else ""
    return con.execute(
        f"""SELECT customer_id, kind, points, rule_id, source_id, occurred_on, reason, shortfall
        FROM ledger {where} ORDER BY entry_id""",
        [kind] if kind else [],
    ).fetchall()


def balance(con, cid: str) -> int:
    return con.execute(
        "SELECT coalesce(sum(remaining), 0) FROM lots WHERE customer_id = ? "
        "AND status = 'available'",
        [cid],
    ).fetchone()[0]


WELCOME = {"id": "welcome", "trigger": "joined", "points": 100}
BIRTHDAY = {"id": "birthday", "trigger": "birthday", "points": 200}
REFERRAL = {"id": "referral", "trigger": "referral", "points": {"referrer": 300, "referee": 100}}


# -- welcome -------------------------------------------------------------------------------


def test_welcome_once_in_the_run_holding_the_join_day(con):
    prog = program([WELCOME])
    add_customer(con, "A", T(2026, 3, 10, 9, 30))
    add_customer(con, "B", T(2026, 3, 11, 0, 0))
    ctx = run(con, prog, D(2026, 3, 10), D(2026, 3, 9))
    assert entries(con) == [("A", "bonus", 100, "welcome", "A", D(2026, 3, 10), None, 0)]
    assert ctx.counts["bonuses"] == {"welcome": 1}
    lot = con.execute(
        "SELECT customer_id, earned_on, available_on, amount, status, kind, rule_id FROM lots"
    ).fetchall()
    # Available points go to the member's lot of their expiry day (here: none, one lot).
    assert lot == [("A", D(2026, 3, 10), D(2026, 3, 10), 100, "available", "points", None)]
    assert con.execute("SELECT occurred_at FROM ledger").fetchone()[0] == T(2026, 3, 10, 9, 30)

    # The same day again: nothing more.
    ctx = run(con, prog, D(2026, 3, 10), D(2026, 3, 9))
    assert len(entries(con)) == 1
    assert "bonuses" not in ctx.counts

    # The next day: B only; A never again.
    run(con, prog, D(2026, 3, 11), D(2026, 3, 10))
    run(con, prog, D(2026, 3, 12), D(2026, 3, 11))
    assert [(e[0], e[2]) for e in entries(con)] == [("A", 100), ("B", 100)]
    assert con.execute(
        "SELECT bonus_id, customer_id, period, granted_on FROM bonus_grants ORDER BY customer_id"
    ).fetchall() == [
        ("welcome", "A", "once", D(2026, 3, 10)),
        ("welcome", "B", "once", D(2026, 3, 11)),
    ]


def test_first_run_welcomes_all_history_but_not_after_the_day(con):
    prog = program([WELCOME])
    add_customer(con, "A", T(2020, 1, 5, 12, 0))
    add_customer(con, "B", T(2026, 3, 10, 23, 59))
    add_customer(con, "C", T(2026, 3, 11, 0, 0))
    run(con, prog, D(2026, 3, 10), None)
    assert [(e[0], e[5]) for e in entries(con)] == [("A", D(2020, 1, 5)), ("B", D(2026, 3, 10))]


# -- birthday ------------------------------------------------------------------------------


def test_feb_29_birthday_is_feb_28_in_other_years(con):
    prog = program([BIRTHDAY])
    add_customer(con, "L", T(2020, 1, 1, 8, 0), birth_date=D(2000, 2, 29))
    run(con, prog, D(2027, 2, 27), D(2027, 2, 26))
    assert entries(con) == []
    run(con, prog, D(2027, 2, 28), D(2027, 2, 27))
    assert entries(con) == [("L", "bonus", 200, "birthday", "2027", D(2027, 2, 28), None, 0)]
    run(con, prog, D(2027, 3, 1), D(2027, 2, 28))
    run(con, prog, D(2027, 3, 1), D(2027, 2, 28))
    assert len(entries(con)) == 1

    # 2028 is a leap year: Feb 29, not Feb 28.
    run(con, prog, D(2028, 2, 28), D(2028, 2, 27))
    assert len(entries(con)) == 1
    run(con, prog, D(2028, 2, 29), D(2028, 2, 28))
    assert entries(con)[1] == ("L", "bonus", 200, "birthday", "2028", D(2028, 2, 29), None, 0)
    assert con.execute(
        "SELECT period, granted_on FROM bonus_grants ORDER BY period"
    ).fetchall() == [("2027", D(2027, 2, 28)), ("2028", D(2028, 2, 29))]


def test_birthdays_of_a_longer_window_each_count_once(con):
    prog = program([BIRTHDAY])
    add_customer(con, "A", T(2020, 1, 1, 8, 0), birth_date=D(1990, 3, 5))
    add_customer(con, "B", T(2020, 1, 1, 8, 0), birth_date=D(1991, 3, 1))  # the window's start
    add_customer(con, "C", T(2020, 1, 1, 8, 0), birth_date=D(1992, 3, 21))  # after it
    add_customer(con, "E", T(2020, 1, 1, 8, 0), birth_date=D(1993, 3, 20))  # its last day
    run(con, prog, D(2026, 3, 20), D(2026, 3, 1))
    assert [(e[0], e[5]) for e in entries(con)] == [("A", D(2026, 3, 5)), ("E", D(2026, 3, 20))]


def test_each_member_s_birthday_in_nightly_runs_of_the_same_year(con):
    """A member's birthday grant of a year does not stand for anyone else's: Ola's on
    9 March and Piotr's on 10 March are each granted by their night's run."""
    prog = program([BIRTHDAY])
    add_customer(con, "O", T(2020, 1, 1, 8, 0), birth_date=D(1990, 3, 9))
    add_customer(con, "P", T(2020, 1, 1, 8, 0), birth_date=D(1991, 3, 10))
    run(con, prog, D(2026, 3, 9), D(2026, 3, 8))
    run(con, prog, D(2026, 3, 10), D(2026, 3, 9))
    assert [(e[0], e[4], e[5]) for e in entries(con)] == [
        ("O", "2026", D(2026, 3, 9)),
        ("P", "2026", D(2026, 3, 10)),
    ]


def test_no_birthday_bonus_before_joining(con):
    prog = program([BIRTHDAY])
    add_customer(con, "J", T(2026, 5, 20, 10, 0), birth_date=D(1990, 5, 10))  # joined after
    add_customer(con, "K", T(2026, 5, 10, 18, 0), birth_date=D(1985, 5, 10))  # joined that day
    run(con, prog, D(2026, 5, 31), D(2026, 5, 1))
    assert [(e[0], e[4], e[5]) for e in entries(con)] == [("K", "2026", D(2026, 5, 10))]
    run(con, prog, D(2027, 5, 10), D(2026, 5, 31))
    assert [(e[0], e[4]) for e in entries(con)][1:] == [("J", "2027"), ("K", "2027")]


def test_first_run_gives_each_year_s_birthday_since_joining(con):
    prog = program([BIRTHDAY])
    add_customer(con, "M", T(2025, 6, 1, 10, 0), birth_date=D(1990, 3, 15))
    add_customer(con, "N", T(2025, 6, 1, 10, 0))  # no birth date: no bonus
    ctx = run(con, prog, D(2027, 4, 1), None)
    # 2025-03-15 is before joining; 2026 and 2027 are granted.
    assert [(e[0], e[4], e[5]) for e in entries(con)] == [
        ("M", "2026", D(2026, 3, 15)),
        ("M", "2027", D(2027, 3, 15)),
    ]
    assert ctx.counts["bonuses"] == {"birthday": 2}


# -- starts_on -----------------------------------------------------------------------------


def test_starts_on_excludes_earlier_trigger_days(con):
    prog = program([WELCOME, BIRTHDAY], starts_on="2026-04-01")
    add_customer(con, "A", T(2026, 3, 31, 23, 0), birth_date=D(1990, 4, 3))
    add_customer(con, "B", T(2026, 4, 1, 0, 0), birth_date=D(1990, 3, 20))
    run(con, prog, D(2026, 4, 5), None)
    # A: no welcome (joined before), birthday Apr 3 granted; B: welcome, March birthday not.
    # The bonuses of a run are booked together: entries in member order.
    assert [(e[0], e[3], e[5]) for e in entries(con)] == [
        ("A", "birthday", D(2026, 4, 3)),
        ("B", "welcome", D(2026, 4, 1)),
    ]


# -- referral ------------------------------------------------------------------------------


def test_referral_when_the_first_order_is_released(con):
    prog = program([REFERRAL])
    add_customer(con, "R", T(2026, 1, 1, 10, 0))
    add_customer(con, "E", T(2026, 2, 1, 10, 0), referred_by="R")
    add_customer(con, "S", T(2026, 2, 1, 10, 0), referred_by="S")  # self-referral
    add_customer(con, "U", T(2026, 2, 1, 10, 0), referred_by="nobody")  # unknown referrer
    stored_order(con, "o1", "E", T(2026, 3, 1, 12, 0), "100.00", returned="40.00")
    stored_order(con, "o2", "E", T(2026, 3, 2, 12, 0), "50.00")
    stored_order(con, "s1", "S", T(2026, 3, 1, 12, 0), "100.00")
    stored_order(con, "u1", "U", T(2026, 3, 1, 12, 0), "100.00")
    run(con, prog, D(2026, 3, 14), D(2026, 3, 13))
    assert entries(con) == []
    ctx = run(con, prog, D(2026, 3, 15), D(2026, 3, 14))
    # o1 releases on Mar 15; partly returned is still not fully returned.
    assert entries(con) == [
        ("E", "bonus", 100, "referral", "o1", D(2026, 3, 15), "referee", 0),
        ("R", "bonus", 300, "referral", "E", D(2026, 3, 15), "referrer", 0),
    ]
    assert ctx.counts["bonuses"] == {"referral": 1}
    run(con, prog, D(2026, 3, 15), D(2026, 3, 14))
    run(con, prog, D(2026, 3, 16), D(2026, 3, 15))  # o2 releases: not the first order
    assert len(entries(con)) == 2
    assert con.execute(
        "SELECT customer_id, period FROM bonus_grants ORDER BY customer_id"
    ).fetchall() == [("E", "once"), ("R", "referee:E")]


def test_no_referral_when_the_first_order_is_fully_returned(con):
    prog = program([REFERRAL])
    add_customer(con, "R", T(2026, 1, 1, 10, 0))
    add_customer(con, "F", T(2026, 2, 1, 10, 0), referred_by="R")
    add_customer(con, "G", T(2026, 2, 1, 10, 0), referred_by="R")
    stored_order(con, "f1", "F", T(2026, 3, 1, 12, 0), "80.00", returned="80.00")
    stored_order(con, "f2", "F", T(2026, 3, 3, 12, 0), "90.00")
    # G's first order was completed, then re-exported as cancelled: a full return.
    stored_order(
        con, "g1", "G", T(2026, 3, 1, 12, 0), "70.00", returned="70.00", status="cancelled"
    )
    stored_order(con, "g2", "G", T(2026, 3, 2, 12, 0), "60.00")
    for day in range(15, 19):
        run(con, prog, D(2026, 3, day), D(2026, 3, day - 1))
    assert entries(con) == []


def test_referral_stands_when_the_first_order_is_returned_after_its_release_day(con):
    """A first run holds the whole history: the order returned in full after its release
    day had been released, so the referral is paid as nightly runs would have paid it."""
    prog = program([REFERRAL])
    add_customer(con, "R", T(2026, 1, 1, 10, 0))
    add_customer(con, "E", T(2026, 2, 1, 10, 0), referred_by="R")
    add_customer(con, "F", T(2026, 2, 1, 10, 0), referred_by="R")
    # E's order releases on Mar 15 and comes back in full on Mar 20; F's comes back in full
    # on its release day, Mar 15, whose nightly run takes the return before the bonuses.
    stored_order(
        con, "e1", "E", T(2026, 3, 1, 12, 0), "80.00", returned="80.00", returned_on=D(2026, 3, 20)
    )
    stored_order(
        con, "f1", "F", T(2026, 3, 1, 12, 0), "90.00", returned="90.00", returned_on=D(2026, 3, 15)
    )
    run(con, prog, D(2026, 3, 31), None)
    assert entries(con) == [
        ("E", "bonus", 100, "referral", "e1", D(2026, 3, 15), "referee", 0),
        ("R", "bonus", 300, "referral", "E", D(2026, 3, 15), "referrer", 0),
    ]


def test_referral_for_a_late_order_already_past_its_release_day(con):
    prog = program([REFERRAL])
    add_customer(con, "R", T(2026, 1, 1, 10, 0))
    add_customer(con, "E", T(2026, 2, 1, 10, 0), referred_by="R")
    # Ordered Feb 10 (release Feb 24) but first exported on Mar 20.
    stored_order(con, "o1", "E", T(2026, 2, 10, 12, 0), "100.00", processed_on=D(2026, 3, 20))
    run(con, prog, D(2026, 3, 20), D(2026, 3, 19))
    assert [(e[0], e[2], e[5]) for e in entries(con)] == [
        ("E", 100, D(2026, 2, 24)),
        ("R", 300, D(2026, 2, 24)),
    ]


# -- challenges ----------------------------------------------------------------------------

WEEKLY = {
    "id": "twice-a-week",
    "trigger": "challenge",
    "period": "week",
    "on": "order",
    "when": "order.total >= 50",
    "goal": {"count": 2},
    "points": 150,
    "badge": "regular",
}


def progress(con) -> list[tuple]:
    return con.execute(
        "SELECT customer_id, period, n, total, achieved_on FROM challenge_progress "
        "ORDER BY customer_id, period"
    ).fetchall()


def test_weekly_count_goal_reached_in_a_second_run(con):
    prog = program([WEEKLY])
    add_customer(con, "A", T(2026, 1, 1, 10, 0))
    # ISO week 2026-W11 is Mon Mar 9 .. Sun Mar 15.
    new_order(con, "a1", "A", T(2026, 3, 10, 10, 0), "60.00")
    new_order(con, "a0", "A", T(2026, 3, 10, 11, 0), "10.00")  # does not match `when`
    run(con, prog, D(2026, 3, 10), D(2026, 3, 9))
    assert entries(con) == []
    assert progress(con) == [("A", "2026-W11", 1, Decimal("1.00"), None)]

    clear_new(con)
    new_order(con, "a2", "A", T(2026, 3, 12, 9, 0), "70.00")
    new_order(con, "a3", "A", T(2026, 3, 12, 15, 0), "80.00")
    ctx = run(con, prog, D(2026, 3, 12), D(2026, 3, 11))
    assert entries(con) == [
        ("A", "bonus", 150, "twice-a-week", "2026-W11", D(2026, 3, 12), None, 0)
    ]
    assert con.execute("SELECT occurred_at FROM ledger").fetchone()[0] == T(2026, 3, 12, 9, 0)
    assert ctx.counts["bonuses"] == {"twice-a-week": 1}
    assert progress(con) == [("A", "2026-W11", 3, Decimal("3.00"), D(2026, 3, 12))]
    assert con.execute("SELECT * FROM badges").fetchall() == [
        ("A", "regular", "twice-a-week", "2026-W11", D(2026, 3, 12))
    ]

    # Rerun with nothing new, then more orders the same week: once per period.
    clear_new(con)
    run(con, prog, D(2026, 3, 12), D(2026, 3, 11))
    new_order(con, "a4", "A", T(2026, 3, 13, 9, 0), "90.00")
    new_order(con, "a5", "A", T(2026, 3, 13, 10, 0), "95.00")
    run(con, prog, D(2026, 3, 13), D(2026, 3, 12))
    assert len(entries(con)) == 1
    assert progress(con)[0][2] == 5


def test_iso_week_boundary_splits_the_periods(con):
    prog = program([WEEKLY])
    add_customer(con, "Y", T(2026, 1, 1, 10, 0))
    # Sunday Jan 3 2027 belongs to 2026-W53; Monday Jan 4 starts 2027-W01.
    new_order(con, "y1", "Y", T(2027, 1, 3, 22, 0), "60.00")
    new_order(con, "y2", "Y", T(2027, 1, 4, 8, 0), "60.00")
    run(con, prog, D(2027, 1, 4), D(2027, 1, 2))
    assert entries(con) == []
    assert progress(con) == [
        ("Y", "2026-W53", 1, Decimal("1.00"), None),
        ("Y", "2027-W01", 1, Decimal("1.00"), None),
    ]
    clear_new(con)
    new_order(con, "y3", "Y", T(2027, 1, 5, 8, 0), "60.00")
    run(con, prog, D(2027, 1, 5), D(2027, 1, 4))
    assert [(e[0], e[4], e[5]) for e in entries(con)] == [("Y", "2027-W01", D(2027, 1, 5))]


def test_sum_goal_over_order_items(con):
    prog = program(
        [
            {
                "id": "new-in-month",
                "trigger": "challenge",
                "period": "month",
                "on": "order_item",
                "when": "list_contains(item.tags, 'new')",
                "goal": {"sum": "item.unit_price * item.quantity", "at_least": 300},
                "points": 250,
            }
        ]
    )
    add_customer(con, "A", T(2026, 1, 1, 10, 0))
    new_order(con, "o1", "A", T(2026, 3, 2, 10, 0), "999.00")
    new_order(con, "o2", "A", T(2026, 3, 5, 10, 0), "120.00")
    new_order(con, "o3", "A", T(2026, 3, 6, 10, 0), "500.00", status="cancelled")
    con.execute(
        """INSERT INTO new_items VALUES
        ('o1', 's1', 1, 100.00, NULL, ['new'], 1),
        ('o1', 's2', 2, 50.00, NULL, ['new', 'sale'], 2),
        ('o1', 's3', 1, 799.00, NULL, ['old'], 3),
        ('o2', 's4', 1, 99.99, NULL, ['new'], 1),
        ('o2', 's5', 1, 20.01, NULL, ['new'], 2),
        ('o3', 's6', 1, 500.00, NULL, ['new'], 1)"""
    )
    run(con, prog, D(2026, 3, 6), D(2026, 3, 1))
    # 100 + 100 = 200 by o1; o2's first item makes 299.99, its second 320.00.
    assert entries(con) == [("A", "bonus", 250, "new-in-month", "2026-03", D(2026, 3, 5), None, 0)]
    assert progress(con) == [("A", "2026-03", 4, Decimal("320.00"), D(2026, 3, 5))]
    assert con.execute("SELECT count(*) FROM badges").fetchone()[0] == 0


def test_event_challenge_per_day(con):
    prog = program(
        [
            {
                "id": "daily-reader",
                "trigger": "challenge",
                "period": "day",
                "on": "event",
                "when": "event.type = 'email_open'",
                "goal": {"count": 1},
                "points": 5,
            }
        ]
    )
    add_customer(con, "A", T(2026, 1, 1, 10, 0))
    con.execute(
        """INSERT INTO new_events VALUES
        ('e1', 'A', 'email_open', TIMESTAMP '2026-03-10 08:00', NULL, 'e1', DATE '2026-03-10'),
        ('e2', 'A', 'email_open', TIMESTAMP '2026-03-10 09:00', NULL, 'e2', DATE '2026-03-10'),
        ('e3', 'A', 'click', TIMESTAMP '2026-03-11 09:00', NULL, 'e3', DATE '2026-03-11'),
        ('e4', 'A', 'email_open', TIMESTAMP '2026-03-11 10:00', NULL, 'e4', DATE '2026-03-11')"""
    )
    run(con, prog, D(2026, 3, 11), D(2026, 3, 9))
    assert [(e[4], e[5], e[2]) for e in entries(con)] == [
        ("2026-03-10", D(2026, 3, 10), 5),
        ("2026-03-11", D(2026, 3, 11), 5),
    ]


def test_challenge_rows_before_starts_on_do_not_count(con):
    prog = program([WEEKLY], starts_on="2026-03-11")
    add_customer(con, "A", T(2026, 1, 1, 10, 0))
    new_order(con, "a1", "A", T(2026, 3, 10, 10, 0), "60.00")
    new_order(con, "a2", "A", T(2026, 3, 11, 10, 0), "60.00")
    run(con, prog, D(2026, 3, 11), D(2026, 3, 9))
    assert entries(con) == []
    assert progress(con) == [("A", "2026-W11", 1, Decimal("1.00"), None)]


# -- adjustments ---------------------------------------------------------------------------


def test_adjustments_credit_debit_and_shortfall(con):
    prog = program([WELCOME])
    add_customer(con, "A", T(2026, 3, 1, 10, 0))
    add_customer(con, "B", T(2025, 1, 1, 10, 0))
    con.execute(
        """INSERT INTO new_adjustments VALUES
        ('adj1', 'A', 50, 'goodwill', TIMESTAMP '2026-03-01 12:00', DATE '2026-03-01'),
        ('adj2', 'A', -30, 'duplicate order', TIMESTAMP '2026-03-01 13:00', DATE '2026-03-01'),
        ('adj3', 'A', 0, 'noop', TIMESTAMP '2026-03-01 14:00', DATE '2026-03-01'),
        ('adj4', 'B', -40, 'fraud', TIMESTAMP '2026-03-01 15:00', DATE '2026-03-01')"""
    )
    ctx = run(con, prog, D(2026, 3, 1), D(2026, 2, 28))
    assert entries(con, "adjust") == [
        ("A", "adjust", 50, None, "adj1", D(2026, 3, 1), "goodwill", 0),
        ("A", "adjust", -30, None, "adj2", D(2026, 3, 1), "duplicate order", 0),
        ("B", "adjust", 0, None, "adj4", D(2026, 3, 1), "fraud", 40),
    ]
    assert balance(con, "A") == 100 + 50 - 30
    assert balance(con, "B") == 0
    assert ctx.counts["adjustments"] == {"credits": 1, "debits": 2}
    assert con.execute(
        "SELECT adjustment_id, customer_id, points, reason, processed_on FROM adjustments "
        "ORDER BY adjustment_id"
    ).fetchall() == [
        ("adj1", "A", 50, "goodwill", D(2026, 3, 1)),
        ("adj2", "A", -30, "duplicate order", D(2026, 3, 1)),
        ("adj3", "A", 0, "noop", D(2026, 3, 1)),
        ("adj4", "B", -40, "fraud", D(2026, 3, 1)),
    ]
    # Welcome and goodwill points share a lot (no expiry): 150 credited, 30 taken.
    assert con.execute(
        "SELECT kind, amount, remaining, earned_on FROM lots WHERE customer_id = 'A' "
        "ORDER BY lot_id"
    ).fetchall() == [("points", 150, 120, D(2026, 3, 1))]
