"""The variables a template sees (SPEC 7), for a sample member and for a real one.

Both builders return exactly these keys, so what ``validate`` renders is what ``run`` renders:

``customer``
    dict: ``customer_id``, ``email``, ``phone``, ``first_name``, ``last_name``,
    ``birth_date`` (date), ``joined_at`` (datetime), ``locale``, and one key per column the
    program declares in ``sources.customers.extra``.
``program``
    dict: ``id``, ``name``, ``currency``, ``point_value`` (Decimal).
``balance``, ``pending``
    available and pending points (int).
``tier``, ``next_tier``
    dict ``id``, ``name``; ``next_tier`` is None at the top level (and ``tier`` is None in a
    program without tiers).
``points_to_next_tier``
    what the member still needs for ``next_tier`` in the tier basis: points (int) for
    ``basis: points``, money (Decimal) for ``basis: spend``; None without a next tier.
``expiring_points``, ``expiring_on``
    points that expire next and the day they do (int, date); 0 and None when none do.
``coupon``
    dict ``code``, ``valid_until`` (date or None), ``discount`` (dict ``percent``, ``amount``,
    one of them set; or None when the pool does not say); None when the step assigns none.
``reward``
    dict ``id``, ``name``, ``cost``; None outside redemption workflows.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import phonenumbers

CONTEXT_KEYS = (
    "customer",
    "program",
    "balance",
    "pending",
    "tier",
    "next_tier",
    "points_to_next_tier",
    "expiring_points",
    "expiring_on",
    "coupon",
    "reward",
)

CUSTOMER_KEYS = (
    "customer_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "birth_date",
    "joined_at",
    "locale",
)

# The day the sample member is seen on: fixed, so validate output never changes by itself.
SAMPLE_AS_OF = date(2026, 3, 14)

# Sample values of declared customer extras, by column type (SPEC 3).
SAMPLE_BY_TYPE: dict[str, Any] = {
    "varchar": "sample",
    "integer": 3,
    "decimal": Decimal("49.90"),
    "boolean": True,
    "date": date(2025, 6, 1),
    "timestamp": datetime(2025, 6, 1, 12, 0),
    "list": ["sample"],
}

# Used when there is no program to take tiers and rewards from.
SAMPLE_LEVELS: list[dict[str, Any]] = [
    {"id": "bronze", "name": "Bronze", "min": Decimal(0)},
    {"id": "silver", "name": "Silver", "min": Decimal(1000)},
]
SAMPLE_REWARD = {"id": "discount-20", "name": "20 off", "cost": 500}


def _section(doc: Mapping | None, key: str) -> Any:
    if not isinstance(doc, Mapping):
        return None
    return doc.get(key)


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None


def _int(value: Any, default: int | None = 0) -> int | None:
    if value is None or value == "":
        return default
    return int(value)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if text != "" else None


def _date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value)[:10])


def _datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day)
    return datetime.fromisoformat(str(value))


def extra_columns(program: Mapping | None) -> dict[str, str]:
    """The program's declared customer extras, name -> column type."""
    customers = _section(_section(program, "sources"), "customers")
    extra = _section(customers, "extra") or {}
    out: dict[str, str] = {}
    if isinstance(extra, Mapping):
        for name, spec in extra.items():
            kind = spec.get("type") if isinstance(spec, Mapping) else spec
            out[str(name)] = str(kind or "varchar")
    return out


def tier_levels(program: Mapping | None) -> list[dict]:
    """The program's tier levels in ascending order, each a dict with id, name and min."""
    levels = _section(_section(program, "tiers"), "levels") or []
    out = []
    for level in levels:
        if isinstance(level, Mapping) and level.get("id") is not None:
            out.append(
                {
                    "id": str(level["id"]),
                    "name": str(level.get("name") or level["id"]),
                    "min": _decimal(level.get("min")) or Decimal(0),
                }
            )
    return out


def program_section(program: Mapping | None) -> dict:
    """``program`` in the context: id, name, currency, point_value."""
    section = _section(program, "program") or {}
    return {
        "id": _text(section.get("id")) or "sample-program",
        "name": _text(section.get("name")) or _text(section.get("id")) or "Sample Club",
        "currency": _text(section.get("currency")) or "EUR",
        "point_value": _decimal(section.get("point_value")) or Decimal("0.01"),
    }


def _tier(tier_id: Any, tier_name: Any, levels: list[dict]) -> dict | None:
    tier_id = _text(tier_id)
    if tier_id is None:
        return None
    name = _text(tier_name)
    if name is None:
        name = next((lv["name"] for lv in levels if lv["id"] == tier_id), tier_id)
    return {"id": tier_id, "name": name}


def parse_discount(value: Any) -> dict | None:
    """A coupon discount as ``{"percent": int | None, "amount": Decimal | None}``.

    Accepts the pool's own form (``{percent: 25}`` or ``{amount: 20}``), a text such as
    ``"25%"`` (percent) or ``"20.00"`` (amount in the program currency), or a number
    (amount). Empty means the pool states no discount: None.
    """
    if value is None or value == "":
        return None
    if isinstance(value, Mapping):
        percent, amount = value.get("percent"), value.get("amount")
    elif isinstance(value, str) and value.strip().endswith("%"):
        percent, amount = value.strip()[:-1].strip(), None
    else:
        percent, amount = None, value
    pct = _decimal(percent)
    return {
        "percent": (int(pct) if pct is not None and pct == pct.to_integral_value() else pct),
        "amount": _decimal(amount),
    }


def _sample_phone(region: str | None) -> str:
    number = phonenumbers.example_number_for_type(
        (region or "US").upper(), phonenumbers.PhoneNumberType.MOBILE
    ) or phonenumbers.example_number("US")
    assert number is not None  # the library has an example for the US
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _sample_locale(region: str | None) -> str:
    if region:
        from babel import Locale, UnknownLocaleError

        try:
            locale = Locale.parse(f"und_{region.upper()}")
        except (UnknownLocaleError, ValueError):
            locale = None
        if locale is not None and locale.territory:
            return f"{locale.language}_{locale.territory}"
    return "en_US"


def _sample_coupon(program: Mapping | None, as_of: date) -> dict:
    pools = _section(_section(program, "coupons"), "pools") or []
    pools = [p for p in pools if isinstance(p, Mapping)]
    pool = next((p for p in pools if p.get("discount")), pools[0] if pools else None)
    if pool is None:
        return {
            "code": "SAVE-7KQ3MXP9",
            "valid_until": as_of + timedelta(days=30),
            "discount": {"percent": 10, "amount": None},
        }
    prefix = _text(pool.get("prefix")) or ""
    length = _int(pool.get("length"), 8) or 8
    body = ("7KQ3MXP9RT" * (length // 10 + 1))[:length]
    valid_days = _int(pool.get("valid_days"), None)
    return {
        "code": prefix + body,
        "valid_until": as_of + timedelta(days=valid_days) if valid_days else None,
        "discount": parse_discount(pool.get("discount")),
    }


def sample_context(program: Mapping | None = None, *, as_of: date = SAMPLE_AS_OF) -> dict:
    """A realistic member of ``program`` (the parsed program file), for rendering in validate.

    The member sits on the lowest tier with the next one in reach, has points expiring
    soon, a coupon from the program's first pool with a discount and its first reward, so
    every part of a template that a real member can reach is rendered. Keys that the
    program cannot fill (no tiers, no rewards) are None, as they would be in a run.
    """
    messaging = _section(program, "messaging") or {}
    region = _text(messaging.get("default_region")) if isinstance(messaging, Mapping) else None
    customer: dict[str, Any] = {
        "customer_id": "C-10042",
        "email": "anna.smith@example.com",
        "phone": _sample_phone(region),
        "first_name": "Anna",
        "last_name": "Smith",
        "birth_date": date(1990, 5, 17),
        "joined_at": datetime(2024, 2, 3, 10, 15),
        "locale": _sample_locale(region),
    }
    for name, kind in extra_columns(program).items():
        customer.setdefault(name, SAMPLE_BY_TYPE.get(kind, "sample"))

    levels = tier_levels(program) if program is not None else SAMPLE_LEVELS
    basis = _section(_section(program, "tiers"), "basis") or "spend"
    tier = next_tier = points_to_next = None
    if levels:
        tier = {"id": levels[0]["id"], "name": levels[0]["name"]}
        if len(levels) > 1:
            nxt = levels[1]
            next_tier = {"id": nxt["id"], "name": nxt["name"]}
            missing = (nxt["min"] - levels[0]["min"]) * Decimal("0.3")
            if basis == "points":
                points_to_next = max(1, int(missing))
            else:
                points_to_next = max(Decimal("0.01"), missing.quantize(Decimal("0.01")))

    if program is None:
        reward: dict | None = dict(SAMPLE_REWARD)
    else:
        rewards = [r for r in (_section(program, "rewards") or []) if isinstance(r, Mapping)]
        reward = None
        if rewards:
            first = rewards[0]
            reward = {
                "id": str(first.get("id")),
                "name": _text(first.get("name")) or str(first.get("id")),
                "cost": _int(first.get("cost")),
            }

    return {
        "customer": customer,
        "program": program_section(program),
        "balance": 1240,
        "pending": 150,
        "tier": tier,
        "next_tier": next_tier,
        "points_to_next_tier": points_to_next,
        "expiring_points": 200,
        "expiring_on": as_of + timedelta(days=20),
        "coupon": _sample_coupon(program, as_of),
        "reward": reward,
    }


def _points_to_next(value: Any, program: Mapping | None) -> int | Decimal | None:
    """Points (int) for a points basis, money (Decimal) for a spend basis."""
    amount = _decimal(value) if not isinstance(value, int) else Decimal(value)
    if amount is None:
        return None
    if _section(_section(program, "tiers"), "basis") == "points":
        return int(amount)
    return amount


def member_context(row: Mapping[str, Any], program: Mapping | None) -> dict:
    """The context of one member from a flat row of the engine.

    Expected row keys (missing ones are empty): ``customer_id``, ``email``, ``phone``,
    ``first_name``, ``last_name``, ``locale``, ``birth_date``, ``joined_at``, ``balance``,
    ``pending``, ``tier_id``, ``tier_name``, ``next_tier_id``, ``next_tier_name``,
    ``points_to_next_tier``, ``expiring_points``, ``expiring_on``, ``coupon_code``,
    ``coupon_valid_until``, ``coupon_discount`` (see :func:`parse_discount`), ``reward_id``,
    ``reward_name``, ``reward_cost``, and ``customer.<name>`` for each declared customer extra.
    Tier and reward names missing from the row are taken from the program. Dates may be
    date objects or ISO text.
    """
    customer: dict[str, Any] = {
        "customer_id": _text(row.get("customer_id")),
        "email": _text(row.get("email")),
        "phone": _text(row.get("phone")),
        "first_name": _text(row.get("first_name")),
        "last_name": _text(row.get("last_name")),
        "birth_date": _date(row.get("birth_date")),
        "joined_at": _datetime(row.get("joined_at")),
        "locale": _text(row.get("locale")),
    }
    for name in extra_columns(program):
        customer.setdefault(name, row.get(f"customer.{name}"))

    levels = tier_levels(program)
    next_tier = _tier(row.get("next_tier_id"), row.get("next_tier_name"), levels)
    to_next = _points_to_next(row.get("points_to_next_tier"), program)
    if next_tier is None:
        to_next = None

    coupon = None
    if _text(row.get("coupon_code")) is not None:
        coupon = {
            "code": _text(row.get("coupon_code")),
            "valid_until": _date(row.get("coupon_valid_until")),
            "discount": parse_discount(row.get("coupon_discount")),
        }

    reward = None
    reward_id = _text(row.get("reward_id"))
    if reward_id is not None:
        known = next(
            (
                r
                for r in (_section(program, "rewards") or [])
                if isinstance(r, Mapping) and str(r.get("id")) == reward_id
            ),
            {},
        )
        reward = {
            "id": reward_id,
            "name": _text(row.get("reward_name")) or _text(known.get("name")) or reward_id,
            "cost": _int(row.get("reward_cost"), None) or _int(known.get("cost"), None),
        }

    return {
        "customer": customer,
        "program": program_section(program),
        "balance": _int(row.get("balance")),
        "pending": _int(row.get("pending")),
        "tier": _tier(row.get("tier_id"), row.get("tier_name"), levels),
        "next_tier": next_tier,
        "points_to_next_tier": to_next,
        "expiring_points": _int(row.get("expiring_points")),
        "expiring_on": _date(row.get("expiring_on")),
        "coupon": coupon,
        "reward": reward,
    }
