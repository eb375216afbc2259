"""Edge cases of earning, returns and expiry, on literal rows with hand-computed numbers."""

from __future__ import annotations

from enginekit import Shop, customer, event, item, order


def test_points_of_a_division_round_the_exact_value_not_its_binary_approximation(tmp_path):
    # `/` on decimals gives a binary float in DuckDB: 0.70 / 0.1 is 6.999999999999999 and
    # 0.25 / 0.1 is 2.4999999999999996. The points are R of the exact values 7 and 2.5.
    shop = Shop(
        tmp_path,
        """
        earning:
          rounding: floor
          rules:
            - {id: tenth, on: order, points: "order.total / 0.1"}
        """,
    )
    shop.add("customers", customer("A", "2026-01-01 08:00:00"), customer("B"))
    shop.add("orders", order("O1", "A", "2026-03-01 12:00", "0.70"))
    shop.run("2026-03-01")
    # floor(0.70 / 0.1) = floor(7) = 7.
    assert shop.ledger("A") == [("earn", 7, 0, "tenth", 0)]

    rounded = Shop(
        tmp_path / "round",
        """
        earning:
          rounding: round
          rules:
            - {id: tenth, on: order, points: "order.total / 0.1"}
            - {id: item-tenth, on: order_item, points: "item.unit_price / 0.1"}
        """,
    )
    rounded.add("customers", customer("A", "2026-01-01 08:00:00"))
    rounded.add("orders", order("O1", "A", "2026-03-01 12:00", "0.25"))
    rounded.add("order_items", item("O1", "s", "1", "0.25"))
    rounded.run("2026-03-01")
    # round(0.25 / 0.1) = round(2.5) = 3 (half away from zero), for both rules.
    assert rounded.ledger("A") == [("earn", 3, 0, "tenth", 0), ("earn", 3, 0, "item-tenth", 0)]


def test_a_return_before_release_shrinks_each_rules_pending_points_in_proportion(tmp_path):
    shop = Shop(
        tmp_path,
        """
        earning:
          pending_days: 10
          rules:
            - {id: base, on: order, points: "order.total / 7"}
            - {id: items, on: order_item, points: "item.unit_price * item.quantity / 2"}
        """,
    )
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.add("orders", order("O1", "A", "2026-03-01 12:00", "70.00"))
    shop.add("order_items", item("O1", "s1", "1", "10.00"), item("O1", "s2", "1", "50.00"))
    shop.run("2026-03-01")
    # base: 70 / 7 = 10; items: 10 / 2 + 50 / 2 = 5 + 25 = 30 (one pending lot per rule).
    assert shop.balance("A") == (0, 40)
    shop.add("returns", {"order_id": "O1", "returned_at": "2026-03-05 09:00", "amount": "20.00"})
    shop.run("2026-03-05")
    # due = round_half_up(40 * 20 / 70 = 11.43) = 11, cancelled from both rules' points in
    # proportion: base 11 * 10 / 40 = 2.75, items 11 * 30 / 40 = 8.25; floors 2 + 8 = 10,
    # the point left goes to the larger remainder (base): base 3, items 8.
    assert shop.ledger("A", "2026-03-05") == [("cancel", 0, -11, "return", 0)]
    shop.run("2026-03-11")
    # Released: base 10 - 3 = 7, items 30 - 8 = 22.
    assert shop.ledger("A", "2026-03-11") == [
        ("release", 7, -7, "base", 0),
        ("release", 22, -22, "items", 0),
    ]
    assert shop.balance("A") == (29, 0)


def test_a_cap_takes_the_items_of_orders_at_the_same_instant_order_by_order(tmp_path):
    # SPEC 9.3: rows at the same instant by key, an order's item rows going with it (in
    # export order): O1's items, then O2's, not the first item of each order, then the second.
    shop = Shop(
        tmp_path,
        """
        earning:
          rules:
            - {id: it, on: order_item, points: "item.quantity * 10", cap: {max: 25, per: day}}
        """,
    )
    shop.add("customers", customer("A", "2026-01-10 08:00:00"))
    shop.add(
        "orders",
        order("O1", "A", "2026-03-01 10:00", "40.00"),
        order("O2", "A", "2026-03-01 10:00", "40.00"),
    )
    shop.add(
        "order_items",
        item("O2", "c", "1", "1"),
        item("O2", "d", "1", "1"),
        item("O1", "a", "1", "1"),
        item("O1", "b", "1", "1"),
    )
    shop.run("2026-03-01")
    # Cap 25: O1#1 10, O1#2 10, O2#1 the remaining 5, O2#2 nothing.
    assert shop.query("SELECT source_id, points FROM ledger ORDER BY source_id") == [
        ("O1#1", 10),
        ("O1#2", 10),
        ("O2#1", 5),
    ]
    # What a return of each order can take back.
    assert shop.query("SELECT order_id, granted FROM orders ORDER BY order_id") == [
        ("O1", 20),
        ("O2", 5),
    ]


def test_debits_of_items_of_orders_at_the_same_instant_go_order_by_order(tmp_path):
    shop = Shop(
        tmp_path,
        """
        earning:
          rules:
            - {id: join, on: event, when: "event.type = 'join'", points: 10}
            - {id: sale, on: order_item, when: "item.category = 'sale'", points: -6}
        """,
    )
    shop.add("customers", customer("A", "2026-01-10 08:00:00"))
    shop.add("events", event("e1", "A", "2026-02-27 10:00", "join"))
    shop.run("2026-02-27")
    shop.add(
        "orders",
        order("O1", "A", "2026-03-01 10:00", "40.00"),
        order("O2", "A", "2026-03-01 10:00", "40.00"),
    )
    shop.add(
        "order_items",
        item("O1", "a", "1", "1", category="sale"),
        item("O2", "c", "1", "1", category="sale"),
        item("O1", "b", "1", "1", category="sale"),
    )
    shop.run("2026-03-01")
    # 10 available; O1's items first (by key, each order's items in export order):
    # O1#1 takes 6 (4 left), O1#2 takes 4 (shortfall 2), O2#1 takes 0 (shortfall 6).
    assert shop.query(
        "SELECT source_id, points, shortfall FROM ledger WHERE kind = 'debit' ORDER BY entry_id"
    ) == [("O1#1", -6, 0), ("O1#2", -4, 2), ("O2#1", 0, 6)]
