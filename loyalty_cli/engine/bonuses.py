"""Step 4 of a run: bonuses (welcome, birthday, referral, challenges) and adjustments.

SPEC 4 `bonuses`, 5 step 4, 9.7, 9.8, 9.10 and 9.11. Bonus points are available at once,
get no tier multiplier and are booked through the ledger with kind `bonus` and the bonus
id as rule_id. Each bonus is granted at most once per period per customer; what has been
granted is remembered in `bonus_grants` (and, for challenges, `challenge_progress`), so a
rerun of a day grants nothing twice.

A trigger day counts when it falls in the run's window (window_start, as_of] and, when
`program.starts_on` is set, on or after that day:
- welcome (`joined`): the join day, once per customer ever (period `once`);
- birthday: the birthday in each calendar year (Feb 29 -> Feb 28 in other years), for
  members who had joined by then (period = the year);
- referral: the release day of the referee's first completed order, while that order is
  not fully returned and the referrer had joined by that day; once per referee (the
  referee's grant has period `once`, the referrer's `referee:<referee id>`). An order
  arriving late, already past its release day, triggers in the run that processes it.
- challenge: this run's new rows matching `when` (from starts_on on), counted into the
  period of each row's own day; the row whose running count or sum reaches the goal gives
  the day. `challenge_progress` keeps n (rows) and total (the sum of `goal.sum`; the row
  count for a count goal) per bonus, customer and period, and the day it was achieved.

Adjustments from the export are applied as they come: positive points are an `adjust`
credit, negative ones an `adjust` debit (first-in first-out, never below zero, the rest
recorded as shortfall). As in earning, credits of the step are booked before its debits.
"""

from __future__ import annotations

import calendar
import datetime as dt

from loyalty_cli import exprbase as expressions
from loyalty_cli.engine import ledger
from loyalty_cli.engine.context import RunContext, id_range
from loyalty_cli.engine.earning import OWNER_ALIAS, period_sql, row_from
from loyalty_cli.engine.earning import ROW_WHERE as _WHERE

# customer_id, occurred_at, day, row key, seq of a challenge row per `on`.
_KEYS = {
    "order": """"order".customer_id, "order".ordered_at, "order".day, "order".order_id, 0""",
    "order_item": """"order".customer_id, "order".ordered_at, "order".day, "order".order_id,
        "item".item_seq""",
    "event": """"event".customer_id, "event".occurred_at, "event".day, "event".event_key, 0""",
}


# One row per grant, filled by each trigger, then booked by _book().
_GRANTS_TABLE = """CREATE TEMP TABLE _bonus_new (
    rule_id VARCHAR, customer_id VARCHAR, period VARCHAR, source_id VARCHAR,
    occurred_at TIMESTAMP, earned_on DATE, points BIGINT, reason VARCHAR)"""


def _exec(ctx: RunContext, sql: str, params: dict) -> None:
    """Execute SQL with named parameters ($name): bonus ids and points never enter SQL text."""
    ctx.con.execute(sql, params)


def starts_on(ctx: RunContext) -> dt.date | None:
    """`program.starts_on` as a date (None when the program has none)."""
    value = (ctx.program.data.get("program") or {}).get("starts_on")
    if value is None:
        return None
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))


def trigger_day_sql(ctx: RunContext, day: str) -> str:
    """SQL condition: `day` is a trigger day of this run (window and starts_on, 9.11)."""
    parts = [f"{day} <= {ctx.sql_date()}"]
    if ctx.window_start is not None:
        parts.append(f"{day} > {ctx.sql_date(ctx.window_start)}")
    first = starts_on(ctx)
    if first is not None:
        parts.append(f"{day} >= {ctx.sql_date(first)}")
    return "(" + " AND ".join(parts) + ")"


def apply_bonuses(ctx: RunContext) -> None:
    """Grant every bonus of the program whose trigger happened in this run."""
    bonuses = ctx.program.data.get("bonuses") or []
    if not bonuses:
        return
    # Every bonus's grants are gathered first and booked at once: one pass of crediting
    # (lots and ledger) for all of them. No trigger reads what another one grants.
    ctx.q("DROP TABLE IF EXISTS _bonus_new")
    ctx.q(_GRANTS_TABLE)
    for bonus in bonuses:
        grants = _TRIGGERS[bonus["trigger"]](ctx, bonus)
        ctx.count("bonuses", bonus["id"], grants)
    _book(ctx)
    ctx.q("DROP TABLE _bonus_new")


def _not_granted(customer: str, period: str) -> str:
    """SQL: no grant yet of this bonus (parameter $bonus) to customer in period.

    `customer` must name its table (`c.customer_id`): inside the subquery a bare
    `customer_id` is the grant's own column, which matches every grant of the period."""
    if "." not in customer:
        raise ValueError(f"_not_granted needs a qualified column, not {customer!r}")
    return f"""NOT EXISTS (
        SELECT 1 FROM bonus_grants g WHERE g.bonus_id = $bonus
          AND g.customer_id = {customer} AND g.period = {period})"""


def _welcome(ctx: RunContext, bonus: dict) -> int:
    """Once per customer ever, in the run whose window holds the join day."""
    _exec(
        ctx,
        f"""INSERT INTO _bonus_new
        SELECT $bonus, c.customer_id, 'once', c.customer_id, c.joined_at, c.join_day,
               $points, NULL
        FROM customers c
        WHERE c.join_day IS NOT NULL AND {trigger_day_sql(ctx, "c.join_day")}
          AND {_not_granted("c.customer_id", "'once'")}""",
        {"bonus": bonus["id"], "points": int(bonus["points"])},
    )
    return int(ctx.scalar("SELECT count(*) FROM _bonus_new WHERE rule_id = ?", [bonus["id"]]))


def _birthday(ctx: RunContext, bonus: dict) -> int:
    """Once per calendar year on the birthday (Feb 29 -> Feb 28), for members by then.

    Each customer's birthdays are generated for the years the window can hold (a first run
    covers all history), from the year after birth and the join year on.
    """
    low = ["year(c.join_day)", "year(c.birth_date) + 1"]
    if ctx.window_start is not None:
        low.append(f"year({ctx.sql_date(ctx.window_start)})")
    first = starts_on(ctx)
    if first is not None:
        low.append(f"year({ctx.sql_date(first)})")
    _exec(
        ctx,
        f"""INSERT INTO _bonus_new
        WITH years AS (
            SELECT c.customer_id, c.birth_date, c.join_day, c.joined_at,
                   unnest(range(greatest({", ".join(low)}),
                                year({ctx.sql_date()}) + 1)) AS y
            FROM customers c
            WHERE c.birth_date IS NOT NULL AND c.join_day IS NOT NULL
              {_birthdays_in_window(ctx)}),
        b AS (
            SELECT *,
                   CASE WHEN month(birth_date) = 2 AND day(birth_date) = 29
                        THEN CAST(make_date(y, 3, 1) - INTERVAL 1 DAY AS DATE)
                        ELSE make_date(y, month(birth_date), day(birth_date)) END AS bday
            FROM years)
        SELECT $bonus, b.customer_id, CAST(b.y AS VARCHAR), CAST(b.y AS VARCHAR),
               greatest(CAST(b.bday AS TIMESTAMP), b.joined_at), b.bday, $points, NULL
        FROM b
        WHERE b.join_day <= b.bday AND {trigger_day_sql(ctx, "b.bday")}
          AND {_not_granted("b.customer_id", "CAST(b.y AS VARCHAR)")}""",
        {"bonus": bonus["id"], "points": int(bonus["points"])},
    )
    return int(ctx.scalar("SELECT count(*) FROM _bonus_new WHERE rule_id = ?", [bonus["id"]]))


def _birthdays_in_window(ctx: RunContext) -> str:
    """SQL condition on `c.birth_date`: the birthday's month and day fall on a day of a short
    window (a nightly run), so that only those members' birthdays are worked out. Feb 29
    counts on Feb 28 of a year without one. Empty for a first run or a long window."""
    if ctx.window_start is None or (ctx.as_of - ctx.window_start).days > 62:
        return ""
    days: set[int] = set()
    day = ctx.window_start
    while day < ctx.as_of:
        day += dt.timedelta(days=1)
        days.add(day.month * 100 + day.day)
        if (day.month, day.day) == (2, 28) and not calendar.isleap(day.year):
            days.add(229)
    listed = ", ".join(str(d) for d in sorted(days))
    return f"AND month(c.birth_date) * 100 + day(c.birth_date) IN ({listed})"


def _referral(ctx: RunContext, bonus: dict) -> int:
    """Referrer and referee, once per referee, when the referee's first order releases.

    The first order is the referee's earliest order by ordered_at, then order_id, that was
    completed when processed (an order cancelled later counts as fully returned). It
    triggers in the run in which it becomes released (release day in the window, or the
    order first processed in this run), if it was not fully returned by its release day.
    """
    released_now = "TRUE"
    if ctx.window_start is not None:
        released_now = (
            f"f.release_on > {ctx.sql_date(ctx.window_start)} OR f.processed_on = {ctx.sql_date()}"
        )
    first = starts_on(ctx)
    since = f"AND f.release_on >= {ctx.sql_date(first)}" if first is not None else ""
    # Only a member with an order released or first processed in this run can have a first
    # order that triggers now: the others' orders need not be ranked.
    released = (
        f"""AND customer_id IN (SELECT customer_id FROM orders f
                                WHERE ({released_now}) AND f.release_on <= {ctx.sql_date()})"""
        if ctx.window_start is not None
        else ""
    )
    ctx.q("DROP TABLE IF EXISTS _referrals")
    _exec(
        ctx,
        f"""CREATE TEMP TABLE _referrals AS
        WITH candidates AS (
            SELECT customer_id FROM customers
            WHERE referred_by IS NOT NULL
              -- Referees granted already never count again: skip their orders early.
              AND customer_id NOT IN (SELECT customer_id FROM bonus_grants
                                      WHERE bonus_id = $bonus AND period = 'once')
              {released}),
        firsts AS (
            SELECT customer_id, order_id, ordered_at, total, returned, release_on,
                   processed_on
            FROM orders
            WHERE (status = 'completed' OR cancelled_on IS NOT NULL)
              AND customer_id IN (SELECT customer_id FROM candidates)
            QUALIFY row_number() OVER (PARTITION BY customer_id
                                       ORDER BY ordered_at, order_id) = 1)
        SELECT c.customer_id AS referee, c.referred_by AS referrer, f.order_id,
               f.release_on,
               greatest(f.ordered_at, CAST(f.release_on AS TIMESTAMP)) AS granted_at
        FROM firsts f
        JOIN customers c USING (customer_id)
        -- The referrer must have joined by the release day: a nightly run for that day
        -- does not know a customer who joins later, and a first run over history, or a
        -- late order, must not pay what those runs would not have.
        JOIN customers r ON r.customer_id = c.referred_by AND r.join_day <= f.release_on
        -- What was returned by the release day (a first run or a late order also holds
        -- later returns, which do not take back a referral a nightly run would have paid).
        LEFT JOIN (
            SELECT order_id, sum(x.amount) AS amount
            FROM returns x JOIN firsts USING (order_id)
            WHERE x.day <= firsts.release_on AND {id_range("x.order_id", "firsts")}
            GROUP BY order_id) rb USING (order_id)
        WHERE c.referred_by <> c.customer_id
          AND coalesce(rb.amount, 0) < f.total
          AND f.release_on <= {ctx.sql_date()} AND ({released_now}) {since}
          AND {_not_granted("c.customer_id", "'once'")}""",
        {"bonus": bonus["id"]},
    )
    points = bonus["points"]
    _exec(
        ctx,
        """INSERT INTO _bonus_new
        SELECT $bonus, referee, 'once', order_id, granted_at, release_on, $referee, 'referee'
        FROM _referrals
        UNION ALL
        SELECT $bonus, referrer, 'referee:' || referee, referee, granted_at, release_on,
               $referrer, 'referrer'
        FROM _referrals""",
        {
            "bonus": bonus["id"],
            "referee": int(points.get("referee") or 0),
            "referrer": int(points.get("referrer") or 0),
        },
    )
    n = int(ctx.scalar("SELECT count(*) FROM _referrals"))
    ctx.q("DROP TABLE _referrals")
    return n


def _challenge(ctx: RunContext, bonus: dict) -> int:
    """A goal reached within a calendar period, once per period per customer.

    This run's new rows matching `when` add to the stored progress of their own period;
    the first row whose running count (or sum) reaches the goal gives the grant its day.
    """
    program = ctx.program
    on = bonus["on"]
    if not _has_rows(ctx, on):
        return 0
    ectx = expressions.ExprContext.for_rule(on, program.extras, rfm=program.has_rfm)
    cond = "TRUE"
    if bonus.get("when") is not None:
        cond = expressions.condition_sql(
            expressions.compile_expression(bonus["when"], ectx, kind="condition")
        )
    goal = bonus["goal"]
    if "count" in goal:
        value = "1"
        reached = "n0 + n_run >= $target"
        target: int | str = int(goal["count"])
    else:
        value = expressions.compile_expression(goal["sum"], ectx, kind="value")
        reached = "total0 + total_run >= CAST($target AS DECIMAL(18,2))"
        target = str(goal["at_least"])
    first = starts_on(ctx)
    since = f'AND "{OWNER_ALIAS[on]}".day >= {ctx.sql_date(first)}' if first is not None else ""
    ctx.q("DROP TABLE IF EXISTS _ch_rows")
    ctx.q(
        f"""CREATE TEMP TABLE _ch_rows AS
        SELECT customer_id, occurred_at, day, row_key, seq, {period_sql(bonus["period"], "day")}
                   AS period, value
        FROM (
            SELECT {_KEYS[on]},
                   CAST(coalesce(({value}), 0) AS DECIMAL(18,2)) AS value
            FROM {row_from(on, value, cond)}
            WHERE {_WHERE[on]} AND {cond} {since}) t(customer_id, occurred_at, day, row_key,
                                                    seq, value)"""
    )
    ctx.q("DROP TABLE IF EXISTS _ch")
    _exec(
        ctx,
        f"""CREATE TEMP TABLE _ch AS
        WITH p AS (
            SELECT r.*, coalesce(cp.n, 0) AS n0,
                   coalesce(cp.total, CAST(0 AS DECIMAL(18,2))) AS total0,
                   cp.achieved_on AS achieved0,
                   count(*) OVER w AS n_run, sum(r.value) OVER w AS total_run
            FROM _ch_rows r
            LEFT JOIN challenge_progress cp
              ON cp.bonus_id = $bonus AND cp.customer_id = r.customer_id
             AND cp.period = r.period
            WINDOW w AS (PARTITION BY r.customer_id, r.period
                         ORDER BY r.occurred_at, r.row_key, r.seq
                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))
        SELECT *, achieved0 IS NULL AND {reached} AS reached FROM p""",
        {"bonus": bonus["id"], "target": target},
    )
    # The row that reached the goal, per customer and period.
    ctx.q("DROP TABLE IF EXISTS _ch_hit")
    ctx.q(
        """CREATE TEMP TABLE _ch_hit AS
        SELECT customer_id, period, occurred_at, day FROM _ch WHERE reached
        QUALIFY row_number() OVER (PARTITION BY customer_id, period
                                   ORDER BY occurred_at, row_key, seq) = 1"""
    )
    _exec(
        ctx,
        """UPDATE challenge_progress SET n = challenge_progress.n + t.n,
               total = challenge_progress.total + t.total,
               achieved_on = coalesce(challenge_progress.achieved_on, t.achieved_on)
        FROM (SELECT s.customer_id, s.period, s.n, s.total, h.day AS achieved_on
              FROM (SELECT customer_id, period, count(*) AS n, sum(value) AS total
                    FROM _ch_rows GROUP BY customer_id, period) s
              LEFT JOIN _ch_hit h USING (customer_id, period)) t
        WHERE challenge_progress.bonus_id = $bonus
          AND challenge_progress.customer_id = t.customer_id
          AND challenge_progress.period = t.period""",
        {"bonus": bonus["id"]},
    )
    _exec(
        ctx,
        """INSERT INTO challenge_progress
        SELECT $bonus, s.customer_id, s.period, s.n, s.total, h.day
        FROM (SELECT customer_id, period, count(*) AS n, sum(value) AS total
              FROM _ch_rows GROUP BY customer_id, period) s
        LEFT JOIN _ch_hit h USING (customer_id, period)
        WHERE NOT EXISTS (SELECT 1 FROM challenge_progress cp
                          WHERE cp.bonus_id = $bonus AND cp.customer_id = s.customer_id
                            AND cp.period = s.period)""",
        {"bonus": bonus["id"]},
    )
    _exec(
        ctx,
        """INSERT INTO _bonus_new
        SELECT $bonus, customer_id, period, period, occurred_at, day, $points, NULL
        FROM _ch_hit""",
        {"bonus": bonus["id"], "points": int(bonus.get("points") or 0)},
    )
    if bonus.get("badge"):
        _exec(
            ctx,
            "INSERT INTO badges SELECT customer_id, $badge, $bonus, period, day FROM _ch_hit",
            {"badge": bonus["badge"], "bonus": bonus["id"]},
        )
    n = int(ctx.scalar("SELECT count(*) FROM _ch_hit"))
    for table in ("_ch_rows", "_ch", "_ch_hit"):
        ctx.q(f"DROP TABLE {table}")
    return n


def _has_rows(ctx: RunContext, on: str) -> bool:
    """Whether this run has the source a challenge counts (an undeclared source has none)."""
    table, needed = {
        "order": ("new_orders", "ordered_at"),
        "order_item": ("new_items", "sku"),
        "event": ("new_events", "occurred_at"),
    }[on]
    columns = {c[0] for c in ctx.q(f"SELECT * FROM {table} LIMIT 0").description}
    return needed in columns and (on != "order_item" or _has_rows(ctx, "order"))


_TRIGGERS = {
    "joined": _welcome,
    "birthday": _birthday,
    "referral": _referral,
    "challenge": _challenge,
}


def _book(ctx: RunContext) -> None:
    """Remember the grants in `bonus_grants` and credit their points (available at once)."""
    ctx.q(
        """INSERT INTO bonus_grants
        SELECT rule_id, customer_id, period, earned_on FROM _bonus_new"""
    )
    ledger.credit(
        ctx,
        """SELECT customer_id, 'bonus' AS kind, points, rule_id, source_id, occurred_at,
                  earned_on, CAST(NULL AS DATE) AS pending_until,
                  CAST(NULL AS VARCHAR) AS order_id, reason
           FROM _bonus_new WHERE points > 0""",
    )


def apply_adjustments(ctx: RunContext) -> None:
    """Apply this run's manual adjustments and remember them as processed.

    `new_adjustments`: adjustment_id, customer_id, points, reason, created_at, day.
    Zero-point adjustments change nothing but are remembered like the others.
    """
    credits = ledger.credit(
        ctx,
        """SELECT customer_id, 'adjust' AS kind, points, CAST(NULL AS VARCHAR) AS rule_id,
                  adjustment_id AS source_id, created_at AS occurred_at, day AS earned_on,
                  CAST(NULL AS DATE) AS pending_until, CAST(NULL AS VARCHAR) AS order_id,
                  reason
           FROM new_adjustments WHERE points > 0""",
    )
    debits = ledger.debit(
        ctx,
        """SELECT customer_id, 'adjust' AS kind, -points AS amount,
                  CAST(NULL AS VARCHAR) AS rule_id, adjustment_id AS source_id,
                  created_at AS occurred_at, reason
           FROM new_adjustments WHERE points < 0""",
    )
    ctx.q(
        f"""INSERT INTO adjustments
        SELECT adjustment_id, customer_id, points, reason, created_at, {ctx.sql_date()}
        FROM new_adjustments"""
    )
    ctx.count("adjustments", "credits", credits)
    ctx.count("adjustments", "debits", debits)
