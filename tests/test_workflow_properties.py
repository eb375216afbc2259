"""Workflows on generated programs and members: what must hold whatever the settings.

Hypothesis draws the workflows (schedules, priorities, reentry, waits, channels), the
weekly message limit and the members' consents; two weeks are backfilled day by day.
Then, for every member:
- no ISO week has more messages than `messaging.max_per_week`;
- a workflow has at most one active instance, and a member re-enters only after
  `reentry` (never without it);
- each step after a wait is taken on the day the wait named;
- every message is in its day's batch file once, with its id;
- a send step goes out when the member can get its channel or fallback and the week's
  limit is not reached, and is skipped with the reason otherwise; a member stopped by the
  limit had exactly `max_per_week` messages that week, and the same day's messages went to
  workflows of a higher priority (or the same priority and an earlier id);
- a member reachable by a send step that the two weeks reach gets messages at all.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
from collections import Counter, defaultdict

from enginekit import Shop, customer, hunt_settings
from hypothesis import example, given
from hypothesis import strategies as st

TEMPLATES = {
    "hi.subject.j2": "Hi",
    "hi.html.j2": "<p>{{ balance }}</p>",
    "hi.txt.j2": "{{ balance }}",
    "hi.sms.j2": "Hi {{ balance }}",
}
START = dt.date(2026, 3, 2)  # a Monday
DAYS = 14

workflow = st.fixed_dictionaries(
    {
        "every": st.sampled_from(["day", "week"]),
        "day": st.integers(1, 7),
        "priority": st.integers(0, 3),
        "reentry": st.sampled_from([None, 1, 3, 8]),
        "steps": st.lists(
            st.one_of(
                st.tuples(st.just("send"), st.sampled_from(["email", "sms"]), st.booleans()),
                st.tuples(st.just("wait"), st.integers(1, 4), st.just(False)),
            ),
            min_size=1,
            max_size=4,
        ),
    }
)
member = st.tuples(st.booleans(), st.booleans(), st.sampled_from(["512 345 678", "12", ""]))


def write_workflow(i: int, w: dict) -> str:
    trigger = (
        "{schedule: {every: day}}"
        if w["every"] == "day"
        else f"{{schedule: {{every: week, day: {w['day']}}}}}"
    )
    lines = ["version: 1", "workflow:", f"  id: w{i}", f"  trigger: {trigger}"]
    lines.append(f"  priority: {w['priority']}")
    if w["reentry"]:
        lines.append(f"  reentry: {w['reentry']} days")
    lines.append("  steps:")
    for kind, value, fallback in w["steps"]:
        if kind == "wait":
            lines.append(f"    - wait: {value} days")
        else:
            other = ", fallback: " + ("sms" if value == "email" else "email") if fallback else ""
            lines.append(f"    - send: {{channel: {value}, template: hi{other}}}")
    return "\n".join(lines) + "\n"


def usable(member: tuple, channel: str) -> bool:
    email_ok, sms_ok, phone = member
    return email_ok if channel == "email" else sms_ok and phone == "512 345 678"


def reached_sends(w: dict) -> list[tuple[int, str, bool]]:
    """(step index, channel, fallback) of the send steps a member entering on the
    workflow's first schedule day reaches within the two weeks."""
    day = 0 if w["every"] == "day" else w["day"] - 1  # START is a Monday
    out = []
    for k, (kind, value, fallback) in enumerate(w["steps"]):
        if kind == "wait":
            day += value
        elif day < DAYS:
            out.append((k, value, fallback))
    return out


@hunt_settings(4)
@example(
    # The limit binds: w1 (priority 3) sends two messages a day to C0, so w0 never can
    # that week; C1 can be reached by neither channel; C2 by email only.
    workflows=[
        {
            "every": "day",
            "day": 1,
            "priority": 1,
            "reentry": 1,
            "steps": [("send", "email", False)],
        },
        {
            "every": "day",
            "day": 1,
            "priority": 3,
            "reentry": 1,
            "steps": [("send", "email", False), ("send", "sms", True)],
        },
    ],
    limit=2,
    members=[(True, True, "512 345 678"), (False, True, "12"), (True, False, "")],
)
@example(
    # Equal priorities: the earlier id sends first; a weekly schedule and a wait.
    workflows=[
        {"every": "week", "day": 3, "priority": 2, "reentry": 3, "steps": [("send", "sms", True)]},
        {
            "every": "day",
            "day": 1,
            "priority": 2,
            "reentry": None,
            "steps": [("send", "email", False), ("wait", 2, False), ("send", "email", False)],
        },
    ],
    limit=1,
    members=[(True, True, "512 345 678"), (True, False, "512 345 678")],
)
@given(
    workflows=st.lists(workflow, min_size=1, max_size=3),
    limit=st.integers(1, 3),
    members=st.lists(member, min_size=1, max_size=4),
)
def test_generated_workflows_keep_their_promises(tmp_path_factory, workflows, limit, members):
    root = tmp_path_factory.mktemp("shop")
    for name, text in TEMPLATES.items():
        (root / "templates").mkdir(exist_ok=True)
        (root / "templates" / name).write_text(text)
    (root / "workflows").mkdir()
    for i, w in enumerate(workflows):
        (root / "workflows" / f"w{i}.yaml").write_text(write_workflow(i, w))
    shop = Shop(
        root,
        f"""
earning:
  rules:
    - {{id: base, on: order, points: order.total}}
messaging:
  max_per_week: {limit}
  from_email: club@shop.example
  sms_sender: SHOP
  default_region: PL
workflows: ["workflows/*.yaml"]
""",
    )
    for n, (email_ok, sms_ok, phone) in enumerate(members):
        shop.add(
            "customers",
            customer(
                f"C{n}",
                "2026-01-05 10:00:00",
                email_consent=str(email_ok).lower(),
                sms_consent=str(sms_ok).lower(),
                phone=phone,
            ),
        )
    shop.backfill(START.isoformat(), (START + dt.timedelta(days=DAYS - 1)).isoformat())

    log = shop.query(
        """SELECT workflow_id, customer_id, entered_on, step, run_on, action, channel,
                  message_id, detail FROM wf_log ORDER BY run_on, workflow_id, customer_id"""
    )
    sent = [r for r in log if r[5] == "sent"]
    per_week = Counter((r[1], r[4].isocalendar()[:2]) for r in sent)
    assert all(n <= limit for n in per_week.values()), per_week

    # Each send step: sent on the first usable channel, else skipped with the reason.
    def rank(workflow_id: str) -> tuple[int, str]:
        return (-workflows[int(workflow_id[1:])]["priority"], workflow_id)

    for r in log:
        w, cid, _entered, k, run_on, action, channel, _mid, detail = r
        if k is None or action not in ("sent", "skipped") or detail == "condition":
            continue
        kind, first, fallback = workflows[int(w[1:])]["steps"][k]
        assert kind == "send", r
        m = members[int(cid[1:])]
        channels = [first] + ([("sms" if first == "email" else "email")] if fallback else [])
        can = [c for c in channels if usable(m, c)]
        if not can:
            assert (action, channel) == ("skipped", None) and detail.startswith(first), r
            continue
        if action == "sent":
            assert channel == can[0], r
            continue
        assert detail == "weekly_limit", r
        week = run_on.isocalendar()[:2]
        assert per_week[(cid, week)] == limit, r
        for other in sent:
            if other[1] == cid and other[4] == run_on and other[0] != w:
                assert rank(other[0]) < rank(w), (other, r)

    # Someone reachable by a send step the two weeks reach gets messages.
    for i, m in enumerate(members):
        if any(
            usable(m, channel) or (fallback and usable(m, "sms" if channel == "email" else "email"))
            for w in workflows
            for _k, channel, fallback in reached_sends(w)
        ):
            assert any(r[1] == f"C{i}" for r in sent), (i, m)

    active = shop.query(
        """SELECT workflow_id, customer_id, count(*) FROM wf_instances
        WHERE status = 'active' GROUP BY ALL HAVING count(*) > 1"""
    )
    assert active == []
    entries: dict[tuple, list[dt.date]] = defaultdict(list)
    for w, c, entered, *_ in shop.query(
        "SELECT workflow_id, customer_id, entered_on FROM wf_instances ORDER BY entered_on"
    ):
        entries[(w, c)].append(entered)
    for (w, _), days in entries.items():
        reentry = workflows[int(w[1:])]["reentry"]
        gaps = [(b - a).days for a, b in zip(days, days[1:], strict=False)]
        assert not gaps if reentry is None else all(g >= reentry for g in gaps), (w, days)

    # The step after a wait is taken on the day the wait named (unless the member left).
    waits = {
        (r[0], r[1], r[2], r[3]): dt.date.fromisoformat(r[8]) for r in log if r[5] == "waiting"
    }
    for r in log:
        if r[3] is not None and r[5] != "waiting" and (r[0], r[1], r[2], r[3] - 1) in waits:
            assert r[4] == waits[(r[0], r[1], r[2], r[3] - 1)], r

    # Every message is in its day's batch, once.
    batched: Counter = Counter()
    for path in shop.out.rglob("messages/*/*"):
        day = path.relative_to(shop.out).parts[0]
        if path.suffix == ".jsonl":
            ids = [json.loads(line)["message_id"] for line in path.read_text().splitlines()]
        else:
            with path.open(newline="") as fh:
                ids = [row["message_id"] for row in csv.DictReader(fh)]
        batched.update((day, i) for i in ids)
    assert batched == Counter((r[4].isoformat(), r[7]) for r in sent)
