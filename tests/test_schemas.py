# ruff: noqa: E501  (the SPEC examples below are copied literally, long lines included)
"""The published contract of the YAML formats: schemas/program.schema.json and
schemas/workflow.schema.json (JSON Schema 2020-12).

The schema must accept the SPEC's own examples, and each way of getting a file wrong
must give one error at the key that is wrong, so `loyalty validate` can say where.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from ruamel.yaml import YAML

from loyalty_cli import columns
from loyalty_cli.config.yamlload import load_yaml_text

ROOT = Path(__file__).resolve().parent.parent
SCHEMA_DIR = ROOT / "schemas"
PACKAGED_DIR = ROOT / "loyalty_cli" / "schemas"
DOCS_DIR = ROOT / "docs"
NAMES = ("program", "workflow")

# SPEC section 4, copied literally.
SPEC_PROGRAM = """\
version: 1
program:
  id: fashion-club
  name: Fashion Club
  currency: PLN
  timezone: Europe/Warsaw
  point_value: 0.02            # money value of one point: liability in reports
  starts_on: 2026-01-01        # optional: bonuses only for trigger days from this date
sources:
  customers:   {path: customers.csv, columns: {customer_id: id, birth_date: dob},
                extra: {newsletter_segment: varchar}}
  orders:      {path: "orders*.csv", status_map: {paid: completed, refunded: cancelled},
                csv: {delimiter: ";", decimal: ","}}
  order_items: {path: order_items.parquet}
  returns:     {path: returns.csv}
  events:      {path: "events/*.jsonl"}
  redemptions: {path: redemptions.csv}
  adjustments: {path: adjustments.csv}
data: {max_reject_rate: 0.01}

earning:
  rounding: floor              # floor | round | ceil, per rule per row
  pending_days: 14             # order points become available after this many days
  rules:
    - id: base
      on: order                # order | order_item | event
      points: order.total      # expression: 1 point per PLN
      qualifying: true         # counts toward tier basis `points` (default false)
    - id: big-basket
      on: order
      when: order.total >= 500
      points: 100
    - id: new-collection
      on: order_item
      when: list_contains(item.tags, 'new')
      points: item.unit_price * item.quantity
    - id: newsletter-read
      on: event
      when: event.type = 'email_open'
      points: 2
      cap: {max: 10, per: week}     # per customer per rule; day | week | month | year | ever
    - id: unsubscribe
      on: event
      when: event.type = 'unsubscribe'
      points: -50

bonuses:
  - {id: welcome,  trigger: joined,   points: 100}        # once per customer
  - {id: birthday, trigger: birthday, points: 200}        # once a year; Feb 29 -> Feb 28
  - id: referral
    trigger: referral          # referee's first order becomes available (not returned)
    points: {referrer: 300, referee: 100}
  - id: new-in-week
    trigger: challenge
    period: week
    on: order_item
    when: list_contains(item.tags, 'new')
    goal: {count: 1}           # at least 1 matching row in the period;
                               # or {sum: item.unit_price * item.quantity, at_least: 300}
    points: 150                # available at once, no multiplier
    badge: trendsetter         # badges are stored and shown in explain/report

expiry:
  after: 365 days              # each earned lot expires at the end of that day
  at: end_of_day               # or end_of_month | end_of_quarter | end_of_year: rounds the date up
  inactivity: 730 days         # optional: all points expire after no order for this long
  notify_before: 30 days

tiers:
  basis: spend                 # spend | points (qualifying points)
  window: 365 days             # rolling, ending on the run date
  retain: 365 days             # a tier is kept at least this long after last qualifying
  downgrade: one_level         # one_level | to_qualified
  levels:
    - {id: bronze, name: Bronze, min: 0}
    - {id: silver, name: Silver, min: 1000, multiplier: 1.25}
    - {id: gold,   name: Gold,   min: 5000, multiplier: 1.5}

rewards:
  - {id: discount-20, name: "20 PLN off", cost: 500, coupon_pool: reward-20}
  - {id: spa-weekend, name: "SPA weekend", cost: 20000, min_tier: gold}

coupons:
  pools:
    - {id: reward-20, source: file, path: coupons/reward20.csv}   # CSV: code[, valid_until]
    - {id: winback-25, source: generate, prefix: WB25-, length: 10,  # length excludes prefix
       count: 5000, discount: {percent: 25}, valid_days: 30}       # or discount: {amount: 20}

segments:
  - id: rfm
    type: rfm
    window: 730 days
    scores: 5
    groups:                    # first match wins; r, f, m are the scores
      champions: r >= 4 and f >= 4 and m >= 4
      at_risk: r <= 2 and f >= 3
      hibernating: r <= 2 and f <= 2
      others: "true"
  - id: churn
    type: churn
    model: interval            # interval: value = days since last order / usual gap
    levels: {low: 0, medium: 1.5, high: 3}   # group = highest level whose threshold <= value
                               # bgnbd: value = 1 - P(alive), thresholds in [0, 1]
  - id: clv
    type: clv                  # BG/NBD + Gamma-Gamma; groups `top` and `rest`
    horizon: 365 days
    top_share: 0.10
  - id: lapsed-gold
    type: rule                 # group = the segment id
    when: tier = 'gold' and days_since_last_order > 90

messaging:
  max_per_week: 3              # messages per member per ISO week, all workflows together
  from_email: club@shop.example
  sms_sender: SHOP
  default_region: PL           # for phone numbers written without a country code
templates: templates/          # relative to this file
workflows: ["workflows/*.yaml"]   # relative to this file
"""

# SPEC section 6, copied literally.
SPEC_WORKFLOW = """\
version: 1
workflow:
  id: winback-gold
  trigger: {segment_enter: {segment: churn, group: high}}
  # others: joined, birthday, tier_up, tier_down, points_expiring, redemption,
  #         segment_enter/segment_exit, schedule: {every: month, day: 1}
  audience: tier in ('gold', 'silver')
  reentry: 180 days            # a member may enter again only this long after entering
  exit_when: ordered_since_entry   # checked before every step; true ends the instance
  priority: 10                 # higher wins when messaging.max_per_week is reached
  steps:
    - id: first-email          # optional; default step-1, step-2, ...
      send: {channel: email, template: winback, fallback: sms}   # fallback uses the same template name
      coupon: {pool: winback-25}
    - wait: 7 days
    - if: not ordered_since_entry
      send: {channel: sms, template: winback-reminder}
    - award: {points: 50, reason: winback}
"""

MINIMAL_PROGRAM = """\
version: 1
program: {id: shop, name: Shop Club, currency: PLN, timezone: Europe/Warsaw}
sources:
  customers: {path: customers.csv}
  orders: {path: orders.csv}
"""

MINIMAL_WORKFLOW_HEAD = """\
version: 1
workflow:
  id: welcome
"""

SEND_STEP = "  steps:\n    - send: {channel: email, template: welcome}\n"


def load_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))


def to_json(value: Any) -> Any:
    """YAML dates become ISO strings, as the config loader hands them to the schema."""
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_json(v) for v in value]
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    return value


def load_yaml(text: str) -> Any:
    yaml = YAML(typ="safe", pure=True)  # YAML 1.2: `on:` stays a string key
    return to_json(yaml.load(text))


def dotted(path: Any) -> str:
    """`earning.rules[2].when`, the way diagnostics print a path."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def errors(name: str, text: str) -> list[tuple[str, str]]:
    validator = Draft202012Validator(load_schema(name))
    found = validator.iter_errors(load_yaml(text))
    return sorted((dotted(e.absolute_path), e.message) for e in found)


def walk(schema: Any, where: str = "#", branch: bool = False):
    """Every subschema with its JSON pointer, and whether it only refines a variant."""
    if isinstance(schema, dict):
        yield where, schema, branch
        for key, value in schema.items():
            if key in ("properties", "patternProperties", "$defs"):
                for sub_key, sub in value.items():
                    yield from walk(sub, f"{where}/{key}/{sub_key}", branch)
            elif key in ("items", "additionalProperties", "propertyNames"):
                yield from walk(value, f"{where}/{key}", branch)
            elif key in ("if", "then", "else", "not"):
                yield from walk(value, f"{where}/{key}", True)
            elif key in ("allOf", "anyOf", "oneOf", "prefixItems"):
                for i, sub in enumerate(value):
                    yield from walk(sub, f"{where}/{key}/{i}", branch)


# -- the schemas themselves ---------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_schema_is_valid_2020_12(name: str) -> None:
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", NAMES)
def test_packaged_copy_is_identical(name: str) -> None:
    published = (SCHEMA_DIR / f"{name}.schema.json").read_bytes()
    packaged = (PACKAGED_DIR / f"{name}.schema.json").read_bytes()
    assert packaged == published, f"copy schemas/{name}.schema.json to loyalty_cli/schemas/"


@pytest.mark.parametrize("name", NAMES)
def test_every_object_is_closed_and_every_property_described(name: str) -> None:
    for where, sub, branch in walk(load_schema(name)):
        types = sub.get("type", [])
        if branch or "object" not in (types if isinstance(types, list) else [types]):
            continue
        assert "additionalProperties" in sub, f"{where}: unknown keys must be errors"
        if sub["additionalProperties"] is not False:
            assert isinstance(sub["additionalProperties"], dict), where  # a mapping's values
        for key, prop in sub.get("properties", {}).items():
            assert isinstance(prop, dict) and prop.get("description"), f"{where}.{key}"
        for key, prop in sub.get("patternProperties", {}).items():
            assert prop.get("description"), f"{where} /{key}/"


def test_program_schema_follows_the_data_contract() -> None:
    defs = load_schema("program")["$defs"]
    assert tuple(defs["column_type"]["enum"]) == columns.TYPES
    for source, cols in columns.SOURCE_COLUMNS.items():
        mapped = defs[f"source_{source}"]["properties"]["columns"]["properties"]
        assert sorted(mapped) == sorted(cols), source
    assert load_schema("program")["properties"]["sources"]["required"] == list(
        columns.REQUIRED_SOURCES
    )


def test_shared_definitions_agree() -> None:
    program, workflow = load_schema("program")["$defs"], load_schema("workflow")["$defs"]
    for name in ("id", "duration", "expression"):
        assert program[name] == workflow[name], name


def test_duration_pattern() -> None:
    validator = Draft202012Validator(load_schema("program")["$defs"]["duration"])
    for good in ("1 day", "14 days", "1 week", "2 weeks", "1 month", "6 months", "1 year"):
        assert validator.is_valid(good), good
    for bad in (
        "14",
        "14d",
        "14 Days",
        " 14 days",
        "14  days",
        "-1 day",
        "1.5 days",
        "14 hours",
        14,
    ):
        assert not validator.is_valid(bad), bad


# -- examples that must validate ----------------------------------------------------------


def test_spec_program_example_is_valid() -> None:
    assert errors("program", SPEC_PROGRAM) == []


def test_spec_workflow_example_is_valid() -> None:
    assert errors("workflow", SPEC_WORKFLOW) == []


def test_yaml_1_2_keeps_on_a_string_key() -> None:
    """9.18, through the product's own loader: `on:` is a string key, and YAML 1.1's
    `yes`/`no`/`on`/`off` values stay text (only `true`/`false` are booleans)."""
    doc, problems = load_yaml_text(
        "earning:\n  rules:\n    - {id: a, on: order, qualifying: yes, x: off, y: true}\n",
        "p.yaml",
    )
    assert problems == []
    assert doc is not None
    assert doc.data == {
        "earning": {
            "rules": [{"id": "a", "on": "order", "qualifying": "yes", "x": "off", "y": True}]
        }
    }
    rule = doc.data["earning"]["rules"][0]
    assert list(rule) == ["id", "on", "qualifying", "x", "y"]


VALID_PROGRAM_SNIPPETS = {
    "nothing optional": "",
    "sources with every option": (
        "  order_items: {path: items.parquet, columns: {unit_price: price},\n"
        "                extra: {brand: varchar}}\n"
        "  returns: {path: returns.csv,\n"
        "            csv: {delimiter: ';', decimal: ',', quote: \"'\", header: false}}\n"
    ),
    "challenge with a sum goal": (
        "bonuses:\n  - {id: big-week, trigger: challenge, period: month, on: order,\n"
        "     goal: {sum: order.total, at_least: 300}, points: 0, badge: big-spender}\n"
    ),
    "generate pool with an amount": (
        "coupons:\n  pools:\n    - {id: ten, source: generate, length: 8, count: 100,"
        " discount: {amount: 10}}\n"
    ),
    "bgnbd churn and default clv": (
        "segments:\n  - {id: churn, type: churn, model: bgnbd, levels: {low: 0, high: 0.7}}\n"
        "  - {id: clv, type: clv}\n"
    ),
    "rule cap ever and a description": (
        "earning:\n  rules:\n    - {id: review, description: Reviews, on: event,"
        " when: \"event.type = 'review'\", points: 20, cap: {max: 100, per: ever}}\n"
    ),
    "from_email with a display name": (
        "messaging: {from_email: 'Fashion Club <club@shop.example>', sms_sender: '+48500100200'}\n"
    ),
}


@pytest.mark.parametrize("snippet", VALID_PROGRAM_SNIPPETS.values(), ids=VALID_PROGRAM_SNIPPETS)
def test_valid_program_variants(snippet: str) -> None:
    assert errors("program", MINIMAL_PROGRAM + snippet) == []


VALID_TRIGGERS = [
    "joined",
    "birthday",
    "tier_up",
    "points_expiring",
    "{joined: {}}",
    "{birthday: }",
    "{tier_up: {to: gold}}",
    "{tier_down: {}}",
    "{points_expiring: {within: 14 days}}",
    "{redemption: {reward: spa-weekend}}",
    "{segment_enter: {segment: rfm, group: champions}}",
    "{segment_exit: {segment: lapsed-gold}}",
    "{schedule: {every: day}}",
    "{schedule: {every: week, day: 1}}",
    "{schedule: {every: month, day: 31}}",
]


@pytest.mark.parametrize("trigger", VALID_TRIGGERS)
def test_valid_triggers(trigger: str) -> None:
    text = MINIMAL_WORKFLOW_HEAD + f"  trigger: {trigger}\n" + SEND_STEP
    assert errors("workflow", text) == []


def test_valid_workflow_with_every_key() -> None:
    text = """\
version: 1
workflow:
  id: vip-thanks
  name: VIP thanks
  description: Thank new gold members.
  trigger: {tier_up: {to: gold}}
  audience: "true"
  reentry: 1 year
  exit_when: false
  priority: -1
  steps:
    - id: mail
      description: Thank you
      send: {channel: sms, template: vip/thanks, fallback: email}
    - wait: 2 weeks
    - {if: orders_count > 3, award: {points: 100, reason: vip-thanks}}
    - {if: balance < 100, send: {channel: email, template: vip.offer}, coupon: {pool: vip}}
"""
    assert errors("workflow", text) == []


# -- documents that must fail, each with one readable error at the right key -----------------

PROGRAM_CASES = {
    "unknown top-level key": (
        "rewardz: []\n",
        "",
        "Additional properties are not allowed ('rewardz' was unexpected)",
    ),
    "unknown key in a rule": (
        "earning:\n  rules:\n    - {id: base, on: order, points: 1, multiplier: 2}\n",
        "earning.rules[0]",
        "Additional properties are not allowed ('multiplier' was unexpected)",
    ),
    "unknown canonical column": (
        "  events: {path: e.jsonl, columns: {kind: event_type}}\n",
        "sources.events.columns",
        "Additional properties are not allowed ('kind' was unexpected)",
    ),
    "unknown source": (
        "  visits: {path: visits.csv}\n",
        "sources",
        "Additional properties are not allowed ('visits' was unexpected)",
    ),
    "wrong type of pending_days": (
        "earning: {pending_days: '14'}\n",
        "earning.pending_days",
        "'14' is not of type 'integer'",
    ),
    "wrong type of qualifying": (
        "earning:\n  rules:\n    - {id: base, on: order, points: 1, qualifying: maybe}\n",
        "earning.rules[0].qualifying",
        "'maybe' is not of type 'boolean'",
    ),
    "bad version": ("", "version", "1 was expected"),
    "missing currency": (
        "",
        "program",
        "'currency' is a required property",
    ),
    "missing rule points": (
        "earning:\n  rules:\n    - {id: base, on: order}\n",
        "earning.rules[0]",
        "'points' is a required property",
    ),
    "bad rounding": (
        "earning: {rounding: up}\n",
        "earning.rounding",
        "'up' is not one of ['floor', 'round', 'ceil']",
    ),
    "bad rule on": (
        "earning:\n  rules:\n    - {id: base, on: purchase, points: 1}\n",
        "earning.rules[0].on",
        "'purchase' is not one of ['order', 'order_item', 'event']",
    ),
    "bad cap period": (
        "earning:\n  rules:\n    - {id: r, on: event, points: 1, cap: {max: 10, per: hour}}\n",
        "earning.rules[0].cap.per",
        "'hour' is not one of ['day', 'week', 'month', 'year', 'ever']",
    ),
    "bad expiry duration": (
        "expiry: {after: 365d}\n",
        "expiry.after",
        "'365d' does not match '^[0-9]{1,4} (day|days|week|weeks|month|months|year|years)$'",
    ),
    "bad tiers window": (
        "tiers: {window: 1 decade, levels: [{id: base, name: Base, min: 0}]}\n",
        "tiers.window",
        "'1 decade' does not match '^[0-9]{1,4} (day|days|week|weeks|month|months|year|years)$'",
    ),
    "bad id": (
        "rewards: [{id: 20 off, name: x, cost: 10}]\n",
        "rewards[0].id",
        "'20 off' does not match '^[A-Za-z0-9][A-Za-z0-9_.-]*$'",
    ),
    "lower-case currency": ("", "program.currency", "'pln' does not match '^[A-Z]{3}$'"),
    "bad extra column type": (
        "  customers: {path: c.csv, extra: {vip: text}}\n",
        "sources.customers.extra.vip",
        "'text' is not one of ['varchar', 'integer', 'decimal', 'boolean', 'date', 'timestamp', "
        "'list']",
    ),
    "bad status_map target": (
        "  orders: {path: o.csv, status_map: {paid: done}}\n",
        "sources.orders.status_map.paid",
        "'done' is not one of ['completed', 'cancelled']",
    ),
    "bad csv decimal": (
        "  orders: {path: o.csv, csv: {decimal: ';'}}\n",
        "sources.orders.csv.decimal",
        "';' is not one of ['.', ',']",
    ),
    "source without path": (
        "  returns: {columns: {amount: value}}\n",
        "sources.returns",
        "'path' is a required property",
    ),
    "reject rate above 1": (
        "data: {max_reject_rate: 1.5}\n",
        "data.max_reject_rate",
        "1.5 is greater than the maximum of 1",
    ),
    "reward cost 0": (
        "rewards: [{id: free, name: Free, cost: 0}]\n",
        "rewards[0].cost",
        "0 is less than the minimum of 1",
    ),
    "multiplier 0": (
        "tiers: {levels: [{id: base, name: Base, min: 0, multiplier: 0}]}\n",
        "tiers.levels[0].multiplier",
        "0 is less than or equal to the minimum of 0",
    ),
    "tiers without levels": (
        "tiers: {basis: points}\n",
        "tiers",
        "'levels' is a required property",
    ),
    "bad tier basis": (
        "tiers: {basis: visits, levels: [{id: base, name: Base, min: 0}]}\n",
        "tiers.basis",
        "'visits' is not one of ['spend', 'points']",
    ),
    "bad expiry at": (
        "expiry: {after: 1 year, at: end_of_week}\n",
        "expiry.at",
        "'end_of_week' is not one of ['end_of_day', 'end_of_month', 'end_of_quarter', "
        "'end_of_year']",
    ),
    "bad bonus trigger": (
        "bonuses: [{id: hello, trigger: signup, points: 10}]\n",
        "bonuses[0].trigger",
        "'signup' is not one of ['joined', 'birthday', 'referral', 'challenge']",
    ),
    "welcome bonus without points": (
        "bonuses: [{id: welcome, trigger: joined}]\n",
        "bonuses[0]",
        "'points' is a required property",
    ),
    "referral points as a number": (
        "bonuses: [{id: ref, trigger: referral, points: 100}]\n",
        "bonuses[0].points",
        "100 is not of type 'object'",
    ),
    "referral without referee": (
        "bonuses: [{id: ref, trigger: referral, points: {referrer: 100}}]\n",
        "bonuses[0].points",
        "'referee' is a required property",
    ),
    "goal on a welcome bonus": (
        "bonuses: [{id: welcome, trigger: joined, points: 10, goal: {count: 1}}]\n",
        "bonuses[0].goal",
        "{'count': 1} should not be valid under {'description': "
        "'goal is only used by bonuses with trigger: challenge'}",
    ),
    "challenge without goal": (
        "bonuses: [{id: c, trigger: challenge, period: week, on: order, points: 10}]\n",
        "bonuses[0]",
        "'goal' is a required property",
    ),
    "goal sum without at_least": (
        "bonuses: [{id: c, trigger: challenge, period: week, on: order, points: 10,"
        " goal: {sum: order.total}}]\n",
        "bonuses[0].goal",
        "'at_least' is a required property",
    ),
    "goal count and sum": (
        "bonuses: [{id: c, trigger: challenge, period: week, on: order, points: 10,"
        " goal: {count: 2, sum: order.total}}]\n",
        "bonuses[0].goal.sum",
        "'order.total' should not be valid under {'description': "
        "'a goal is either count, or sum with at_least'}",
    ),
    "challenge period ever": (
        "bonuses: [{id: c, trigger: challenge, period: ever, on: order, points: 10,"
        " goal: {count: 2}}]\n",
        "bonuses[0].period",
        "'ever' is not one of ['day', 'week', 'month', 'year']",
    ),
    "churn without model": (
        "segments: [{id: churn, type: churn, levels: {low: 0}}]\n",
        "segments[0]",
        "'model' is a required property",
    ),
    "bad churn model": (
        "segments: [{id: churn, type: churn, model: pareto, levels: {low: 0}}]\n",
        "segments[0].model",
        "'pareto' is not one of ['interval', 'bgnbd']",
    ),
    "model on an rfm segment": (
        "segments: [{id: rfm, type: rfm, model: interval, groups: {all: 'true'}}]\n",
        "segments[0].model",
        "'interval' should not be valid under {'description': "
        "'model is only used by segments with type: churn'}",
    ),
    "rfm without groups": (
        "segments: [{id: rfm, type: rfm}]\n",
        "segments[0]",
        "'groups' is a required property",
    ),
    "rfm scores 1": (
        "segments: [{id: rfm, type: rfm, scores: 1, groups: {all: 'true'}}]\n",
        "segments[0].scores",
        "1 is less than the minimum of 2",
    ),
    "clv top_share above 1": (
        "segments: [{id: clv, type: clv, top_share: 10}]\n",
        "segments[0].top_share",
        "10 is greater than the maximum of 1",
    ),
    "rule segment without when": (
        "segments: [{id: vip, type: rule}]\n",
        "segments[0]",
        "'when' is a required property",
    ),
    "bad segment type": (
        "segments: [{id: s, type: kmeans}]\n",
        "segments[0].type",
        "'kmeans' is not one of ['rfm', 'churn', 'clv', 'rule']",
    ),
    "file pool without path": (
        "coupons: {pools: [{id: p, source: file}]}\n",
        "coupons.pools[0]",
        "'path' is a required property",
    ),
    "prefix on a file pool": (
        "coupons: {pools: [{id: p, source: file, path: p.csv, prefix: X-}]}\n",
        "coupons.pools[0].prefix",
        "'X-' should not be valid under {'description': "
        "'prefix is only used by pools with source: generate'}",
    ),
    "generate pool without count": (
        "coupons: {pools: [{id: p, source: generate, length: 8}]}\n",
        "coupons.pools[0]",
        "'count' is a required property",
    ),
    "code length 3": (
        "coupons: {pools: [{id: p, source: generate, length: 3, count: 10}]}\n",
        "coupons.pools[0].length",
        "3 is less than the minimum of 4",
    ),
    "discount percent and amount": (
        "coupons: {pools: [{id: p, source: generate, length: 8, count: 10,"
        " discount: {percent: 10, amount: 5}}]}\n",
        "coupons.pools[0].discount.amount",
        "5 should not be valid under {'description': 'a discount is either percent or amount'}",
    ),
    "bad pool source": (
        "coupons: {pools: [{id: p, source: api}]}\n",
        "coupons.pools[0].source",
        "'api' is not one of ['file', 'generate']",
    ),
    "max_per_week 0": (
        "messaging: {max_per_week: 0}\n",
        "messaging.max_per_week",
        "0 is less than the minimum of 1",
    ),
    "workflows as a string": (
        "workflows: workflows/*.yaml\n",
        "workflows",
        "'workflows/*.yaml' is not of type 'array'",
    ),
}

# Cases that change the minimal program's own lines instead of appending.
PROGRAM_REPLACE = {
    "bad version": ("version: 1", "version: 2"),
    "missing currency": (" currency: PLN,", ""),
    "lower-case currency": ("currency: PLN", "currency: pln"),
}


def program_text(name: str, snippet: str) -> str:
    text = MINIMAL_PROGRAM
    if name in PROGRAM_REPLACE:
        old, new = PROGRAM_REPLACE[name]
        assert old in text
        text = text.replace(old, new)
    source = snippet.split(":")[0].strip() if snippet.startswith("  ") else None
    if source in ("customers", "orders"):  # replaces the minimal program's own source
        lines = [line for line in text.splitlines(True) if not line.startswith(f"  {source}:")]
        text = "".join(lines)
    return text + snippet  # other sources go on under `sources:`


@pytest.mark.parametrize("case", list(PROGRAM_CASES))
def test_invalid_program(case: str) -> None:
    snippet, path, message = PROGRAM_CASES[case]
    assert errors("program", program_text(case, snippet)) == [(path, message)]


def test_missing_orders_source() -> None:
    text = MINIMAL_PROGRAM.replace("  orders: {path: orders.csv}\n", "")
    assert errors("program", text) == [("sources", "'orders' is a required property")]


WORKFLOW_CASES = {
    "unknown key in workflow": (
        "  trigger: joined\n  delay: 1 day\n" + SEND_STEP,
        "workflow",
        "Additional properties are not allowed ('delay' was unexpected)",
    ),
    "missing trigger": (SEND_STEP, "workflow", "'trigger' is a required property"),
    "missing steps": ("  trigger: joined\n", "workflow", "'steps' is a required property"),
    "no steps": ("  trigger: joined\n  steps: []\n", "workflow.steps", "[] should be non-empty"),
    "unknown bare trigger": (
        "  trigger: signup\n" + SEND_STEP,
        "workflow.trigger",
        "'signup' is not one of ['joined', 'birthday', 'tier_up', 'tier_down', "
        "'points_expiring', 'redemption']",
    ),
    "segment_enter needs its segment": (
        "  trigger: segment_enter\n" + SEND_STEP,
        "workflow.trigger",
        "'segment_enter' is not one of ['joined', 'birthday', 'tier_up', 'tier_down', "
        "'points_expiring', 'redemption']",
    ),
    "unknown trigger key": (
        "  trigger: {signup: {}}\n" + SEND_STEP,
        "workflow.trigger",
        "Additional properties are not allowed ('signup' was unexpected)",
    ),
    "two triggers": (
        "  trigger: {joined: {}, birthday: {}}\n" + SEND_STEP,
        "workflow.trigger",
        "{'joined': {}, 'birthday': {}} has too many properties",
    ),
    "trigger as a number": (
        "  trigger: 5\n" + SEND_STEP,
        "workflow.trigger",
        "5 is not of type 'string', 'object'",
    ),
    "segment_enter without segment": (
        "  trigger: {segment_enter: {group: high}}\n" + SEND_STEP,
        "workflow.trigger.segment_enter",
        "'segment' is a required property",
    ),
    "unknown tier_up parameter": (
        "  trigger: {tier_up: {level: gold}}\n" + SEND_STEP,
        "workflow.trigger.tier_up",
        "Additional properties are not allowed ('level' was unexpected)",
    ),
    "bad points_expiring within": (
        "  trigger: {points_expiring: {within: 30}}\n" + SEND_STEP,
        "workflow.trigger.points_expiring.within",
        "30 is not of type 'string'",
    ),
    "schedule every year": (
        "  trigger: {schedule: {every: year}}\n" + SEND_STEP,
        "workflow.trigger.schedule.every",
        "'year' is not one of ['day', 'week', 'month']",
    ),
    "weekly schedule without day": (
        "  trigger: {schedule: {every: week}}\n" + SEND_STEP,
        "workflow.trigger.schedule",
        "'day' is a required property",
    ),
    "weekday 8": (
        "  trigger: {schedule: {every: week, day: 8}}\n" + SEND_STEP,
        "workflow.trigger.schedule.day",
        "8 is greater than the maximum of 7",
    ),
    "bad reentry": (
        "  trigger: joined\n  reentry: never\n" + SEND_STEP,
        "workflow.reentry",
        "'never' does not match '^[0-9]{1,4} (day|days|week|weeks|month|months|year|years)$'",
    ),
    "priority as text": (
        "  trigger: joined\n  priority: high\n" + SEND_STEP,
        "workflow.priority",
        "'high' is not of type 'integer'",
    ),
    "bad channel": (
        "  trigger: joined\n  steps:\n    - send: {channel: push, template: welcome}\n",
        "workflow.steps[0].send.channel",
        "'push' is not one of ['email', 'sms']",
    ),
    "send without template": (
        "  trigger: joined\n  steps:\n    - send: {channel: email}\n",
        "workflow.steps[0].send",
        "'template' is a required property",
    ),
    "fallback to the same channel": (
        "  trigger: joined\n  steps:\n    - send: {channel: email, template: w, fallback: email}\n",
        "workflow.steps[0].send.fallback",
        "'sms' was expected",
    ),
    "unknown key in a step": (
        "  trigger: joined\n  steps:\n    - {send: {channel: email, template: w}, delay: 1}\n",
        "workflow.steps[0]",
        "Additional properties are not allowed ('delay' was unexpected)",
    ),
    "bad wait": (
        "  trigger: joined\n  steps:\n    - wait: 7d\n",
        "workflow.steps[0].wait",
        "'7d' does not match '^[0-9]{1,4} (day|days|week|weeks|month|months|year|years)$'",
    ),
    "wait and send in one step": (
        "  trigger: joined\n  steps:\n    - {wait: 7 days, send: {channel: sms, template: w}}\n",
        "workflow.steps[0].send",
        "{'channel': 'sms', 'template': 'w'} should not be valid under {'description': "
        "'a wait step has no send; put it in a step of its own'}",
    ),
    "coupon without send": (
        "  trigger: joined\n  steps:\n    - coupon: {pool: winback-25}\n",
        "workflow.steps[0]",
        "'send' is a required property",
    ),
    "if without an action": (
        "  trigger: joined\n  steps:\n    - if: balance > 0\n",
        "workflow.steps[0]",
        "'send' is a required property",
    ),
    "coupon with award": (
        "  trigger: joined\n  steps:\n    - {award: {points: 5, reason: x}, coupon: {pool: p}}\n",
        "workflow.steps[0].coupon",
        "{'pool': 'p'} should not be valid under {'description': "
        "'a coupon is assigned with a message; put it in a send step'}",
    ),
    "award without reason": (
        "  trigger: joined\n  steps:\n    - award: {points: 50}\n",
        "workflow.steps[0].award",
        "'reason' is a required property",
    ),
    "award with fractional points": (
        "  trigger: joined\n  steps:\n    - award: {points: 2.5, reason: x}\n",
        "workflow.steps[0].award.points",
        "2.5 is not of type 'integer'",
    ),
    "bad step id": (
        "  trigger: joined\n  steps:\n"
        "    - {id: first email, send: {channel: email, template: w}}\n",
        "workflow.steps[0].id",
        "'first email' does not match '^[A-Za-z0-9][A-Za-z0-9_.-]*$'",
    ),
}


@pytest.mark.parametrize(
    ("body", "path", "message"), WORKFLOW_CASES.values(), ids=list(WORKFLOW_CASES)
)
def test_invalid_workflow(body: str, path: str, message: str) -> None:
    assert errors("workflow", MINIMAL_WORKFLOW_HEAD + body) == [(path, message)]


def test_invalid_workflow_version_and_top_level() -> None:
    text = "version: 2\nworkflow: {id: w, trigger: joined, steps: [{wait: 1 day}]}\nname: x\n"
    assert errors("workflow", text) == [
        ("", "Additional properties are not allowed ('name' was unexpected)"),
        ("version", "1 was expected"),
    ]


# -- the reference docs name every key -----------------------------------------------------


def property_names(schema: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for _, sub, branch in walk(schema):
        if not branch:
            names.update(sub.get("properties", {}))
    return names


@pytest.mark.parametrize(("name", "doc"), [("program", "program.md"), ("workflow", "workflows.md")])
def test_docs_name_every_key(name: str, doc: str) -> None:
    text = (DOCS_DIR / doc).read_text(encoding="utf-8")
    missing = sorted(k for k in property_names(load_schema(name)) if f"`{k}`" not in text)
    assert missing == [], f"docs/{doc} does not describe {missing}"


def yaml_blocks(doc: str) -> list[str]:
    text = (DOCS_DIR / doc).read_text(encoding="utf-8")
    return [part.split("\n```", 1)[0] for part in text.split("```yaml\n")[1:]]


def doc_example_as_document(doc: str, block: str) -> list[tuple[str, str]]:
    """A docs example as whole documents: fragments go into a minimal file."""
    body = "\n".join(line for line in block.splitlines() if not line.startswith("#"))
    if not body.strip():
        return []
    if body.startswith("version: 1"):
        return [(block, block)]
    if doc == "workflows.md":
        if body.startswith("trigger:"):  # one trigger per line, alternatives
            return [
                (line, MINIMAL_WORKFLOW_HEAD + "  " + line + "\n" + SEND_STEP)
                for line in body.splitlines()
            ]
        return [(block, MINIMAL_WORKFLOW_HEAD + "  trigger: joined\n" + body)]
    if body.startswith("  "):  # sources entries
        name = body.split(":")[0].strip()
        lines = MINIMAL_PROGRAM.splitlines(True)
        return [(block, "".join(x for x in lines if not x.startswith(f"  {name}:")) + body)]
    fragment = load_yaml(body)
    program = load_yaml(MINIMAL_PROGRAM)
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(program.get(key), dict):
            program[key] = {**program[key], **value}
        else:
            program[key] = value
    return [(block, json.dumps(program))]


@pytest.mark.parametrize(("name", "doc"), [("program", "program.md"), ("workflow", "workflows.md")])
def test_docs_examples_are_valid(name: str, doc: str) -> None:
    checked = 0
    for block in yaml_blocks(doc):
        for shown, text in doc_example_as_document(doc, block):
            assert errors(name, text) == [], shown
            checked += 1
    assert checked >= 5
