"""Step 2 of a run: earning rules over this run's new orders, order items and events.

Points of a row = R(R(expr) x multiplier) (SPEC 9.5): R is the program's rounding, the
multiplier is the member's tier as of the start of the row's day and applies to order and
order_item rules only. Caps count per member, rule and period of the row's day after
rounding and multiplier; the row that crosses the cap gets the remainder (9.6). Order
and item points are pending until day + pending_days (9.7); negative points are an
immediate debit. Within this step credits are booked before debits.
"""

from __future__ import annotations

from loyalty_cli import exprbase as expressions
from loyalty_cli.engine import ledger
from loyalty_cli.engine.context import RunContext
from loyalty_cli.engine.timeutil import sql_literal

# The rows a rule (or a challenge) sees, per `on`; see row_from().
_ROWS = {
    "order": 'new_orders AS "order"',
    "order_item": """new_items AS "item"
        JOIN new_orders AS "order" ON "order".order_id = "item".order_id""",
    "event": 'new_events AS "event"',
}
# The alias of a row's own table (its place in the export) and of the table that holds
# its customer and day (an item's are its order's).
ROW_ALIAS = {"order": "order", "order_item": "item", "event": "event"}
OWNER_ALIAS = {"order": "order", "order_item": "order", "event": "event"}


def row_from(on: str, *sql: str) -> str:
    """FROM clause of the rows of `on`, joined to the customer and member view where the
    compiled expressions in `sql` use them (the joins filter nothing: every row's customer
    is known, unknown ones were rejected on load)."""
    owner = f'"{OWNER_ALIAS[on]}".customer_id'
    text = " ".join(sql)
    clause = _ROWS[on]
    if '"customer".' in text:
        clause += f' JOIN cust_view AS "customer" ON "customer".customer_id = {owner}'
    if '"member".' in text:
        clause += f' JOIN member_view AS "member" ON "member".customer_id = {owner}'
    return clause


# customer_id, source_id, order_id, occurred_at, day, seq per kind of rule.
_KEYS = {
    "order": """"order".customer_id, "order".order_id AS source_id, "order".order_id,
        "order".ordered_at AS occurred_at, "order".day, 0 AS seq""",
    "order_item": """"order".customer_id, "order".order_id || '#' || "item".item_seq AS source_id,
        "order".order_id, "order".ordered_at AS occurred_at, "order".day,
        "item".item_seq AS seq""",
    "event": """"event".customer_id, "event".event_key AS source_id,
        CAST(NULL AS VARCHAR) AS order_id, "event".occurred_at, "event".day, 0 AS seq""",
}

ROW_WHERE = {
    "order": """"order".status = 'completed'""",
    "order_item": """"order".status = 'completed'""",
    "event": "TRUE",
}


def rounding_sql(rounding: str, x: str) -> str:
    """R(x) as BIGINT; `round` is half away from zero, exact on decimals."""
    if rounding == "ceil":
        return f"CAST(ceil({x}) AS BIGINT)"
    if rounding == "round":
        return f"CAST(sign({x}) * floor(abs({x}) + 0.5) AS BIGINT)"
    return f"CAST(floor({x}) AS BIGINT)"


def period_sql(per: str, day: str) -> str:
    """Challenge period key of a local day: day, ISO week (keyed by ISO year), month, year,
    ever (text, as stored in bonus_grants and challenge_progress)."""
    if per == "day":
        return f"strftime({day}, '%Y-%m-%d')"
    if per == "week":
        return (
            f"CAST(isoyear({day}) AS VARCHAR) || '-W' || lpad(CAST(week({day}) AS VARCHAR), 2, '0')"
        )
    if per == "month":
        return f"strftime({day}, '%Y-%m')"
    if per == "year":
        return f"CAST(year({day}) AS VARCHAR)"
    return "'ever'"


def period_key_sql(per: str, day: str) -> str:
    """Cap period of a local day as a number: days since 1970-01-01, ISO year * 100 + ISO
    week, year * 100 + month, the year, or 0 for `ever`."""
    if per == "day":
        return f"CAST({day} - DATE '1970-01-01' AS BIGINT)"
    if per == "week":
        return f"CAST(isoyear({day}) * 100 + week({day}) AS BIGINT)"
    if per == "month":
        return f"CAST(year({day}) * 100 + month({day}) AS BIGINT)"
    if per == "year":
        return f"CAST(year({day}) AS BIGINT)"
    return "CAST(0 AS BIGINT)"


def _with_multiplier(ctx: RunContext, rows: str, on: str, tier_changes: bool) -> str:
    """`rows` plus `multiplier`: the member's tier multiplier as of the start of each row's
    day for order and order_item rules, 1 for event rules (9.5). Without any tier change
    yet (a first run) everyone is at the lowest level, so no join is needed."""
    from loyalty_cli.engine import tiers

    if on == "event" or not ctx.program.tiers:
        return f"SELECT *, CAST(1 AS DECIMAL(9,4)) AS multiplier FROM ({rows}) r"
    if not tier_changes:
        lowest = ctx.program.levels[0].get("multiplier", 1)
        return f"SELECT *, CAST({float(lowest)!r} AS DECIMAL(9,4)) AS multiplier FROM ({rows}) r"
    # Order and item rows are this run's new orders' (an item's customer is its order's).
    with_tier = tiers.tier_as_of_sql(ctx, rows, "day", "SELECT customer_id FROM new_orders")
    return f"SELECT * EXCLUDE (tier) FROM ({with_tier}) t"


def _positions(ctx: RunContext) -> dict[str, int]:
    """Offsets that make (offset + _pos) unique over this run's orders, items and events
    (_pos is a row's place in its loaded export), and the total span after the last."""
    offsets, at = {}, 0
    for on, table in (
        ("order", "new_orders"),
        ("order_item", "new_items"),
        ("event", "new_events"),
    ):
        offsets[on] = at
        at += int(ctx.scalar(f"SELECT coalesce(max(_pos), -1) + 1 FROM {table}"))
    offsets["span"] = at
    return offsets


def apply_earning(ctx: RunContext) -> None:
    """Evaluate every rule, cap, book credits (pending or available) and debits."""
    program = ctx.program
    rnd = program.rounding
    extras, has_rfm = program.extras, program.has_rfm
    rules = program.rules
    offsets = _positions(ctx)
    rule_id = rule_id_sql(rules)
    is_event = _idx_in([i for i, r in enumerate(rules) if r["on"] == "event"])
    tier_changes = bool(ctx.scalar("SELECT count(*) FROM tier_changes"))
    # One row per matching source row and rule: millions in a first run, so the rule's id
    # and kind are not stored with each row but derived from rule_idx (rule_id_sql).
    ctx.q("DROP TABLE IF EXISTS earn_rows")
    ctx.q(
        """CREATE TEMP TABLE earn_rows (
            rule_idx INTEGER, customer_id VARCHAR, source_id VARCHAR, order_id VARCHAR,
            occurred_at TIMESTAMP, day DATE, seq BIGINT, ordinal BIGINT, raw BIGINT,
            uncapped BIGINT, period BIGINT, points BIGINT)"""
    )
    compiled = []
    for rule in rules:
        ectx = expressions.ExprContext.for_rule(rule["on"], extras, rfm=has_rfm)
        compiled.append((expressions.compile_expression(rule["points"], ectx, kind="value"), ectx))
    inexact = _binary_float_points(ctx, rules, [points for points, _ in compiled])
    selects = []
    for idx, rule in enumerate(rules):
        on = rule["on"]
        points, ectx = compiled[idx]
        if idx in inexact:
            points = f"round({points}, {_FLOAT_DIGITS})"
        when = rule.get("when")
        cond = "TRUE"
        if when is not None:
            cond = (
                f"coalesce(({expressions.compile_expression(when, ectx, kind='condition')}), false)"
            )
        # A row's entry number: the rule's block, then the row's place over all new rows
        # (rules are evaluated in that order, so entries are made in id order).
        ordinal = f'{idx} * {offsets["span"]} + {offsets[on]} + "{ROW_ALIAS[on]}"._pos'
        rows = f"""SELECT {_KEYS[on]}, {ordinal} AS ordinal,
                   {rounding_sql(rnd, f"({points})")} AS raw
            FROM {row_from(on, points, cond)}
            WHERE {ROW_WHERE[on]} AND {cond}"""
        # Points after the multiplier (9.5), before the cap (9.6, _apply_caps).
        uncapped = "raw" if on == "event" else rounding_sql(rnd, "raw * multiplier")
        period = "NULL"
        if rule.get("cap"):
            period = period_key_sql(rule["cap"]["per"], "day")
        selects.append(
            f"""SELECT {int(idx)}, customer_id, source_id, order_id, occurred_at, day, seq,
                   ordinal, raw, {uncapped}, {period}, {uncapped}
            FROM ({_with_multiplier(ctx, rows, on, tier_changes)}) m
            WHERE raw IS NOT NULL"""
        )
    # One statement for all rules (each a branch): a nightly run's rules are small queries,
    # and a statement of its own costs each a few milliseconds to plan and start.
    if selects:
        ctx.q("INSERT INTO earn_rows " + " UNION ALL ".join(selects))
    capped = {i: r["cap"] for i, r in enumerate(rules) if r.get("cap")}
    if capped:
        _apply_caps(ctx, capped)

    qualifying = [i for i, r in enumerate(rules) if r.get("qualifying")]
    qual = _idx_in(qualifying)
    _insert_new_orders(ctx, qual, is_event)
    if qualifying:
        ctx.q(
            f"""INSERT INTO qualifying_days
            SELECT customer_id, day, sum(raw) FROM earn_rows
            WHERE {is_event} AND {qual}
            GROUP BY customer_id, day HAVING sum(raw) <> 0"""
        )

    pending = program.pending_days
    pending_until = f"CAST(day + INTERVAL {int(pending)} DAY AS DATE)" if pending > 0 else "NULL"
    ledger.credit(
        ctx,
        f"""SELECT customer_id, 'earn' AS kind, points, {rule_id} AS rule_id, source_id,
                   occurred_at, day AS earned_on,
                   CASE WHEN {is_event} THEN CAST(NULL AS DATE)
                        ELSE {pending_until} END AS pending_until,
                   order_id, CAST(NULL AS VARCHAR) AS reason, ordinal
            FROM earn_rows WHERE points > 0""",
        ordinal_span=offsets["span"] * len(rules),
    )
    ledger.debit(
        ctx,
        f"""SELECT customer_id, 'debit' AS kind, -points AS amount, {rule_id} AS rule_id,
                  source_id, occurred_at, CAST(NULL AS VARCHAR) AS reason,
                  CASE WHEN {is_event} THEN 1 ELSE 0 END AS seq,
                  coalesce(order_id, source_id) AS key, seq AS sub
           FROM earn_rows WHERE points < 0""",
    )
    per_rule = ctx.q(
        "SELECT rule_idx, sum(points), count(*) FROM earn_rows WHERE points <> 0 GROUP BY rule_idx"
    ).fetchall()
    for idx, pts, n in sorted(per_rule, key=lambda row: str(rules[row[0]]["id"])):
        ctx.count("earning", f"{rules[idx]['id']}.points", int(pts))
        ctx.count("earning", f"{rules[idx]['id']}.rows", int(n))
    ctx.q("DROP TABLE earn_rows")  # its memory is wanted by the steps after


# Decimal places a binary float's points are snapped to before rounding (see below).
_FLOAT_DIGITS = 9


def _binary_float_points(ctx: RunContext, rules: list[dict], points: list[str]) -> set[int]:
    """Indices of the rules whose `points` is a binary float (DOUBLE or FLOAT).

    DuckDB's `/` on decimals gives a DOUBLE: `order.total / 0.1` of 0.70 is
    6.999999999999999, whose floor is 6 where the exact value's is 7. Such values are
    rounded to _FLOAT_DIGITS decimals first, which gives back the integers and halves the
    rounding looks at (money has 2 decimals, multipliers 4). Decimal and integer values are
    exact and left as they are. The types are read from the plan, one query per kind of row.
    """
    inexact: set[int] = set()
    for on in _ROWS:
        idxs = [i for i, rule in enumerate(rules) if rule["on"] == on]
        if not idxs:
            continue
        cols = ", ".join(f"({points[i]}) AS p{i}" for i in idxs)
        described = ctx.q(
            f"DESCRIBE SELECT {cols} FROM {row_from(on, *(points[i] for i in idxs))}"
        ).fetchall()
        for name, typ, *_ in described:
            if str(typ).upper() in ("DOUBLE", "FLOAT", "REAL"):
                inexact.add(int(str(name)[1:]))
    return inexact


def _apply_caps(ctx: RunContext, capped: dict[int, dict]) -> None:
    """Cap earn_rows.points per member, rule and period (9.6).

    Room is summed per member, rule and period over this run's positive points plus what
    earlier runs credited (read from the ledger, _room_used_sql). Only the periods that pass
    the cap need the running sum in row order (9.3: by time, then by order or event key, an
    order's items in export order); the row that crosses the cap gets the remainder.
    """
    cap_max = (
        "CASE rule_idx "
        + " ".join(f"WHEN {i} THEN {int(cap['max'])}" for i, cap in capped.items())
        + " END"
    )
    ctx.q("DROP TABLE IF EXISTS _capg")
    ctx.q(
        f"""CREATE TEMP TABLE _capg AS
        WITH g AS (
            SELECT customer_id, rule_idx, period, CAST(sum(uncapped) AS BIGINT) AS total
            FROM earn_rows WHERE period IS NOT NULL AND uncapped > 0
            GROUP BY customer_id, rule_idx, period),
        u AS ({_room_used_sql(ctx, capped)})
        SELECT g.*, CAST(coalesce(u.used, 0) AS BIGINT) AS used
        FROM g LEFT JOIN u ON u.customer_id = g.customer_id AND u.period = g.period
                          AND u.rule_idx = g.rule_idx"""
    )
    # One row per member, rule and period (millions in a first run): the rule's cap and id
    # are derived from rule_idx where needed rather than stored with each.
    ctx.q(
        f"""UPDATE earn_rows SET points = w.points FROM (
            SELECT r.rowid AS rid,
                   least(r.uncapped, greatest(0, o.cap - o.used - coalesce(sum(r.uncapped) OVER (
                       PARTITION BY r.customer_id, r.rule_idx, r.period
                       ORDER BY r.occurred_at, coalesce(r.order_id, r.source_id), r.seq,
                                r.source_id
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0))) AS points
            FROM earn_rows r
            JOIN (SELECT *, {cap_max} AS cap FROM _capg WHERE total + used > {cap_max}) o
              USING (customer_id, rule_idx, period)
            WHERE r.uncapped > 0) w
        WHERE earn_rows.rowid = w.rid AND earn_rows.points <> w.points"""
    )
    ctx.q("DROP TABLE _capg")


def _room_used_sql(ctx: RunContext, capped: dict[int, dict]) -> str:
    """Room earlier runs used per member, capped rule and period: the points the rule
    credited (available or pending, after multiplier and cap), read from the ledger.

    Returns do not free room (their entries are other kinds) and negative points are never
    capped. Only the periods this run's capped rows fall in are read: entries from the
    start of the earliest such period on (all of them for a cap `per: ever`).
    """
    ids = {i: sql_literal(str(ctx.program.rules[i]["id"])) for i in capped}
    period = (
        "CASE rule_id "
        + " ".join(
            f"WHEN {ids[i]} THEN {period_key_sql(cap['per'], 'occurred_on')}"
            for i, cap in capped.items()
        )
        + " END"
    )
    idx = " ".join(f"WHEN {ids[i]} THEN {i}" for i in capped)
    since = ""
    if all(cap["per"] != "ever" for cap in capped.values()):
        # The first day of each row's period (date_trunc's units are the `per` names;
        # ISO weeks start on Monday).
        starts = " ".join(
            f"WHEN {i} THEN CAST(date_trunc('{cap['per']}', day) AS DATE)"
            for i, cap in capped.items()
        )
        first = ctx.scalar(
            f"SELECT min(CASE rule_idx {starts} END) FROM earn_rows WHERE period IS NOT NULL"
        )
        since = f"AND occurred_on >= {ctx.sql_date(first)}" if first is not None else ""
    return f"""
        SELECT customer_id, CASE rule_id {idx} END AS rule_idx, period, sum(used) AS used
        FROM (SELECT customer_id, rule_id, {period} AS period, points + pending AS used
              FROM ledger
              WHERE kind IN ('earn', 'pending') AND rule_id IN ({", ".join(ids.values())})
                    {since}) x
        GROUP BY ALL"""


def rule_id_sql(rules: list[dict]) -> str:
    """SQL for the id of the rule of an earn_rows row (from its rule_idx)."""
    whens = " ".join(
        f"WHEN {i} THEN {sql_literal(str(rule['id']))}" for i, rule in enumerate(rules)
    )
    return f"CASE rule_idx {whens} END" if whens else "CAST(NULL AS VARCHAR)"


def _idx_in(indices: list[int]) -> str:
    """SQL: the row's rule is one of `indices`."""
    if not indices:
        return "FALSE"
    return f"rule_idx IN ({', '.join(str(i) for i in indices)})"


def _insert_new_orders(ctx: RunContext, qualifying: str, is_event: str) -> None:
    """This run's new orders into the state, with their clawable and qualifying points."""
    from loyalty_cli.engine.run import order_extra_json

    pending = int(ctx.program.pending_days)
    ctx.q(
        f"""INSERT INTO orders
        SELECT o.order_id, o.customer_id, o.ordered_at, o.day, o.total, o.status, o.channel,
               {order_extra_json(ctx)}, CAST(o.day + INTERVAL {pending} DAY AS DATE),
               coalesce(p.granted, 0), coalesce(p.qual, 0),
               CAST(0 AS DECIMAL(18,2)), 0, 0, {ctx.sql_date()}, CAST(NULL AS DATE)
        FROM new_orders o LEFT JOIN (
            SELECT order_id,
                   sum(CASE WHEN points > 0 THEN points ELSE 0 END) AS granted,
                   sum(CASE WHEN {qualifying} THEN raw ELSE 0 END) AS qual
            FROM earn_rows WHERE NOT {is_event} GROUP BY order_id) p USING (order_id)"""
    )
