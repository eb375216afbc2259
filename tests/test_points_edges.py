"""Edge cases of earning, returns and expiry, on literal rows with hand-computed numbers."""

from __future__ import annotations

from enginekit import Shop, customer, item, order


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
