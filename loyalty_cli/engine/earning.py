"""Step 2 of a run: earning rules over this run's new orders, order items and events.

Points of a row = R(R(expr) x multiplier) (SPEC 9.5): R is the program's rounding, the
multiplier is the member's tier as of the start of the row's day and applies to order and
order_item rules only. Caps count per member, rule and period of the row's day after
rounding and multiplier; the row that crosses the cap gets the remainder (9.6). Order
and item points are pending until day + pending_days (9.7); negative points are an
immediate debit. Within this step credits are booked before debits.
"""

from __future__ import annotations

from loyalty_cli import expr as expressions
from loyalty_cli.engine import ledger
from loyalty_cli.engine.context import RunContext

_FROM = {
    "order": """new_orders AS "order"
        JOIN cust_view AS "customer" ON "customer".customer_id = "order".customer_id
        JOIN member_view AS "member" ON "member".customer_id = "order".customer_id""",
    "order_item": """new_items AS "item"
        JOIN new_orders AS "order" ON "order".order_id = "item".order_id
        JOIN cust_view AS "customer" ON "customer".customer_id = "order".customer_id
        JOIN member_view AS "member" ON "member".customer_id = "order".customer_id""",
    "event": """new_events AS "event"
        JOIN cust_view AS "customer" ON "customer".customer_id = "event".customer_id
        JOIN member_view AS "member" ON "member".customer_id = "event".customer_id""",
}

# customer_id, source_id, order_id, occurred_at, day, seq per kind of rule.
_KEYS = {
    "order": """"order".customer_id, "order".order_id, "order".order_id,
        "order".ordered_at, "order".day, 0""",
    "order_item": """"order".customer_id, "order".order_id || '#' || "item".item_seq,
        "order".order_id, "order".ordered_at, "order".day, "item".item_seq""",
    "event": """"event".customer_id, "event".event_key, NULL,
        "event".occurred_at, "event".day, 0""",
}

_WHERE = {
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
    """Cap period key of a local day: day, ISO week (keyed by ISO year), month, year, ever."""
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


def _multiplier_relation(ctx: RunContext) -> str:
    """earn_raw plus the member's tier multiplier as of the start of each row's day."""
    if not ctx.program.tiers:
        return "SELECT *, CAST(1 AS DECIMAL(9,4)) AS multiplier FROM earn_raw"
    from loyalty_cli.engine import tiers

    return tiers.tier_as_of_sql(ctx, "earn_raw", "day")


def apply_earning(ctx: RunContext) -> None:
    """Evaluate every rule, cap, book credits (pending or available) and debits."""
    program = ctx.program
    rnd = program.rounding
    extras = {
        name: dict((src or {}).get("extra") or {})
        for name, src in (program.data.get("sources") or {}).items()
    }
    has_rfm = any(s.get("type") == "rfm" for s in program.data.get("segments") or [])
    ctx.q("DROP TABLE IF EXISTS earn_raw")
    ctx.q(
        """CREATE TEMP TABLE earn_raw (
            rule_idx INTEGER, rule_id VARCHAR, on_kind VARCHAR, customer_id VARCHAR,
            source_id VARCHAR, order_id VARCHAR, occurred_at TIMESTAMP, day DATE, seq BIGINT,
            raw BIGINT)"""
    )
    for idx, rule in enumerate(program.rules):
        on = rule["on"]
        ectx = expressions.ExprContext.for_rule(on, extras, rfm=has_rfm)
        points = expressions.compile_expression(rule["points"], ectx, kind="value")
        when = rule.get("when")
        cond = "TRUE"
        if when is not None:
            cond = (
                f"coalesce(({expressions.compile_expression(when, ectx, kind='condition')}), false)"
            )
        ctx.q(
            f"""INSERT INTO earn_raw
            SELECT ?, ?, ?, {_KEYS[on]}, {rounding_sql(rnd, f"({points})")}
            FROM {_FROM[on]}
            WHERE {_WHERE[on]} AND {cond}""",
            [idx, rule["id"], on],
        )

    ctx.q("DROP TABLE IF EXISTS earn_mult")
    ctx.q(f"CREATE TEMP TABLE earn_mult AS {_multiplier_relation(ctx)}")
    ctx.q("DROP TABLE IF EXISTS earn_rows")
    ctx.q(
        f"""CREATE TEMP TABLE earn_rows AS
        SELECT *, CASE WHEN on_kind = 'event' THEN raw
                       ELSE {rounding_sql(rnd, "raw * multiplier")} END AS uncapped
        FROM earn_mult WHERE raw IS NOT NULL"""
    )
    ctx.q("ALTER TABLE earn_rows ADD COLUMN points BIGINT")
    ctx.q("UPDATE earn_rows SET points = uncapped")
    _apply_caps(ctx)

    # Clawable and qualifying points per order (9.9, 9.13).
    qualifying_ids = [r["id"] for r in program.rules if r.get("qualifying")]
    ctx.q("DROP TABLE IF EXISTS _qual")
    ctx.q("CREATE TEMP TABLE _qual (rule_id VARCHAR)")
    if qualifying_ids:
        ctx.q("INSERT INTO _qual SELECT unnest(?)", [qualifying_ids])
    ctx.q(
        """UPDATE orders SET
            granted = coalesce(t.granted, 0), qualifying = coalesce(t.qual, 0)
        FROM (
            SELECT order_id,
                   sum(CASE WHEN points > 0 THEN points ELSE 0 END) AS granted,
                   sum(CASE WHEN rule_id IN (SELECT rule_id FROM _qual) THEN raw ELSE 0 END)
                       AS qual
            FROM earn_rows WHERE on_kind <> 'event' GROUP BY order_id) t
        WHERE orders.order_id = t.order_id"""
    )
    ctx.q(
        """INSERT INTO qualifying_days
        SELECT customer_id, day, sum(raw) FROM earn_rows
        WHERE on_kind = 'event' AND rule_id IN (SELECT rule_id FROM _qual)
        GROUP BY customer_id, day HAVING sum(raw) <> 0"""
    )

    pending = program.pending_days
    pending_until = f"CAST(day + INTERVAL {int(pending)} DAY AS DATE)" if pending > 0 else "NULL"
    ledger.credit(
        ctx,
        f"""SELECT customer_id, 'earn' AS kind, points, rule_id, source_id, occurred_at,
                   day AS earned_on,
                   CASE WHEN on_kind = 'event' THEN CAST(NULL AS DATE)
                        ELSE {pending_until} END AS pending_until,
                   order_id, CAST(NULL AS VARCHAR) AS reason
            FROM earn_rows WHERE points > 0""",
    )
    ledger.debit(
        ctx,
        """SELECT customer_id, 'debit' AS kind, -points AS amount, rule_id, source_id,
                  occurred_at, CAST(NULL AS VARCHAR) AS reason,
                  CASE WHEN on_kind = 'event' THEN 1 ELSE 0 END * 1000000 + seq AS seq
           FROM earn_rows WHERE points < 0""",
    )
    for rule_id, pts, rows in ctx.q(
        "SELECT rule_id, sum(points), count(*) FROM earn_rows WHERE points <> 0 "
        "GROUP BY rule_id ORDER BY rule_id"
    ).fetchall():
        ctx.count("earning", f"{rule_id}.points", int(pts))
        ctx.count("earning", f"{rule_id}.rows", int(rows))


def _apply_caps(ctx: RunContext) -> None:
    """Cap positive points per member, rule and period; record the room used."""
    for rule in ctx.program.rules:
        cap = rule.get("cap")
        if not cap:
            continue
        per = period_sql(cap["per"], "e.day")
        ctx.q("DROP TABLE IF EXISTS _capped")
        ctx.q(
            f"""CREATE TEMP TABLE _capped AS
            WITH e AS (
                SELECT e.rowid AS rid, e.*, {per} AS period FROM earn_rows e
                WHERE e.rule_id = ? AND e.points > 0),
            w AS (
                SELECT e.*, coalesce(u.used, 0) AS used,
                       coalesce(sum(points) OVER (
                           PARTITION BY e.customer_id, e.period
                           ORDER BY occurred_at, seq, source_id
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
                FROM e LEFT JOIN cap_usage u
                  ON u.customer_id = e.customer_id AND u.rule_id = e.rule_id
                 AND u.period = e.period)
            SELECT rid, customer_id, period,
                   least(points, greatest(0, CAST(? AS BIGINT) - used - before)) AS capped
            FROM w""",
            [rule["id"], int(cap["max"])],
        )
        ctx.q("UPDATE earn_rows SET points = c.capped FROM _capped c WHERE earn_rows.rowid = c.rid")
        ctx.q(
            """CREATE OR REPLACE TEMP TABLE _usage AS
            SELECT customer_id, ? AS rule_id, period, sum(capped) AS add
            FROM _capped GROUP BY customer_id, period""",
            [rule["id"]],
        )
        ctx.q(
            """UPDATE cap_usage SET used = used + u.add FROM _usage u
            WHERE cap_usage.customer_id = u.customer_id AND cap_usage.rule_id = u.rule_id
              AND cap_usage.period = u.period"""
        )
        ctx.q(
            """INSERT INTO cap_usage
            SELECT u.customer_id, u.rule_id, u.period, u.add FROM _usage u
            WHERE NOT EXISTS (SELECT 1 FROM cap_usage c WHERE c.customer_id = u.customer_id
                              AND c.rule_id = u.rule_id AND c.period = u.period)"""
        )
        ctx.q("DROP TABLE _capped")
        ctx.q("DROP TABLE _usage")
