"""Earning, pending and release, returns, FIFO debits and expiry, end to end on literal rows."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from enginekit import Shop, customer, event, item, order


def test_fifo_across_three_lots_with_partial_expiry(tmp_path):
    shop = Shop(
        tmp_path,
        """
        earning:
          rules:
            - {id: big, on: event, when: "event.type = 'big'", points: 6}
            - {id: mid, on: event, when: "event.type = 'mid'", points: 5}
            - {id: small, on: event, when: "event.type = 'small'", points: 4}
            - {id: unsub, on: event, when: "event.type = 'unsubscribe'", points: -8}
        expiry:
          after: 10 days
        """,
    )
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.add(
        "events",
        event("e1", "A", "2026-01-01 09:00", "big"),
        event("e2", "A", "2026-01-02 09:00", "mid"),
        event("e3", "A", "2026-01-03 09:00", "small"),
    )
    shop.run("2026-01-03")
    assert shop.lots("A") == [
        ("2026-01-01", 6, 6, "available"),
        ("2026-01-02", 5, 5, "available"),
        ("2026-01-03", 4, 4, "available"),
    ]
    shop.add(
        "events",
        {
            "event_id": "u1",
            "customer_id": "A",
            "type": "unsubscribe",
            "occurred_at": "2026-01-04 12:00",
        },
    )
    shop.run("2026-01-04")
    # The debit of 8 takes the oldest lot whole (6) and 2 of the next one.
    assert shop.lots("A") == [
        ("2026-01-01", 6, 0, "available"),
        ("2026-01-02", 5, 3, "available"),
        ("2026-01-03", 4, 4, "available"),
    ]
    assert shop.ledger("A", "2026-01-04") == [("debit", -8, 0, "unsub", 0)]
    # Catch up to Jan 12: the Jan 1 lot (usable through Jan 11) has nothing left; the Jan 2
    # lot is usable through Jan 12 and its remaining 3 expire in the run of Jan 12.
    shop.run("2026-01-12")
    assert shop.ledger("A", "2026-01-11") == []
    assert shop.ledger("A", "2026-01-12") == [("expire", -3, 0, None, 0)]
    assert shop.balance("A") == (4, 0)
    bal = shop.csv("2026-01-12", "balances.csv")[0]
    assert (bal["next_expiry_on"], bal["next_expiry_points"]) == ("2026-01-13", "4")


def test_fifo_partial_consumption_then_expiry(tmp_path):
    shop = Shop(
        tmp_path,
        """
        earning:
          rules:
            - {id: visit, on: event, when: "event.type = 'visit'", points: 10}
            - {id: cart, on: event, when: "event.type = 'cart_abandoned'", points: -14}
        expiry:
          after: 2 days
        """,
    )
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.add(
        "events",
        event("v1", "A", "2026-01-01 09:00", "visit"),
        event("v2", "A", "2026-01-02 09:00", "visit"),
        event("v3", "A", "2026-01-03 09:00", "visit"),
    )
    shop.run("2026-01-03")
    # Lots of 10 earned Jan 1, 2, 3; usable through Jan 3, 4, 5.
    shop.add(
        "events",
        {
            "event_id": "c1",
            "customer_id": "A",
            "type": "cart_abandoned",
            "occurred_at": "2026-01-04 10:00",
        },
    )
    shop.run("2026-01-04")
    # Jan 4: the Jan 1 lot expired at the end of Jan 3 (run of Jan 3), so 20 are left;
    # the debit of 14 takes 10 from the Jan 2 lot and 4 from the Jan 3 lot; then the Jan 2
    # lot (usable through Jan 4) is empty, nothing else expires on Jan 4.
    assert shop.lots("A") == [
        ("2026-01-01", 10, 0, "available"),
        ("2026-01-02", 10, 0, "available"),
        ("2026-01-03", 10, 6, "available"),
    ]
    assert shop.ledger("A", "2026-01-03")[-1] == ("expire", -10, 0, None, 0)
    shop.run("2026-01-05")
    # The Jan 3 lot's remaining 6 expire at the end of Jan 5.
    assert shop.ledger("A", "2026-01-05") == [("expire", -6, 0, None, 0)]
    assert shop.balance("A") == (0, 0)
    bal = shop.csv("2026-01-05", "balances.csv")
    assert bal == [
        {
            "customer_id": "A",
            "available": "0",
            "pending": "0",
            "tier": "",
            "next_expiry_on": "",
            "next_expiry_points": "",
            "lifetime_earned": "30",
        }
    ]


PENDING = """
earning:
  rounding: floor
  pending_days: 14
  rules:
    - {id: base, on: order, points: order.total}
"""


def test_partial_return_inside_and_after_pending_window(tmp_path):
    shop = Shop(tmp_path, PENDING)
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.add(
        "orders",
        {
            "order_id": "O1",
            "customer_id": "A",
            "ordered_at": "2026-03-01 12:00:00",
            "total": "333.00",
            "currency": "PLN",
            "status": "completed",
        },
    )
    shop.run("2026-03-01")
    assert shop.balance("A") == (0, 333)
    # Return of 100.00 on Mar 10 (release day is Mar 15): cancels round(333*100/333) = 100
    # pending points.
    shop.add(
        "returns", {"order_id": "O1", "returned_at": "2026-03-10 09:00:00", "amount": "100.00"}
    )
    shop.run("2026-03-10")
    assert shop.ledger("A", "2026-03-10") == [("cancel", 0, -100, "return", 0)]
    assert shop.balance("A") == (0, 233)
    # Release at the start of Mar 15: 233 become available.
    shop.run("2026-03-15")
    assert shop.ledger("A", "2026-03-15") == [("release", 233, -233, "base", 0)]
    # A second return of 50.00 after release: due = round_half_up(333 * 150 / 333) = 150,
    # already reversed 100, so 50 are clawed back from available points.
    shop.add("returns", {"order_id": "O1", "returned_at": "2026-03-20 09:00:00", "amount": "50.00"})
    shop.run("2026-03-20")
    assert shop.ledger("A", "2026-03-20") == [("clawback", -50, 0, "return", 0)]
    assert shop.balance("A") == (183, 0)
    bal = shop.csv("2026-03-20", "balances.csv")[0]
    # lifetime = 333 credited - 100 cancelled - 50 reversed.
    assert bal["lifetime_earned"] == "183"


def test_return_share_rounds_half_up_and_caps_at_total(tmp_path):
    shop = Shop(tmp_path, PENDING.replace("pending_days: 14", "pending_days: 0"))
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.add(
        "orders",
        {
            "order_id": "O1",
            "customer_id": "A",
            "ordered_at": "2026-03-01 12:00:00",
            "total": "15.00",
            "currency": "PLN",
        },
    )
    shop.run("2026-03-01")
    assert shop.balance("A") == (15, 0)
    # 7.50 of 15.00 returned: due = round_half_up(15 * 7.5 / 15) = round_half_up(7.5) = 8.
    shop.add("returns", {"order_id": "O1", "returned_at": "2026-03-02 09:00", "amount": "7.50"})
    shop.run("2026-03-02")
    assert shop.ledger("A", "2026-03-02") == [("clawback", -8, 0, "return", 0)]
    # 20.00 more returned: capped at the total, due = 15, reverses the remaining 7.
    shop.add("returns", {"order_id": "O1", "returned_at": "2026-03-03 09:00", "amount": "20.00"})
    shop.run("2026-03-03")
    assert shop.ledger("A", "2026-03-03") == [("clawback", -7, 0, "return", 0)]
    assert shop.balance("A") == (0, 0)


def test_clawback_shortfall_when_points_were_spent(tmp_path):
    shop = Shop(
        tmp_path,
        """
        earning:
          rules:
            - {id: base, on: order, points: order.total}
            - {id: unsub, on: event, when: "event.type = 'unsubscribe'", points: -80}
        """,
    )
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.add(
        "orders",
        order("O1", "A", "2026-03-01 12:00", "100.00"),
    )
    shop.add(
        "events",
        {
            "event_id": "u",
            "customer_id": "A",
            "type": "unsubscribe",
            "occurred_at": "2026-03-01 13:00",
        },
    )
    shop.run("2026-03-01")
    assert shop.balance("A") == (20, 0)
    shop.add("returns", {"order_id": "O1", "returned_at": "2026-03-02 09:00", "amount": "100.00"})
    shop.run("2026-03-02")
    # Due 100 but only 20 available: 20 taken, shortfall 80; the balance stays at 0.
    assert shop.ledger("A", "2026-03-02") == [("clawback", -20, 0, "return", 80)]
    assert shop.balance("A") == (0, 0)
    assert shop.csv("2026-03-02", "balances.csv")[0]["lifetime_earned"] == "0"


def test_cap_per_week_crosses_iso_week_in_program_timezone(tmp_path):
    shop = Shop(
        tmp_path,
        """
        earning:
          rules:
            - id: read
              on: event
              when: "event.type = 'email_open'"
              points: 4
              cap: {max: 10, per: week}
        """,
    )
    shop.add("customers", customer("A", "2025-12-01 08:00:00"))
    # Sunday 2026-01-04 is the last day of ISO week 2026-W01. 23:30Z is already Monday
    # 00:30 in Warsaw (UTC+1), so the third event falls in week W02.
    shop.add(
        "events",
        {
            "event_id": "1",
            "customer_id": "A",
            "type": "email_open",
            "occurred_at": "2026-01-04 08:00",
        },
        {
            "event_id": "2",
            "customer_id": "A",
            "type": "email_open",
            "occurred_at": "2026-01-04 09:00",
        },
        {
            "event_id": "3",
            "customer_id": "A",
            "type": "email_open",
            "occurred_at": "2026-01-04 22:30",
        },
        {
            "event_id": "4",
            "customer_id": "A",
            "type": "email_open",
            "occurred_at": "2026-01-04T23:30:00Z",
        },
        {
            "event_id": "5",
            "customer_id": "A",
            "type": "email_open",
            "occurred_at": "2026-01-05 10:00",
        },
        {
            "event_id": "6",
            "customer_id": "A",
            "type": "email_open",
            "occurred_at": "2026-01-05 11:00",
        },
    )
    shop.run("2026-01-05")
    rows = shop.query(
        "SELECT source_id, points FROM ledger WHERE customer_id = 'A' ORDER BY occurred_at"
    )
    # W01: 4 + 4 + 2 (the crossing row gets the remainder) = 10. W02: 4 + 4 + 2 = 10.
    assert rows == [("1", 4), ("2", 4), ("3", 2), ("4", 4), ("5", 4), ("6", 2)]
    # A later run in W02 finds the cap used up.
    shop.add(
        "events",
        {
            "event_id": "7",
            "customer_id": "A",
            "type": "email_open",
            "occurred_at": "2026-01-06 10:00",
        },
    )
    shop.run("2026-01-06")
    assert shop.ledger("A", "2026-01-06") == []


def test_tier_multiplier_applies_from_the_next_day(tmp_path):
    shop = Shop(
        tmp_path,
        """
        earning:
          rounding: round
          rules:
            - {id: base, on: order, points: order.total}
            - {id: flat, on: order, points: 3}
        tiers:
          basis: spend
          window: 365 days
          levels:
            - {id: bronze, name: Bronze, min: 0}
            - {id: silver, name: Silver, min: 100, multiplier: 1.5}
        """,
    )
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.add(
        "orders",
        order("O1", "A", "2026-02-01 10:00", "100.00"),
    )
    shop.run("2026-02-01")
    # Bronze on Feb 1: 100 + 3 points; the tier step promotes A to silver as of Feb 1.
    assert shop.balance("A") == (103, 0)
    shop.add(
        "orders",
        order("O2", "A", "2026-02-02 10:00", "10.33"),
    )
    shop.run("2026-02-02")
    # Silver from Feb 2: base R(R(10.33) x 1.5) = R(10 x 1.5) = 15; flat R(3 x 1.5) = R(4.5) = 5.
    assert [(r[0], r[1], r[3]) for r in shop.ledger("A", "2026-02-02")] == [
        ("earn", 15, "base"),
        ("earn", 5, "flat"),
    ]


def test_cancelled_orders_earn_nothing_and_a_later_cancellation_reverses(tmp_path):
    shop = Shop(tmp_path, PENDING)
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.add(
        "orders",
        {
            "order_id": "O1",
            "customer_id": "A",
            "ordered_at": "2026-03-01 12:00",
            "total": "50.00",
            "status": "cancelled",
        },
        {
            "order_id": "O2",
            "customer_id": "A",
            "ordered_at": "2026-03-01 13:00",
            "total": "80.00",
            "status": "Completed",
        },
    )
    shop.run("2026-03-01")
    assert shop.balance("A") == (0, 80)
    # O2 re-exported as cancelled: the run of Mar 2 (caught up on the way to Mar 3) treats
    # it as a return of its whole amount dated Mar 2, before the release day, so the 80
    # pending points are cancelled.
    shop.rows["orders"][1]["status"] = "cancelled"
    shop.export()
    shop.run("2026-03-03")
    assert shop.ledger("A", "2026-03-02") == [("cancel", 0, -80, "return", 0)]
    assert shop.query("SELECT status, returned FROM orders WHERE order_id = 'O2'") == [
        ("cancelled", Decimal("80.00"))
    ]
    assert shop.balance("A") == (0, 0)


def test_rejects_carry_file_line_column_and_reason(tmp_path):
    shop = Shop(tmp_path, PENDING)
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.add(
        "orders",
        order("O1", "A", "2026-03-01 12:00", "10.00"),
        order("O2", "ZZ", "2026-03-01 12:00", "10.00"),
    )
    shop.add("returns", {"order_id": "O9", "returned_at": "2026-03-01 13:00", "amount": "1.00"})
    # 1 of 2 new orders and the only new return rejected are far above the default 1 %:
    # allow them for this test (a share of 1 does not exceed 1).
    shop.program.write_text(shop.program.read_text() + "data: {max_reject_rate: 1}\n")
    shop.run("2026-03-01")
    rejects = shop.csv("2026-03-01", "rejects.csv")
    assert rejects == [
        {
            "source": "orders",
            "file": "orders.csv",
            "line": "3",
            "column": "customer_id",
            "reason": "unknown_customer",
        },
        {
            "source": "returns",
            "file": "returns.csv",
            "line": "2",
            "column": "order_id",
            "reason": "unknown_order",
        },
    ]
    # The run goes on: O1 earns its 10 points (pending), nothing else is booked.
    assert shop.balance("A") == (0, 10)
    assert shop.ledger("A", "2026-03-01") == [("pending", 0, 10, "base", 0)]


def test_items_and_returns_of_an_order_after_the_day_wait_for_it(tmp_path):
    shop = Shop(
        tmp_path,
        """
        earning:
          rules:
            - {id: per-item, on: order_item, points: item.quantity * 10}
        """,
    )
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.add(
        "orders",
        order("O1", "A", "2026-03-02 10:00", "30.00"),
    )
    shop.add("order_items", item("O1", "S1", "2", "15.00"))
    shop.add("returns", {"order_id": "O1", "returned_at": "2026-03-03 10:00", "amount": "15.00"})
    shop.run("2026-03-01")
    # The order is dated after Mar 1: its item and return wait instead of being rejected.
    assert shop.csv("2026-03-01", "rejects.csv") == []
    shop.run("2026-03-02")
    assert shop.ledger("A", "2026-03-02") == [("earn", 20, 0, "per-item", 0)]
    shop.run("2026-03-03")
    # Half the order returned: due = round_half_up(20 * 15 / 30) = 10.
    assert shop.ledger("A", "2026-03-03") == [("clawback", -10, 0, "return", 0)]


ITEM_POINTS = """
        earning:
          rules:
            - {id: per-item, on: order_item, points: item.quantity * 10}
        data: {max_reject_rate: 0.6}
        """


def test_first_run_rejects_items_of_an_order_not_in_the_export(tmp_path):
    shop = Shop(tmp_path, ITEM_POINTS)
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.add(
        "orders",
        order("O1", "A", "2026-03-01 10:00", "30.00"),
    )
    shop.add(
        "order_items",
        item("O1", "S1", "2", "15.00"),
        item("O9", "S2", "1", "5.00"),
    )
    shop.run("2026-03-01")
    assert shop.csv("2026-03-01", "rejects.csv") == [
        {
            "source": "order_items",
            "file": "order_items.csv",
            "line": "3",
            "column": "order_id",
            "reason": "unknown_order",
        }
    ]
    assert shop.ledger("A") == [("earn", 20, 0, "per-item", 0)]  # 2 x 10, O9's item none


def test_items_of_an_order_processed_earlier_are_ignored_and_counted(tmp_path):
    shop = Shop(tmp_path, ITEM_POINTS)
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.add(
        "orders",
        order("O1", "A", "2026-03-01 10:00", "30.00"),
    )
    shop.add("order_items", item("O1", "S1", "2", "15.00"))
    shop.run("2026-03-01")
    # The next export repeats O1 and its item and adds a second item of O1: both ignored.
    shop.add("order_items", item("O1", "S2", "3", "1.00"))
    result = shop.run("2026-03-02")
    assert shop.ledger("A", "2026-03-02") == []
    assert result.counts["warnings"] == {"items_of_processed_orders": 2}
    assert shop.ledger("A") == [("earn", 20, 0, "per-item", 0)]


def test_expiry_rounded_to_the_end_of_the_quarter(tmp_path):
    shop = Shop(
        tmp_path,
        """
        earning:
          rules:
            - {id: visit, on: event, points: 10}
        expiry:
          after: 30 days
          at: end_of_quarter
        """,
    )
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    # Earned Feb 10: +30 days = Mar 12, rounded up to the quarter's end: usable through Mar 31.
    shop.add(
        "events",
        event("v", "A", "2026-02-10 10:00", "visit"),
    )
    shop.run("2026-03-30")
    assert shop.lots("A") == [("2026-02-10", 10, 10, "available")]
    bal = shop.csv("2026-03-30", "balances.csv")[0]
    assert (bal["next_expiry_on"], bal["next_expiry_points"]) == ("2026-03-31", "10")
    shop.run("2026-03-31")
    assert shop.ledger("A", "2026-03-31") == [("expire", -10, 0, None, 0)]


def test_inactivity_expires_everything_after_no_order_for_that_long(tmp_path):
    shop = Shop(
        tmp_path,
        """
        earning:
          rules:
            - {id: base, on: order, points: order.total}
            - {id: visit, on: event, points: 5}
        expiry:
          inactivity: 10 days
        """,
    )
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.add(
        "orders",
        order("O1", "A", "2026-01-05 10:00", "50.00"),
    )
    shop.add(
        "events",
        event("v", "A", "2026-01-14 10:00", "visit"),
    )
    shop.run("2026-01-14")
    # Jan 14 - Jan 5 = 9 days: not yet. An event is no order, so it does not count.
    assert shop.balance("A") == (55, 0)
    shop.run("2026-01-15")
    # Jan 15 - Jan 5 = 10 days >= 10: all 55 available points expire in the run of Jan 15.
    assert shop.ledger("A", "2026-01-15") == [("expire", -55, 0, None, 0)]
    assert shop.query("SELECT reason FROM ledger WHERE kind = 'expire'") == [("inactivity",)]


def test_rules_see_the_member_view_as_of_the_start_of_the_run(tmp_path):
    shop = Shop(
        tmp_path,
        """
        earning:
          pending_days: 0
          rules:
            - {id: first, on: order, when: "orders_count = 0", points: 100}
            - {id: regular, on: order, when: "lifetime_spend >= 100", points: 7}
            - {id: rich, on: event, when: "balance >= 100 and days_since_last_order = 1",
               points: 1}
        """,
    )
    shop.add("customers", customer("A"))
    shop.add("orders", order("O1", "A", "2026-03-01 10:00:00", "120.00"))
    shop.add("events", event("E1", "A", "2026-03-01 11:00:00"))
    shop.run("2026-03-01")
    # At the start of Mar 1: no orders, no spend, no points.
    assert shop.ledger("A", "2026-03-01") == [("earn", 100, 0, "first", 0)]
    shop.add("orders", order("O2", "A", "2026-03-02 10:00:00", "50.00"))
    shop.add("events", event("E2", "A", "2026-03-02 11:00:00"))
    shop.run("2026-03-02")
    # At the start of Mar 2: one order, 120.00 spent, 100 points, last order a day ago.
    assert shop.ledger("A", "2026-03-02") == [
        ("earn", 7, 0, "regular", 0),
        ("earn", 1, 0, "rich", 0),
    ]
    assert shop.balance("A") == (108, 0)


def test_cap_room_left_by_one_run_is_used_by_late_rows_in_the_next(tmp_path):
    shop = Shop(
        tmp_path,
        """
        earning:
          rules:
            - {id: visit, on: event, points: 1, cap: {max: 5, per: day}}
            - {id: like, on: event, when: "event.type = 'like'", points: 2,
               cap: {max: 3, per: month}}
        """,
    )
    shop.add("customers", customer("A"))
    shop.add("events", *(event(f"v{i}", "A", f"2026-03-01 1{i}:00", "view") for i in range(3)))
    shop.add("events", event("l1", "A", "2026-03-01 15:00", "like"))
    shop.run("2026-03-01")
    # visit: 3 views + 1 like = 4 of 5 on Mar 1; like: 2 of 3 in March.
    assert shop.balance("A") == (6, 0)
    # Late rows of Mar 1 arrive with Mar 2's: 1 point of room left on Mar 1 for visits.
    shop.add(
        "events",
        event("v3", "A", "2026-03-01 18:00", "view"),
        event("v4", "A", "2026-03-01 19:00", "view"),
    )
    shop.add("events", event("l2", "A", "2026-03-02 09:00", "like"))
    shop.run("2026-03-02")
    rows = shop.query(
        "SELECT source_id, rule_id, points FROM ledger WHERE run_on = DATE '2026-03-02' "
        "ORDER BY source_id, rule_id"
    )
    # v3 takes the last visit point of Mar 1, v4 gets none; l2 is a visit on Mar 2 (1)
    # and the last like point of March (3 - 2 = 1).
    assert rows == [("l2", "like", 1), ("l2", "visit", 1), ("v3", "visit", 1)]
    assert shop.balance("A") == (9, 0)


def test_cap_room_counts_pending_points_of_earlier_runs_and_returns_free_none(tmp_path):
    shop = Shop(
        tmp_path,
        """
        earning:
          pending_days: 14
          rules:
            - {id: buy, on: order, points: order.total, cap: {max: 10, per: week}}
        """,
    )
    shop.add("customers", customer("A"))
    shop.add("orders", order("O1", "A", "2026-03-02 10:00", "6.00"))  # Monday of 2026-W10
    shop.run("2026-03-02")
    assert shop.ledger("A", "2026-03-02") == [("pending", 0, 6, "buy", 0)]
    # O1 returned in full on Tuesday: its pending points are cancelled, the room stays used.
    shop.add("returns", {"order_id": "O1", "returned_at": "2026-03-03 09:00", "amount": "6.00"})
    shop.add("orders", order("O2", "A", "2026-03-03 10:00", "6.00"))
    shop.run("2026-03-03")
    assert shop.ledger("A", "2026-03-03") == [
        ("pending", 0, 4, "buy", 0),  # 10 - 6 used by O1
        ("cancel", 0, -6, "return", 0),
    ]
    # Sunday is still W10 (no room left); Monday starts W11.
    shop.add(
        "orders",
        order("O3", "A", "2026-03-08 10:00", "6.00"),
        order("O4", "A", "2026-03-09 10:00", "6.00"),
    )
    shop.run("2026-03-09")
    rows = shop.query(
        "SELECT source_id, pending FROM ledger WHERE run_on > DATE '2026-03-03' "
        "AND kind = 'pending' ORDER BY source_id"
    )
    assert rows == [("O4", 6)]  # O3 (caught up on Mar 8) earned nothing


def test_entry_ids_come_from_export_positions_and_stay_small(tmp_path):
    shop = Shop(
        tmp_path,
        """
        earning:
          pending_days: 0
          rules:
            - {id: base, on: order, points: 10}
            - {id: visit, on: event, points: 1}
        """,
    )
    shop.add("customers", customer("A"), customer("B"))
    shop.add(
        "orders",
        *(
            {
                "order_id": f"O{i}",
                "customer_id": "AB"[i % 2],
                "ordered_at": "2026-03-01 10:00",
                "total": "10.00",
                "currency": "PLN",
            }
            for i in range(3)
        ),
    )
    shop.add(
        "events",
        event("e1", "A", "2026-03-01 11:00", "x"),
        event("e2", "B", "2026-03-01 12:00", "x"),
    )
    shop.run("2026-03-01")
    # Ordinal = rule index x 5 rows + the row's place over orders then events; id = 1 + that.
    ids = shop.query("SELECT entry_id, source_id FROM ledger ORDER BY entry_id")
    assert ids == [(1, "O0"), (2, "O1"), (3, "O2"), (9, "e1"), (10, "e2")]
    # The next run numbers after the 10 ids the first one reserved (5 rows x 2 rules). Its
    # only new row, e3, is the third row of the events export, and no order is new (span 3):
    # ordinal 1 x 3 + 2 = 5, id 10 + 1 + 5.
    shop.add(
        "events",
        event("e3", "A", "2026-03-02 09:00", "x"),
    )
    shop.run("2026-03-02")
    assert shop.query("SELECT entry_id, source_id FROM ledger WHERE entry_id > 10") == [(16, "e3")]


def test_released_points_join_the_lot_of_their_expiry_day(tmp_path):
    shop = Shop(
        tmp_path,
        """
        earning:
          pending_days: 14
          rules:
            - {id: base, on: order, points: order.total}
            - {id: visit, on: event, points: 5}
        expiry:
          after: 30 days
          at: end_of_month
        """,
    )
    shop.add("customers", customer("A"))
    shop.add(
        "orders",
        {
            "order_id": "O1",
            "customer_id": "A",
            "ordered_at": "2026-03-05 10:00",
            "total": "80.00",
            "currency": "PLN",
        },
    )
    shop.add(
        "events",
        event("e1", "A", "2026-03-10 10:00", "x"),
    )
    shop.run("2026-03-10")
    shop.run("2026-03-19")
    lots = shop.query(
        "SELECT lot_id, kind, rule_id, order_id, earned_on, available_on, expires_on, amount, "
        "remaining, status FROM lots ORDER BY lot_id"
    )
    d = dt.date
    # Both expire at the end of April (Mar 5 / Mar 10 + 30 days, to the month's end). On
    # Mar 10 the event's lot is lot 1 and the order's pending lot lot 2 (by member, expiry
    # day, then order). The 80 released on Mar 19 join lot 1, which takes the earlier
    # earning day and keeps the first day any of its points was available; the emptied
    # pending lot is deleted, and its entries keep its id.
    assert lots == [
        (
            1,
            "points",
            None,
            None,
            d(2026, 3, 5),
            d(2026, 3, 10),
            d(2026, 4, 30),
            85,
            85,
            "available",
        ),
    ]
    assert shop.query(
        "SELECT kind, lot_id FROM ledger WHERE source_id = 'O1' ORDER BY entry_id"
    ) == [
        (
            "pending",
            2,
        ),
        ("release", 2),
    ]
    assert shop.balance("A") == (85, 0)
    # Lot 2 is gone but its id is not given out again: the next new lot is lot 3.
    shop.add(
        "events",
        event("e2", "A", "2026-04-15 10:00", "x"),
    )
    shop.run("2026-04-15")
    assert shop.query("SELECT lot_id, expires_on FROM lots ORDER BY lot_id") == [
        (1, d(2026, 4, 30)),
        (3, d(2026, 5, 31)),
    ]


def _referral_shop(tmp_path) -> Shop:
    """Orders earn their total, pending two days; E, referred by R, pays a referral."""
    shop = Shop(
        tmp_path,
        """
        earning:
          pending_days: 2
          rules:
            - {id: base, on: order, points: order.total}
        bonuses:
          - {id: referral, trigger: referral, points: {referrer: 30, referee: 12}}
        """,
    )
    return shop.add(
        "customers",
        customer("R", "2026-03-01 08:00:00"),
        customer("E", "2026-03-01 08:00:00", referred_by="R"),
    )


def test_a_return_on_an_order_cancelled_when_first_exported_does_not_make_it_a_first_order(
    tmp_path,
):
    """The referee's first order is the first one completed when processed (docs/bonuses.md).
    A return on an order exported cancelled does nothing, and must not make that order
    count as completed: the referral waits for the release of the next, completed order."""
    shop = _referral_shop(tmp_path)
    shop.add(
        "orders",
        order("o1", "E", "2026-03-05 09:00:00", "15.00", status="cancelled"),
        order("o2", "E", "2026-03-06 09:00:00", "20.00"),
    )
    shop.add("returns", {"order_id": "o1", "returned_at": "2026-03-05 10:00:00", "amount": "3.34"})
    shop.backfill("2026-03-05", "2026-03-08")
    # o1 would have been released on 7 March; o2 is, on 8 March: 20 points, and the referral.
    assert shop.ledger("E") == [
        ("pending", 0, 20, "base", 0),
        ("release", 20, -20, "base", 0),
        ("bonus", 12, 0, "referral", 0),
    ]
    assert shop.query("SELECT run_on FROM ledger WHERE kind = 'bonus' ORDER BY ALL") == [
        (dt.date(2026, 3, 8),),
        (dt.date(2026, 3, 8),),
    ]
    assert shop.query("SELECT returned FROM orders WHERE order_id = 'o1'")[0][0] == 0


def test_a_zero_total_first_order_cancelled_later_stays_the_first_order(tmp_path):
    """The referee's first order is the first one completed when processed (docs/bonuses.md).
    One with total 0 never triggers the referral, and re-exported as cancelled later it is
    still that first order (nothing was returned, since there was nothing to return): the
    next order does not trigger it either."""
    shop = _referral_shop(tmp_path)
    shop.add("orders", order("o1", "E", "2026-03-05 09:00:00", "0.00"))
    shop.backfill("2026-03-05", "2026-03-06")
    shop.rows["orders"][0]["status"] = "cancelled"
    shop.add("orders", order("o2", "E", "2026-03-06 09:00:00", "20.00"))
    shop.backfill("2026-03-07", "2026-03-09")
    # o2 is released on 8 March: its 20 points, and no referral.
    assert shop.ledger("E") == [
        ("pending", 0, 20, "base", 0),
        ("release", 20, -20, "base", 0),
    ]
    assert shop.balance("R") == (0, 0)
    assert shop.query("SELECT order_id, status, cancelled_on FROM orders ORDER BY 1") == [
        ("o1", "cancelled", dt.date(2026, 3, 7)),
        ("o2", "completed", None),
    ]


def test_an_order_cancelled_tonight_is_not_the_last_completed_order_for_inactivity(tmp_path):
    """9.15: inactivity counts from the last completed order. An order re-exported as
    cancelled in tonight's run no longer is one, in this very run."""
    shop = Shop(
        tmp_path,
        """
        earning:
          pending_days: 0
          rules:
            - {id: base, on: order, points: order.total}
        expiry:
          after: 365 days
          inactivity: 3 days
        """,
    )
    shop.add("customers", customer("A", "2026-03-01 08:00:00"))
    shop.add(
        "orders",
        order("o1", "A", "2026-03-02 09:00:00", "10.00"),
        order("o2", "A", "2026-03-04 09:00:00", "20.00"),
    )
    shop.backfill("2026-03-02", "2026-03-04")
    assert shop.balance("A") == (30, 0)
    shop.rows["orders"][1]["status"] = "cancelled"
    shop.export()
    shop.run("2026-03-05")
    # o2's 20 points are clawed back; o1 (2 March) is the last completed order, 3 days
    # before 5 March: its 10 points expire for inactivity.
    assert shop.ledger("A", "2026-03-05") == [
        ("clawback", -20, 0, "return", 0),
        ("expire", -10, 0, None, 0),
    ]
    assert shop.balance("A") == (0, 0)
