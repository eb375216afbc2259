"""Workflows at their edges: schedules over runs that did not catch up, and more."""

from __future__ import annotations

import datetime as dt

from enginekit import customer
from test_workflows import shop_with


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
