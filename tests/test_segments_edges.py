"""Segments at their edges, driven through whole runs of small literal shops."""

from __future__ import annotations

from datetime import date

from enginekit import BASE, Shop, customer, order


def test_an_order_reexported_as_cancelled_stops_counting_in_rule_and_group_conditions(tmp_path):
    shop = Shop(
        tmp_path,
        """
        segments:
          - id: lapsed
            type: rule
            when: days_since_last_order > 5
          - id: rfm
            type: rfm
            groups: {single: "orders_count <= 1", repeat: "true"}
        """,
    )
    shop.add("customers", customer("A"))
    shop.add(
        "orders",
        order("1", "A", "2026-03-01 10:00:00", "100"),
        order("2", "A", "2026-03-08 12:00:00", "50"),
    )
    shop.run("2026-03-09")
    # Order 2 comes back cancelled: on 2026-03-10 A's last order day is 2026-03-01, 9 days
    # before (9 > 5: lapsed), and A has 1 completed order (orders_count <= 1: single).
    # The only scored member gets r = f = m = 1 (n = 1).
    shop.rows["orders"][1]["status"] = "cancelled"
    shop.export()
    expected = (
        "customer_id,segment_id,group,r,f,m,value\nA,lapsed,lapsed,,,,\nA,rfm,single,1,1,1,\n"
    )
    shop.run("2026-03-10")
    assert (shop.out / "2026-03-10" / "segments.csv").read_text() == expected
    changes = shop.query(
        "SELECT segment_id, customer_id, grp, change FROM segment_changes "
        "WHERE on_day = ? ORDER BY ALL",
        [date(2026, 3, 10)],
    )
    assert changes == [
        ("lapsed", "A", "lapsed", "enter"),
        ("rfm", "A", "repeat", "exit"),
        ("rfm", "A", "single", "enter"),
    ]
    # The rerun, which finds the order cancelled in the state, places A the same way.
    shop.run("2026-03-10")
    assert (shop.out / "2026-03-10" / "segments.csv").read_text() == expected
    assert (
        shop.query(
            "SELECT segment_id, customer_id, grp, change FROM segment_changes "
            "WHERE on_day = ? ORDER BY ALL",
            [date(2026, 3, 10)],
        )
        == changes
    )


def test_a_segment_taken_out_of_the_program_loses_its_members_and_enters_anew_on_return(
    tmp_path,
):
    rfm = "segments:\n  - {id: rfm, type: rfm, groups: {all: 'true'}}\n"
    churn = "  - {id: churn, type: churn, model: interval, levels: {low: 0, high: 3}}\n"
    shop = Shop(tmp_path, rfm + churn)
    shop.add("customers", customer("A"))
    shop.add(
        "orders",
        order("1", "A", "2026-03-01 10:00:00", "100"),
        order("2", "A", "2026-03-03 10:00:00", "50"),
    )
    # 2026-03-04: A's gap is 2 days, 1 day since the last order: 0.5, low.
    shop.run("2026-03-04")
    assert shop.query("SELECT segment_id, grp FROM segment_members ORDER BY ALL") == [
        ("churn", "low"),
        ("rfm", "all"),
    ]
    # churn is taken out of the program: it has no members any more (its history stays).
    shop.program.write_text(BASE + rfm)
    shop.run("2026-03-05")
    assert shop.query("SELECT segment_id, grp FROM segment_members ORDER BY ALL") == [
        ("rfm", "all")
    ]
    # It comes back: its first run again, so A (3 days / 2 = 1.5, low) enters.
    shop.program.write_text(BASE + rfm + churn)
    shop.run("2026-03-06")
    assert shop.query(
        "SELECT grp, change, on_day FROM segment_changes WHERE segment_id = 'churn' ORDER BY on_day"
    ) == [("low", "enter", date(2026, 3, 4)), ("low", "enter", date(2026, 3, 6))]
    # Every segment taken out: none keeps members.
    shop.program.write_text(BASE + "earning:\n  rules:\n    - {id: b, on: order, points: '1'}\n")
    shop.run("2026-03-07")
    assert shop.query("SELECT count(*) FROM segment_members") == [(0,)]
