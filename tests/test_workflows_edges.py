"""Workflows at their edges: schedules over runs that did not catch up, and more."""

from __future__ import annotations

import datetime as dt

from enginekit import customer, order
from test_workflows import jsonl, shop_with


def flow(wf_id: str, trigger: str, reentry: str = "1 day") -> str:
    return f"""
        version: 1
        workflow:
          id: {wf_id}
          trigger: {trigger}
          reentry: {reentry}
          steps:
            - {{id: hi, send: {{channel: email, template: hello}}}}
        """


def sent(shop) -> list[tuple]:
    return shop.query(
        "SELECT run_on, workflow_id, customer_id FROM wf_log WHERE action = 'sent' ORDER BY 1, 2, 3"
    )


def test_a_schedule_day_in_a_run_that_did_not_catch_up_fires_once(tmp_path):
    shop = shop_with(
        tmp_path,
        "",
        {
            "monthly": flow("monthly", "{schedule: {every: month, day: 1}}"),
            "sundays": flow("sundays", "{schedule: {every: week, day: 7}}"),
            "day31": flow("day31", "{schedule: {every: month, day: 31}}"),
        },
    )
    shop.add("customers", customer("A", "2026-01-05 10:00:00", email_consent="true"))
    shop.run("2026-02-26")
    # (02-26, 03-03] holds 28 February (day 31 of a short month), Sunday 1 March and the
    # 1st of March: each workflow fires once, in the run for 03-03.
    shop.run("2026-03-03", catch_up=False)
    # (03-03, 03-10] holds Sunday 8 March only.
    shop.run("2026-03-10", catch_up=False)
    # (03-10, 03-14]: Wednesday to Saturday, no day of any schedule.
    shop.run("2026-03-14", catch_up=False)
    d3, d10 = dt.date(2026, 3, 3), dt.date(2026, 3, 10)
    assert sent(shop) == [
        (d3, "day31", "A"),
        (d3, "monthly", "A"),
        (d3, "sundays", "A"),
        (d10, "sundays", "A"),
    ]


INACTIVITY = """
    earning:
      rules:
        - {id: base, on: order, points: order.total}
    expiry:
      after: 40 days
      inactivity: 30 days
      notify_before: 7 days
    """

EXPIRING = """
    version: 1
    workflow:
      id: expiring
      trigger: points_expiring
      steps:
        - {id: warn, send: {channel: email, template: expiring}}
    """


def test_points_expiring_fires_before_inactivity_takes_the_points(tmp_path):
    shop = shop_with(tmp_path, INACTIVITY, {"expiring": EXPIRING})
    for part, text in {
        "subject": "{{ expiring_points }} points",
        "html": "<p>{{ expiring_points }} on {{ expiring_on }}</p>",
        "txt": "{{ expiring_points }} on {{ expiring_on }}",
    }.items():
        (tmp_path / "templates" / f"expiring.{part}.j2").write_text(text)
    shop.add(
        "customers",
        customer("A", "2026-01-05 10:00:00", email_consent="true"),
        # Never ordered: inactive since joining, with nothing to lose.
        customer("B", "2026-01-05 10:00:00", email_consent="true"),
        customer("C", "2026-01-05 10:00:00", email_consent="true"),
    )
    shop.add(
        "orders",
        order("O1", "A", "2026-02-01 10:00:00", "120.00"),
        order("C1", "C", "2026-01-20 10:00:00", "10.00"),
        order("C2", "C", "2026-02-10 10:00:00", "20.00"),
    )
    shop.run("2026-02-01")
    shop.run("2026-03-04")
    # A's last order day is 02-01: 30 days on, the run for 03-03 expires A's 120 points,
    # which are usable through 03-03 (before their lot's own end, 02-01 + 40 = 03-13).
    # Seven days before 03-03 is 02-24.
    # C's lot of 01-20 (10 points) ends on 03-01, seven days after 02-22; C's order of
    # 02-10 puts inactivity at 03-12, after it (and before 02-12, when the order of 01-20
    # would have put it within seven days).
    assert sent(shop) == [
        (dt.date(2026, 2, 22), "expiring", "C"),
        (dt.date(2026, 2, 24), "expiring", "A"),
    ]
    batch = jsonl(shop.out / "2026-02-24" / "messages" / "expiring" / "warn.email.jsonl")
    assert [(m["subject"], m["text"]) for m in batch] == [("120 points", "120 on 2026-03-03")]
    batch = jsonl(shop.out / "2026-02-22" / "messages" / "expiring" / "warn.email.jsonl")
    assert [(m["subject"], m["text"]) for m in batch] == [("10 points", "10 on 2026-03-01")]
    assert shop.balance("A") == (0, 0)
    assert shop.balance("C") == (20, 0)
