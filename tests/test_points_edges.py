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
