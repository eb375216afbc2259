"""Workflows end to end on literal rows: triggers, audiences, steps, coupons, batches."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import signal
import textwrap

import pytest
from enginekit import Shop, check_invariants, customer, dump_outputs, dump_state, order

from loyalty_cli import state
from loyalty_cli.engine.explain import explain
from loyalty_cli.engine.run import plan

TEMPLATES = {
    "hello.subject.j2": "Hi {{ customer.first_name }}",
    "hello.html.j2": "<p>{{ balance }} pts</p>",
    "hello.txt.j2": "{{ balance }} pts",
    "hello.sms.j2": "Hi {{ customer.first_name }}: {{ balance }} pts",
    "nudge.subject.j2": "{{ coupon.code }}",
    "nudge.html.j2": "<p>{{ coupon.code }} until {{ coupon.valid_until }}</p>",
    "nudge.txt.j2": "{{ coupon.discount.percent }}% off",
}

MESSAGING = """
messaging:
  from_email: club@shop.example
  sms_sender: SHOP
  default_region: PL
templates: templates/
workflows: ["workflows/*.yaml"]
"""


def shop_with(
    tmp_path, body: str, workflows: dict[str, str], max_per_week: int | None = None
) -> Shop:
    for name, text in TEMPLATES.items():
        path = tmp_path / "templates" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for name, text in workflows.items():
        path = tmp_path / "workflows" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    messaging = MESSAGING
    if max_per_week is not None:
        messaging = messaging.replace(
            "messaging:\n", f"messaging:\n  max_per_week: {max_per_week}\n"
        )
    return Shop(tmp_path, textwrap.dedent(body) + messaging)


def mid(workflow: str, step: str, customer_id: str, entered: str) -> str:
    """A message id computed as docs/templates.md says, independently of the engine."""
    key = json.dumps([workflow, step, customer_id, entered], separators=(",", ":"))
    return hashlib.sha256(key.encode()).hexdigest()[:20]


def jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


WELCOME = """
    version: 1
    workflow:
      id: welcome
      trigger: joined
      steps:
        - id: hello
          send: {channel: email, template: hello, fallback: sms}
        - wait: 3 days
        - id: nudge
          if: orders_count = 0
          send: {channel: email, template: nudge}
          coupon: {pool: nudge}
        - id: thanks
          award: {points: 50, reason: welcome-series}
    """

WELCOME_PROGRAM = """
    earning:
      rules:
        - {id: base, on: order, points: order.total}
    coupons:
      pools:
        - {id: nudge, source: generate, prefix: "N-", length: 8, count: 5,
           discount: {percent: 10}, valid_days: 30}
    """


def welcome_shop(tmp_path) -> Shop:
    shop = shop_with(tmp_path, WELCOME_PROGRAM, {"welcome": WELCOME})
    shop.add(
        "customers",
        customer("A", "2026-03-02 10:00:00", first_name="Anna", email_consent="true"),
        # No email consent, but a phone and SMS consent: the fallback channel.
        customer(
            "B",
            "2026-03-02 11:00:00",
            first_name="Bob",
            phone="+48 512 345 678",
            sms_consent="true",
        ),
        customer("C", "2026-03-02 12:00:00", first_name="Cy", email_consent="true"),
        # Neither channel.
        customer("D", "2026-03-02 13:00:00", first_name="Dee"),
        # Joined before the first run: a first run messages nobody about the past.
        customer("E", "2026-02-20 09:00:00", first_name="Eve", email_consent="true"),
    )
    shop.add("orders", order("O1", "C", "2026-03-04 10:00:00", "80.00"))
    return shop


def test_welcome_series_sends_waits_checks_and_awards(tmp_path):
    shop = welcome_shop(tmp_path)
    shop.run("2026-03-01")
    assert shop.csv("2026-03-01", "audiences/welcome.csv") == []
    last = shop.run("2026-03-05")  # catches up 03-02 .. 03-05 one day at a time
    # One code of the five generated went out; plan and run show what is left.
    assert last.counts["workflows"]["welcome.coupons"] == 1
    assert last.counts["coupons"] == {"nudge.left": 4}

    rows = [tuple(r.values()) for r in shop.csv("2026-03-02", "audiences/welcome.csv")]
    assert rows == [
        ("A", "", "entered", "", "", ""),
        ("A", "hello", "sent", "email", mid("welcome", "hello", "A", "2026-03-02"), ""),
        ("A", "step-2", "waiting", "", "", "2026-03-05"),
        ("B", "", "entered", "", "", ""),
        ("B", "hello", "sent", "sms", mid("welcome", "hello", "B", "2026-03-02"), ""),
        ("B", "step-2", "waiting", "", "", "2026-03-05"),
        ("C", "", "entered", "", "", ""),
        ("C", "hello", "sent", "email", mid("welcome", "hello", "C", "2026-03-02"), ""),
        ("C", "step-2", "waiting", "", "", "2026-03-05"),
        ("D", "", "entered", "", "", ""),
        ("D", "hello", "skipped", "", "", "email: no consent; sms: no phone"),
        ("D", "step-2", "waiting", "", "", "2026-03-05"),
    ]
    hello = shop.out / "2026-03-02" / "messages" / "welcome"
    assert jsonl(hello / "hello.email.jsonl") == [
        {
            "customer_id": c,
            "message_id": mid("welcome", "hello", c, "2026-03-02"),
            "to": f"{c.lower()}@example.com",
            "from": "club@shop.example",
            "subject": f"Hi {name}",
            "html": "<p>0 pts</p>",
            "text": "0 pts",
        }
        for c, name in (("A", "Anna"), ("C", "Cy"))
    ]
    assert (hello / "hello.sms.csv").read_text().splitlines() == [
        "customer_id,message_id,to,sender,text,encoding,segments",
        f"B,{mid('welcome', 'hello', 'B', '2026-03-02')},+48512345678,SHOP,Hi Bob: 0 pts,GSM-7,1",
    ]
    # Days 3 and 4 are the wait: nothing happens, no batch is written.
    for day in ("2026-03-03", "2026-03-04"):
        assert shop.csv(day, "audiences/welcome.csv") == []
        assert not (shop.out / day / "messages").exists()

    rows = [tuple(r.values()) for r in shop.csv("2026-03-05", "audiences/welcome.csv")]
    nudge_a = mid("welcome", "nudge", "A", "2026-03-02")
    assert rows == [
        ("A", "nudge", "sent", "email", nudge_a, ""),
        ("A", "thanks", "awarded", "", "", "50"),
        ("A", "", "completed", "", "", ""),
        # Email only, and B has no email consent.
        ("B", "nudge", "skipped", "", "", "email: no consent"),
        ("B", "thanks", "awarded", "", "", "50"),
        ("B", "", "completed", "", "", ""),
        # C ordered on 03-04: orders_count = 0 is false.
        ("C", "nudge", "skipped", "", "", "condition"),
        ("C", "thanks", "awarded", "", "", "50"),
        ("C", "", "completed", "", "", ""),
        ("D", "nudge", "skipped", "", "", "email: no consent"),
        ("D", "thanks", "awarded", "", "", "50"),
        ("D", "", "completed", "", "", ""),
    ]
    # The coupon: one code of the pool, assigned for the message's id.
    codes = shop.query(
        "SELECT code, assigned_to, valid_until FROM coupon_codes "
        "WHERE pool_id = 'nudge' AND assigned_for = ?",
        [nudge_a],
    )
    assert len(codes) == 1
    code, owner, valid_until = codes[0]
    assert owner == "A" and code.startswith("N-") and len(code) == 10
    assert valid_until == dt.date(2026, 4, 4)  # 03-05 + 30 days
    assert shop.query("SELECT count(*) FROM coupon_codes WHERE assigned_on IS NOT NULL") == [(1,)]
    # The batch is rendered after the run's awards: A's balance is 50.
    nudge = shop.out / "2026-03-05" / "messages" / "welcome" / "nudge.email.jsonl"
    assert jsonl(nudge) == [
        {
            "customer_id": "A",
            "message_id": nudge_a,
            "to": "a@example.com",
            "from": "club@shop.example",
            "subject": code,
            "html": f"<p>{code} until 2026-04-04</p>",
            "text": "10% off",
        }
    ]
    assert shop.ledger("A", "2026-03-05") == [("award", 50, 0, "welcome", 0)]
    assert shop.balance("A") == (50, 0)
    assert shop.balance("C") == (80 + 50, 0)
    assert shop.balance("E") == (0, 0)
    assert shop.query("SELECT count(*) FROM wf_instances WHERE customer_id = 'E'") == [(0,)]
    assert shop.query(
        "SELECT customer_id, status, ended_on FROM wf_instances ORDER BY customer_id"
    ) == [(c, "completed", dt.date(2026, 3, 5)) for c in "ABCD"]

    # Running the day again changes nothing and writes the same files.
    before = {p.name: p.read_bytes() for p in (shop.out / "2026-03-05").rglob("*.*sv")}
    before[nudge.name] = nudge.read_bytes()
    shop.run("2026-03-05")
    after = {p.name: p.read_bytes() for p in (shop.out / "2026-03-05").rglob("*.*sv")}
    after[nudge.name] = nudge.read_bytes()
    assert after == before
    assert shop.query("SELECT count(*) FROM ledger WHERE kind = 'award'") == [(4,)]
    assert shop.query("SELECT count(*) FROM coupon_codes WHERE assigned_on IS NOT NULL") == [(1,)]

    con = state.connect(shop.state, read_only=True)
    try:
        steps = explain(con, "A")["workflow_steps"]
    finally:
        con.close()
    assert [(str(s["run_on"]), s["step_id"], s["action"], s["coupon_code"]) for s in steps] == [
        ("2026-03-02", None, "entered", None),
        ("2026-03-02", "hello", "sent", None),
        ("2026-03-02", "step-2", "waiting", None),
        ("2026-03-05", "nudge", "sent", code),
        ("2026-03-05", "thanks", "awarded", None),
        ("2026-03-05", None, "completed", None),
    ]


def test_backfill_equals_single_runs_for_workflows(tmp_path):
    one = welcome_shop(tmp_path / "one")
    one.run("2026-03-01")
    for day in ("2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"):
        one.run(day)
    two = welcome_shop(tmp_path / "two")
    two.run("2026-03-01")
    two.backfill("2026-03-02", "2026-03-05")
    for day in ("2026-03-02", "2026-03-05"):
        a = (one.out / day / "audiences" / "welcome.csv").read_bytes()
        assert a == (two.out / day / "audiences" / "welcome.csv").read_bytes()
    log = "SELECT * FROM wf_log ORDER BY ALL"
    assert one.query(log) == two.query(log)


ORDERS_PROGRAM = """
    earning:
      rules:
        - {id: base, on: order, points: order.total}
    """


def test_weekly_limit_lets_the_higher_priority_send_first(tmp_path):
    daily = """
        version: 1
        workflow:
          id: promo
          trigger: {schedule: {every: day}}
          audience: balance >= 100
          reentry: 1 day
          priority: 10
          steps:
            - {id: offer, send: {channel: email, template: hello}}
        """
    weekly = """
        version: 1
        workflow:
          id: news
          trigger: {schedule: {every: week, day: 1}}
          reentry: 7 days
          steps:
            - {id: letter, send: {channel: email, template: hello}}
        """
    shop = shop_with(tmp_path, ORDERS_PROGRAM, {"promo": daily, "news": weekly}, max_per_week=1)
    shop.add(
        "customers",
        customer("A", "2026-01-05 10:00:00", email_consent="true"),
        customer("B", "2026-01-05 10:00:00", email_consent="true"),
    )
    shop.add("orders", order("O1", "A", "2026-01-10 10:00:00", "150.00"))
    shop.run("2026-03-08")  # a Sunday
    shop.run("2026-03-16")  # Monday 03-09 .. Monday 03-16, day by day

    sent = shop.query(
        """SELECT run_on, workflow_id, customer_id, action, detail FROM wf_log
        WHERE action IN ('sent', 'skipped') ORDER BY run_on, workflow_id, customer_id"""
    )
    d = dt.date

    def day(n):
        return d(2026, 3, n)

    expected = [
        # The first run (Sunday 03-08) is a day of the schedule too.
        (day(8), "promo", "A", "sent", None),
        # Monday 03-09: promo (priority 10) reaches A first; news then finds A at the limit.
        (day(9), "news", "A", "skipped", "weekly_limit"),
        (day(9), "news", "B", "sent", None),
        (day(9), "promo", "A", "sent", None),
    ]
    # Tuesday to Sunday: promo takes A in again each day, but the week's one message is used.
    expected += [(day(n), "promo", "A", "skipped", "weekly_limit") for n in range(10, 16)]
    # Monday 03-16 is a new ISO week.
    expected += [
        (day(16), "news", "A", "skipped", "weekly_limit"),
        (day(16), "news", "B", "sent", None),
        (day(16), "promo", "A", "sent", None),
    ]
    assert sent == expected


def test_a_short_coupon_pool_refuses_the_run_and_plan_warns(tmp_path):
    body = """
        earning:
          rules:
            - {id: base, on: order, points: order.total}
        coupons:
          pools:
            - {id: gift, source: file, path: gift.csv}
        """
    flow = """
        version: 1
        workflow:
          id: gift
          trigger: joined
          steps:
            - id: hello
              send: {channel: email, template: hello}
              coupon: {pool: gift}
        """
    shop = shop_with(tmp_path, body, {"gift": flow})
    (tmp_path / "gift.csv").write_text("code\nGIFT-1\n")
    shop.add(
        "customers",
        customer("A", "2026-03-02 10:00:00", email_consent="true"),
        customer("B", "2026-03-02 11:00:00", email_consent="true"),
    )
    shop.run("2026-03-01")
    planned = plan(shop.program, shop.data, dt.date(2026, 3, 2), shop.state)
    reason = "coupon pool 'gift' has 1 free code(s) and workflow 'gift' step 'hello' needs 2"
    assert reason in planned.warnings
    result = shop.run("2026-03-02")
    assert result.status == "refused" and result.exit_code == 3
    assert reason in result.reason
    report = json.loads((shop.out / "2026-03-02" / "run.json").read_text())
    assert report["status"] == "refused"
    # The state is as before: no run for 03-02, nobody entered, the code is still free.
    assert shop.query("SELECT max(as_of) FROM runs") == [(dt.date(2026, 3, 1),)]
    assert shop.query("SELECT count(*) FROM wf_instances") == [(0,)]
    assert shop.query("SELECT count(*) FROM coupon_codes WHERE assigned_to IS NOT NULL") == [(0,)]
    # A second code in the file: the run goes through and each member gets one.
    (tmp_path / "gift.csv").write_text("code\nGIFT-1\nGIFT-2\n")
    assert shop.run("2026-03-02").status == "ok"
    assert shop.query("SELECT assigned_to, code FROM coupon_codes ORDER BY assigned_to") == [
        ("A", "GIFT-1"),
        ("B", "GIFT-2"),
    ]


def test_tier_up_sees_the_new_tier_and_exit_when_ends_the_instance(tmp_path):
    body = """
        earning:
          rules:
            - {id: base, on: order, points: order.total}
        tiers:
          basis: spend
          window: 365 days
          levels:
            - {id: bronze, name: Bronze, min: 0}
            - {id: gold, name: Gold, min: 100}
        """
    flow = """
        version: 1
        workflow:
          id: gold
          trigger: {tier_up: {to: gold}}
          audience: tier = 'gold'
          exit_when: ordered_since_entry
          steps:
            - wait: 2 days
            - {id: hello, send: {channel: email, template: hello}}
        """
    shop = shop_with(tmp_path, body, {"gold": flow})
    shop.add(
        "customers",
        customer("A", "2026-01-05 10:00:00", email_consent="true", first_name="Ann"),
        customer("B", "2026-01-05 10:00:00", email_consent="true", first_name="Ben"),
    )
    shop.run("2026-03-01")
    shop.add(
        "orders",
        order("O1", "A", "2026-03-02 10:00:00", "150.00"),
        order("O2", "B", "2026-03-02 11:00:00", "120.00"),
        # A orders again the next day: ordered since entering.
        order("O3", "A", "2026-03-03 09:00:00", "10.00"),
    )
    shop.run("2026-03-04")
    log = shop.query(
        "SELECT run_on, customer_id, step_id, action FROM wf_log ORDER BY customer_id, run_on"
    )
    d2, d4 = dt.date(2026, 3, 2), dt.date(2026, 3, 4)
    assert log == [
        # The promotion of 03-02 is seen by the audience (tier = 'gold') the same day.
        (d2, "A", None, "entered"),
        (d2, "A", "step-1", "waiting"),
        (d4, "A", "hello", "exited"),
        (d2, "B", None, "entered"),
        (d2, "B", "step-1", "waiting"),
        (d4, "B", "hello", "sent"),
        (d4, "B", None, "completed"),
    ]
    assert shop.query("SELECT customer_id, status FROM wf_instances ORDER BY 1") == [
        ("A", "exited"),
        ("B", "completed"),
    ]
    # B's balance in the message is as at the end of 03-04: 120 points.
    batch = jsonl(shop.out / "2026-03-04" / "messages" / "gold" / "hello.email.jsonl")
    assert [(m["customer_id"], m["subject"], m["text"]) for m in batch] == [
        ("B", "Hi Ben", "120 pts")
    ]


def test_birthday_on_feb_29_fires_on_feb_28_and_reentry_waits(tmp_path):
    flow = """
        version: 1
        workflow:
          id: bday
          trigger: birthday
          reentry: 400 days
          steps:
            - {id: wish, send: {channel: email, template: hello}}
        """
    shop = shop_with(tmp_path, ORDERS_PROGRAM, {"bday": flow})
    shop.add(
        "customers",
        customer("L", "2025-01-05 10:00:00", email_consent="true", birth_date="2000-02-29"),
        customer("M", "2025-01-05 10:00:00", email_consent="true", birth_date="1990-03-01"),
        # Joins after L's 2027 birthday: the first one is 29 February 2028.
        customer("N", "2027-06-01 10:00:00", email_consent="true", birth_date="2004-02-29"),
    )
    shop.run("2027-02-26")
    shop.run("2027-03-01")  # 2027 has no 29 February
    shop.run("2028-02-27", catch_up=False)
    shop.run("2028-03-01")
    assert shop.query("SELECT run_on, customer_id FROM wf_log WHERE action = 'sent'") == [
        (dt.date(2027, 2, 28), "L"),
        (dt.date(2027, 3, 1), "M"),
        # 2028 is a leap year. L and M entered less than 400 days before their birthdays.
        (dt.date(2028, 2, 29), "N"),
    ]


def test_sms_goes_to_valid_numbers_and_bad_ones_are_reported(tmp_path):
    flow = """
        version: 1
        workflow:
          id: text
          trigger: joined
          steps:
            - {id: hi, send: {channel: sms, template: hello}}
        """
    shop = shop_with(tmp_path, ORDERS_PROGRAM, {"text": flow})
    shop.add(
        "customers",
        customer(
            "P", "2026-03-02 10:00:00", first_name="Pia", phone="512 345 678", sms_consent="true"
        ),
        customer("Q", "2026-03-02 10:00:00", phone="+48 12", sms_consent="true"),
        customer("R", "2026-03-02 10:00:00", phone="512 345 679"),
    )
    shop.run("2026-03-01")
    result = shop.run("2026-03-02")
    skipped = [
        (r["customer_id"], r["detail"])
        for r in shop.csv("2026-03-02", "audiences/text.csv")
        if r["action"] == "skipped"
    ]
    assert skipped == [("Q", "sms: invalid phone"), ("R", "sms: no consent")]
    assert result.warnings == [
        "workflow 'text' step 'hi': 1 member(s) agreed to SMS but their phone number is not "
        "valid (audiences/text.csv)"
    ]
    # Written without a country code, read in messaging.default_region (PL).
    batch = (shop.out / "2026-03-02" / "messages" / "text" / "hi.sms.csv").read_text()
    assert batch.splitlines()[1:] == [
        f"P,{mid('text', 'hi', 'P', '2026-03-02')},+48512345678,SHOP,Hi Pia: 0 pts,GSM-7,1"
    ]


def test_email_goes_to_valid_addresses_and_bad_ones_are_reported(tmp_path):
    """An address that would add recipients or headers, or is no address at all, is not
    used: the fallback is, or the step is skipped; either way the run warns."""
    flow = """
        version: 1
        workflow:
          id: mail
          trigger: joined
          steps:
            - {id: hi, send: {channel: email, template: hello, fallback: sms}}
        """
    shop = shop_with(tmp_path, ORDERS_PROGRAM, {"mail": flow})
    joined = "2026-03-02 10:00:00"
    shop.add(
        "customers",
        customer("A", joined, email=" a.b+c@shop.example.com ", email_consent="true"),
        customer("B", joined, email="b@example.com, victim@other.example", email_consent="true"),
        customer("C", joined, email="c@example.com\nBcc: evil@x.example", email_consent="true"),
        customer(
            "D",
            joined,
            email="not an email",
            email_consent="true",
            sms_consent="true",
            phone="512 345 678",
        ),
        customer("E", joined, email="e@localhost", email_consent="true"),
    )
    shop.run("2026-03-01")
    result = shop.run("2026-03-02")
    got = [
        (r["customer_id"], r["action"], r["channel"], r["detail"])
        for r in shop.csv("2026-03-02", "audiences/mail.csv")
        if r["action"] in ("sent", "skipped")
    ]
    no_phone = "email: invalid address; sms: no phone"
    assert got == [
        ("A", "sent", "email", ""),
        ("B", "skipped", "", no_phone),
        ("C", "skipped", "", no_phone),
        ("D", "sent", "sms", ""),
        ("E", "skipped", "", no_phone),
    ]
    assert result.warnings == [
        "workflow 'mail' step 'hi': 4 member(s) agreed to email but their address is not "
        "valid (audiences/mail.csv)"
    ]
    (message,) = jsonl(shop.out / "2026-03-02" / "messages" / "mail" / "hi.email.jsonl")
    assert message["to"] == "a.b+c@shop.example.com"


def test_segment_enter_and_points_expiring_fire_on_the_day(tmp_path):
    body = """
        earning:
          rules:
            - {id: visit, on: event, when: "event.type = 'visit'", points: 60}
        expiry:
          after: 10 days
          notify_before: 5 days
        segments:
          - {id: rich, type: rule, when: balance >= 100}
        """
    rich = """
        version: 1
        workflow:
          id: rich
          trigger: {segment_enter: {segment: rich}}
          steps:
            - {id: hi, send: {channel: email, template: hello}}
        """
    expiring = """
        version: 1
        workflow:
          id: expiring
          trigger: points_expiring
          steps:
            - {id: hi, send: {channel: email, template: hello}}
        """
    shop = shop_with(tmp_path, body, {"rich": rich, "expiring": expiring})
    shop.add("customers", customer("A", "2026-02-01 10:00:00", email_consent="true"))
    shop.add(
        "events",
        {"event_id": "v1", "customer_id": "A", "type": "visit", "occurred_at": "2026-03-01 10:00"},
        {"event_id": "v2", "customer_id": "A", "type": "visit", "occurred_at": "2026-03-02 10:00"},
    )
    shop.run("2026-03-01")
    shop.run("2026-03-10")
    log = shop.query(
        "SELECT run_on, workflow_id, action FROM wf_log WHERE action = 'sent' ORDER BY 1, 2"
    )
    assert log == [
        # The rule segment sees the member after the day's earning: the 60 points of 03-02
        # make 120 and put A in it on 03-02.
        (dt.date(2026, 3, 2), "rich", "sent"),
        # 60 points earned on 03-01 expire at the end of 03-11: within 5 days from 03-06.
        (dt.date(2026, 3, 6), "expiring", "sent"),
    ]


def test_redemption_trigger_tells_the_template_the_reward_and_its_code(tmp_path):
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "thanks.sms.j2").write_text(
        "{{ reward.name }} for {{ reward.cost }} pts: {{ coupon.code }} until "
        "{{ coupon.valid_until }}; {{ balance }} left"
    )
    (tmp_path / "p.csv").write_text("code,valid_until\nP-1,2026-06-30\n")
    body = """
        earning:
          rules:
            - {id: base, on: order, points: order.total}
        rewards:
          - {id: r20, name: 20 off, cost: 100, coupon_pool: p}
          - {id: r50, name: 50 off, cost: 250}
        coupons:
          pools:
            - {id: p, source: file, path: p.csv}
        """
    flow = """
        version: 1
        workflow:
          id: thanks
          trigger: {redemption: {reward: r20}}
          steps:
            - {id: sms, send: {channel: sms, template: thanks}}
        """
    shop = shop_with(tmp_path, body, {"thanks": flow})
    shop.add(
        "customers",
        customer("A", "2026-01-05 10:00:00", phone="512 345 678", sms_consent="true"),
        customer("B", "2026-01-05 10:00:00", phone="512 345 679", sms_consent="true"),
    )
    shop.add(
        "orders",
        order("O1", "A", "2026-01-10 10:00:00", "300.00"),
        order("O2", "B", "2026-01-10 10:00:00", "300.00"),
    )
    shop.run("2026-03-01")
    shop.add(
        "redemptions",
        {
            "redemption_id": "R1",
            "customer_id": "A",
            "reward_id": "r20",
            "requested_at": "2026-03-02 09:00:00",
        },
        # Another reward: not this workflow's trigger.
        {
            "redemption_id": "R2",
            "customer_id": "B",
            "reward_id": "r50",
            "requested_at": "2026-03-02 09:00:00",
        },
    )
    shop.run("2026-03-02")
    batch = (shop.out / "2026-03-02" / "messages" / "thanks" / "sms.sms.csv").read_text()
    assert batch.splitlines()[1:] == [
        f"A,{mid('thanks', 'sms', 'A', '2026-03-02')},+48512345678,SHOP,"
        "20 off for 100 pts: P-1 until 2026-06-30; 200 left,GSM-7,1"
    ]
    assert shop.query("SELECT customer_id, trigger_ref FROM wf_instances") == [("A", "R1")]


@pytest.mark.parametrize("stage", ["workflows", "outputs"])
def test_a_run_killed_in_its_workflows_or_files_leaves_the_state_as_before(tmp_path, stage):
    shop = welcome_shop(tmp_path / "killed")
    ref = welcome_shop(tmp_path / "ref")
    for s in (shop, ref):
        s.run("2026-03-01")
        s.run("2026-03-04")
    before = dump_state(shop.state)
    # 03-05 sends the nudge with a coupon and awards points: killed, none of it stays.
    proc = shop.run_cli("2026-03-05", {"LOYALTY_KILL_AT": stage})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert dump_state(shop.state) == before
    check_invariants(shop.state)
    ok = shop.run_cli("2026-03-05")
    assert ok.returncode == 0, ok.stderr
    ref.run("2026-03-05")
    # The same state (coupon codes are random: the same one is assigned in each, to A).
    codes = "SELECT code FROM coupon_codes WHERE assigned_to IS NOT NULL"
    [(killed_code,)], [(ref_code,)] = shop.query(codes), ref.query(codes)
    killed, reference = dump_state(shop.state), dump_state(ref.state)
    for dump, code in ((killed, killed_code), (reference, ref_code)):
        dump["coupon_codes"] = sorted(
            repr(r).replace(code, "CODE") for r in dump["coupon_codes"] if r[4] is not None
        )
    assert killed == reference
    files = dump_outputs(shop.out)
    ref_files = dump_outputs(ref.out)
    assert files.keys() == ref_files.keys()
    for name, data in files.items():
        assert data.replace(killed_code.encode(), b"CODE") == ref_files[name].replace(
            ref_code.encode(), b"CODE"
        ), name


def test_members_past_the_last_step_of_a_shortened_workflow_complete_it(tmp_path):
    long_flow = """
        version: 1
        workflow:
          id: series
          trigger: joined
          steps:
            - {id: one, send: {channel: email, template: hello}}
            - wait: 2 days
            - {id: two, send: {channel: email, template: hello}}
            - wait: 2 days
            - {id: three, send: {channel: email, template: hello}}
        """
    shop = shop_with(tmp_path, ORDERS_PROGRAM, {"series": long_flow})
    shop.add("customers", customer("A", "2026-03-02 10:00:00", email_consent="true"))
    shop.run("2026-03-01")
    shop.run("2026-03-04")  # A took `two` on 03-04 and waits at the fourth step
    assert shop.query("SELECT next_step, resume_on, status FROM wf_instances") == [
        (4, dt.date(2026, 3, 6), "active")
    ]
    # The workflow loses its last two steps while A waits.
    short = long_flow.split("            - wait: 2 days\n            - {id: three")[0]
    (tmp_path / "workflows" / "series.yaml").write_text(textwrap.dedent(short))
    shop.run("2026-03-06")
    assert shop.query("SELECT status, ended_on FROM wf_instances") == [
        ("completed", dt.date(2026, 3, 6))
    ]
    assert shop.csv("2026-03-06", "audiences/series.csv") == [
        {
            "customer_id": "A",
            "step": "",
            "action": "completed",
            "channel": "",
            "message_id": "",
            "detail": "",
        }
    ]


def born_shop(tmp_path, pool: str, template: dict[str, str]) -> Shop:
    """A welcome email with a code of pool `gift` and the `born` template, to A, born in
    1990, and B, with no birth date; both join on 2026-03-02."""
    body = f"""
        earning:
          rules:
            - {{id: base, on: order, points: order.total}}
        coupons:
          pools:
            - {pool}
        """
    flow = """
        version: 1
        workflow:
          id: born
          trigger: joined
          steps:
            - id: hello
              send: {channel: email, template: born}
              coupon: {pool: gift}
        """
    shop = shop_with(tmp_path, body, {"born": flow})
    for part, text in template.items():
        (tmp_path / "templates" / f"born.{part}.j2").write_text(text)
    shop.add(
        "customers",
        customer("A", "2026-03-02 10:00:00", email_consent="true", birth_date="1990-05-01"),
        customer("B", "2026-03-02 11:00:00", email_consent="true"),
    )
    return shop


def test_a_template_that_fails_for_one_member_skips_only_that_message(tmp_path):
    """B has no birth date: `customer.birth_date.year` fails for B alone. B's message is
    not sent (skipped, with the template's reason), B's code goes back to the pool, the
    run warns and goes on: A's message goes out and the day's points are booked."""
    shop = born_shop(
        tmp_path,
        "{id: gift, source: file, path: gift.csv}",
        {
            "subject": "Born in {{ customer.birth_date.year }}",
            "html": "<p>{{ coupon.code }}</p>",
            "txt": "{{ coupon.code }}",
        },  # fmt: skip
    )
    (tmp_path / "gift.csv").write_text("code\nGIFT-1\nGIFT-2\n")
    shop.add("orders", order("O1", "B", "2026-03-02 12:00", "30.00"))
    shop.run("2026-03-01")
    planned = plan(shop.program, shop.data, dt.date(2026, 3, 2), shop.state)
    result = shop.run("2026-03-02")
    assert result.status == "ok"
    assert (planned.counts["workflows"], planned.warnings) == (
        result.counts["workflows"],
        result.warnings,
    )
    assert result.counts["workflows"] == {
        "born.coupons": 1,
        "born.entered": 2,
        "born.completed": 2,
        "born.sent": 1,
        "born.skipped": 1,
    }
    assert result.counts["coupons"] == {"gift.left": 1}
    why = "template: born.subject.j2:1: undefined template variable: 'None' has no attribute 'year'"
    assert result.warnings == [
        f"workflow 'born' step 'hello': 1 message(s) not sent, their template failed for the "
        f"member (customer 'B': {why}); see audiences/born.csv"
    ]
    audience = shop.csv("2026-03-02", "audiences/born.csv")
    assert [(r["customer_id"], r["action"], r["message_id"], r["detail"]) for r in audience] == [
        ("A", "entered", "", ""),
        ("A", "sent", mid("born", "hello", "A", "2026-03-02"), ""),
        ("A", "completed", "", ""),
        ("B", "entered", "", ""),
        ("B", "skipped", "", why),
        ("B", "completed", "", ""),
    ]
    sent = jsonl(shop.out / "2026-03-02" / "messages" / "born" / "hello.email.jsonl")
    assert [(m["customer_id"], m["subject"], m["text"]) for m in sent] == [
        ("A", "Born in 1990", "GIFT-1")
    ]
    assert shop.query("SELECT code, assigned_to FROM coupon_codes ORDER BY code") == [
        ("GIFT-1", "A"),
        ("GIFT-2", None),
    ]
    assert shop.balance("B") == (30, 0)
    # A rerun of the day writes the same files.
    before = dump_outputs(shop.out)
    shop.run("2026-03-02")
    assert dump_outputs(shop.out) == before


def test_a_workflow_expression_that_fails_on_a_value_names_the_workflows(tmp_path):
    from loyalty_cli.diagnostics import LoyaltyError

    flow = """
        version: 1
        workflow:
          id: odd
          trigger: joined
          audience: 100 // (orders_count - orders_count) > 0
          steps:
            - {id: hi, send: {channel: email, template: hello}}
        """
    shop = shop_with(tmp_path, ORDERS_PROGRAM, {"odd": flow})
    shop.add("customers", customer("A", "2026-03-02 10:00:00", email_consent="true"))
    shop.run("2026-03-01")
    with pytest.raises(LoyaltyError) as err:
        shop.run("2026-03-02")
    diag = err.value.diagnostics[0]
    assert diag.code == "D613"
    assert diag.message.startswith(
        "a value does not fit an expression of a workflow (audience, if, exit_when, award) "
        "while running the workflows step for 2026-03-02; the state is unchanged:"
    )
    assert shop.query("SELECT max(as_of) FROM runs") == [(dt.date(2026, 3, 1),)]


def test_a_generated_code_of_a_message_not_sent_goes_back_without_an_end_date(tmp_path):
    shop = born_shop(
        tmp_path,
        "{id: gift, source: generate, length: 8, count: 2, valid_days: 30}",
        {"subject": "{{ customer.birth_date.year }}", "html": "x", "txt": "x"},
    )
    shop.run("2026-03-01")
    result = shop.run("2026-03-02")
    assert result.counts["workflows"] == {
        "born.coupons": 1,
        "born.entered": 2,
        "born.completed": 2,
        "born.sent": 1,
        "born.skipped": 1,
    }
    # A's code ends 30 days after it was given; the other is free, with no end date yet.
    assert shop.query(
        "SELECT assigned_to, assigned_on, valid_until FROM coupon_codes ORDER BY seq"
    ) == [
        ("A", dt.date(2026, 3, 2), dt.date(2026, 4, 1)),
        (None, None, None),
    ]


def test_an_order_reexported_as_cancelled_stops_counting_in_the_audience_that_night(tmp_path):
    """The night an order comes back cancelled it is still `completed` in the state until
    the run's end; the audience must not count it, as the rerun of that night (which finds
    it cancelled) does not."""
    daily = """
        version: 1
        workflow:
          id: loyal
          trigger: {schedule: {every: day}}
          audience: orders_count >= 2
          reentry: 1 day
          steps:
            - {id: gift, award: {points: 7, reason: two-orders}}
        """
    shop = shop_with(tmp_path, ORDERS_PROGRAM, {"loyal": daily})
    shop.add("customers", customer("A", "2026-01-05 10:00:00"))
    shop.add(
        "orders",
        order("O1", "A", "2026-03-01 10:00:00", "10.00"),
        order("O2", "A", "2026-03-08 10:00:00", "20.00"),
    )
    shop.run("2026-03-09")  # two orders: A is let in and awarded 7
    shop.rows["orders"][1]["status"] = "cancelled"
    shop.export()
    shop.run("2026-03-10")  # O2 cancelled tonight: one order left, A stays out
    awards = shop.query("SELECT run_on, points FROM ledger WHERE kind = 'award' ORDER BY entry_id")
    assert awards == [(dt.date(2026, 3, 9), 7)]
    before = dump_state(shop.state)
    shop.run("2026-03-10")  # the rerun agrees
    assert dump_state(shop.state) == before
