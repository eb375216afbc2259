"""Tiers (SPEC 5 step 7, 9.5, 9.13, 9.14): the basis over the window, promotion, renewal
and demotion after `retain`, and the tier a member had on a given day.

Everything is set-based over all members at once. The step for day D works in three
stages: decide every member's new tier into `_tier_step`, record the changes in
`tier_changes`, then bring `tiers` up to date. Re-running the step for the same D with the
same data changes nothing: the decision is a function of the basis and of the tier at the
start of D with its renewal day.

`tier_changes` holds at most one row per member and day, the net change of that day: a
re-run for D with new data (a late order, a late return) decides a member the day already
moved again from the change's from_tier, amends the row instead of adding one, and drops it
when the member ends the day where they started. The earning stage relies on that to read
"the tier as of the start of a day" unambiguously.

Every member who joined by D gets a `tiers` row at their first tier step, the lowest level
included (`since` = join day when they never changed tier); a member without a row is at the
lowest level. A stored tier that is no longer one of the program's levels counts as the
lowest level: the next step moves the member to the level their basis reaches.
"""

from __future__ import annotations

from decimal import Decimal

from loyalty_cli.config.durations import Duration
from loyalty_cli.engine.context import RunContext
from loyalty_cli.engine.timeutil import sql_ident, sql_literal

MULTIPLIER_TYPE = "DECIMAL(9,4)"
# A level's min is money or points; compared exactly with the basis (DECIMAL(18,2)).
MIN_TYPE = "DECIMAL(38,6)"


def _decimal_literal(value: object, sql_type: str) -> str:
    """A DECIMAL literal from a number of the validated program (never from free text)."""
    number = Decimal(str(value))
    return f"CAST('{format(number, 'f')}' AS {sql_type})"


def levels_sql(ctx: RunContext) -> str:
    """The program's levels as a relation: rank (0 = lowest), id, min, multiplier."""
    rows = [
        f"({rank}, {sql_literal(str(level['id']))}, "
        f"{_decimal_literal(level.get('min', 0), MIN_TYPE)}, "
        f"{_decimal_literal(level.get('multiplier', 1), MULTIPLIER_TYPE)})"
        for rank, level in enumerate(ctx.program.levels)
    ]
    return f"(SELECT * FROM (VALUES {', '.join(rows)}) AS v(rank, id, min, multiplier))"


def _lowest(ctx: RunContext) -> str:
    return sql_literal(str(ctx.program.lowest_tier))


def _window_start(ctx: RunContext) -> str:
    """The last day before the window (D - window, D], as a DATE literal."""
    window = ctx.program.duration("tiers", "window")
    if window is None:
        raise ValueError("tiers.window is not a duration; validate the program first")
    return ctx.sql_date(window.subtract_from(ctx.as_of))


def _retain(ctx: RunContext) -> Duration:
    retain = ctx.program.duration("tiers", "retain")
    if retain is None:
        raise ValueError("tiers.retain is not a duration; validate the program first")
    return retain


def basis_sql(ctx: RunContext) -> str:
    """Per member with activity in the window: customer_id, basis (DECIMAL(18,2)).

    `spend`: completed orders' totals net of everything returned so far, never below 0 per
    order (from `order_days`, which the run refreshes before the tier step). `points`:
    qualifying points of orders net of their reversed share, plus the qualifying points of
    event rules (`qualifying_days`). Both by the row's day in (D - window, D].
    """
    start, day = _window_start(ctx), ctx.sql_date()
    in_window = f"day > {start} AND day <= {day}"
    if (ctx.program.tiers or {}).get("basis", "spend") == "points":
        return f"""
            SELECT customer_id, CAST(sum(points) AS DECIMAL(18,2)) AS basis FROM (
                SELECT customer_id,
                       coalesce(qualifying, 0) - coalesce(qualifying_reversed, 0) AS points
                FROM orders WHERE {in_window}
                UNION ALL
                SELECT customer_id, points FROM qualifying_days WHERE {in_window}
            ) GROUP BY customer_id"""
    # `order_days` holds each member's completed orders' spend net of returns per order day
    # (never below 0 per order), brought up to date before this step: a few rows per member
    # instead of every order (an order cancelled in this run is fully returned by now, so it
    # adds nothing either way).
    return f"""
        SELECT customer_id, CAST(sum(spend) AS DECIMAL(18,2)) AS basis
        FROM order_days WHERE {in_window}
        GROUP BY customer_id"""


def _qualified_rank_sql(ctx: RunContext, basis: str) -> str:
    """The highest rank whose `min` the basis reaches (0 when none does), as a CASE."""
    whens = " ".join(
        f"WHEN {basis} >= {_decimal_literal(level.get('min', 0), MIN_TYPE)} THEN {rank}"
        for rank, level in reversed(list(enumerate(ctx.program.levels)))
    )
    return f"CASE {whens} ELSE 0 END"


def apply_tiers(ctx: RunContext) -> None:
    """Step 7 for D: promote, renew and demote every member who joined by D.

    Counts (run.json `tiers`): `promoted` and `demoted` are the tier changes this run made;
    `renewed` the members above the lowest level who kept their level and whose renewal day
    moved to D (promotions renew too, but count as promotions).
    """
    if not ctx.program.tiers:
        return
    day = ctx.sql_date()
    lowest = _lowest(ctx)
    retain = _retain(ctx)
    one_level = ctx.program.tiers.get("downgrade", "one_level") == "one_level"
    demote_to = "cur_rank - 1" if one_level else "q_rank"
    levels = levels_sql(ctx)

    ctx.q("DROP TABLE IF EXISTS _tier_step")
    # `x`: the day's change made by an earlier run for D (a rerun with a late export). Such
    # a member is decided from the tier they had at the start of D, the change's from_tier,
    # as the one run of D would have: a demotion that run made was due, so it is due again;
    # from a promotion the start tier's renewal day is not kept, and it counts as renewed on
    # D (the member is not demoted below the tier they started the day at).
    ctx.q(
        f"""CREATE TEMP TABLE _tier_step AS
        WITH lv AS {levels},
        today AS (
            SELECT customer_id, arg_max(from_tier, rowid) AS from_tier,
                   arg_max(change, rowid) AS change
            FROM tier_changes WHERE effective_on = {day} GROUP BY customer_id),
        members AS (
            SELECT c.customer_id, c.join_day, t.tier AS stored_tier, t.since AS stored_since,
                   t.renewed_on AS stored_renewed_on,
                   CASE WHEN x.customer_id IS NULL
                        THEN coalesce(t.renewed_on, t.since, c.join_day)
                        WHEN x.change = 'down' THEN DATE '0001-01-01'
                        ELSE {day} END AS renewed_on,
                   coalesce(l.rank, 0) AS cur_rank,
                   coalesce(x.from_tier, t.tier) IS NOT NULL AND l.id IS NULL AS unknown_tier,
                   coalesce(b.basis, 0) AS basis,
                   x.customer_id IS NOT NULL AS changed_today, x.change AS today_change
            FROM customers c
            LEFT JOIN tiers t USING (customer_id)
            LEFT JOIN today x USING (customer_id)
            LEFT JOIN lv l ON l.id = coalesce(x.from_tier, t.tier)
            LEFT JOIN ({basis_sql(ctx)}) b USING (customer_id)
            WHERE c.join_day <= {day}),
        qualified AS (
            SELECT m.*, {_qualified_rank_sql(ctx, "m.basis")} AS q_rank FROM members m),
        decided AS (
            SELECT *,
                   CASE WHEN q_rank > cur_rank THEN q_rank
                        WHEN q_rank < cur_rank AND renewed_on < {day}
                             AND CAST(renewed_on + {retain.sql_interval()} AS DATE) <= {day}
                        THEN {demote_to}
                        ELSE cur_rank END AS new_rank
            FROM qualified)
        SELECT d.customer_id, d.join_day, d.stored_tier, d.stored_since, d.stored_renewed_on,
               d.cur_rank, d.q_rank, d.new_rank, d.basis,
               coalesce(d.stored_tier, {lowest}) AS from_tier, l.id AS new_tier,
               -- The change from the start of D (for a rerun, the day's net change).
               CASE WHEN d.new_rank > d.cur_rank THEN 'up'
                    WHEN d.new_rank < d.cur_rank OR d.unknown_tier THEN 'down' END AS change,
               CASE WHEN d.q_rank >= d.cur_rank OR d.new_rank <> d.cur_rank THEN {day}
                    ELSE d.renewed_on END AS new_renewed_on,
               d.changed_today, d.today_change
        FROM decided d JOIN lv l ON l.rank = d.new_rank
        -- Only the members this step writes or counts: a change, a first tiers row, a
        -- renewal day that moves to D, or a change of D to look at again (most members of
        -- a night have none of these).
        WHERE change IS NOT NULL OR d.stored_tier IS NULL OR d.changed_today
           OR (new_renewed_on = {day} AND d.stored_renewed_on IS DISTINCT FROM {day})"""
    )

    # Changes: a new row, or the amended net change of a member already moved on D (dropped
    # when the member ends the day where they started it).
    ctx.q(
        f"""INSERT INTO tier_changes
            (customer_id, from_tier, to_tier, change, effective_on, basis)
        SELECT customer_id, from_tier, new_tier, change, {day}, basis FROM _tier_step
        WHERE change IS NOT NULL AND NOT changed_today"""
    )
    ctx.q(
        f"""UPDATE tier_changes SET to_tier = s.new_tier, basis = s.basis,
               change = coalesce(s.change, tier_changes.change)
        FROM _tier_step s
        WHERE tier_changes.customer_id = s.customer_id AND tier_changes.effective_on = {day}
          AND s.changed_today"""
    )
    ctx.q(
        f"""DELETE FROM tier_changes WHERE effective_on = {day} AND from_tier = to_tier
          AND customer_id IN (SELECT customer_id FROM _tier_step WHERE changed_today)"""
    )

    # `since` is the day the current tier was entered: the member's latest change, if any.
    # New members get a row; members whose tier changed get theirs updated. A renewal only
    # moves the renewal day, written as one constant (cheap to store, unlike rewriting the
    # rows); nobody drops below the lowest level, so there it is not kept up to date.
    since = f"""CASE WHEN s.change IS NULL AND NOT s.changed_today
                          AND s.stored_since IS NOT NULL THEN s.stored_since
                    ELSE coalesce(
                        (SELECT max(effective_on) FROM tier_changes x
                         WHERE x.customer_id = s.customer_id AND x.effective_on <= {day}),
                        s.join_day) END"""
    ctx.q(
        f"""INSERT INTO tiers (customer_id, tier, renewed_on, since)
        SELECT s.customer_id, s.new_tier, s.new_renewed_on, {since}
        FROM _tier_step s WHERE s.stored_tier IS NULL"""
    )
    ctx.q(
        f"""UPDATE tiers SET tier = u.new_tier, renewed_on = u.new_renewed_on, since = u.since
        FROM (SELECT s.customer_id, s.new_tier, s.new_renewed_on, {since} AS since
              FROM _tier_step s
              WHERE s.stored_tier IS NOT NULL AND (s.change IS NOT NULL OR s.changed_today)) u
        WHERE tiers.customer_id = u.customer_id"""
    )
    ctx.q(
        f"""UPDATE tiers SET renewed_on = {day}
        WHERE customer_id IN (
            SELECT customer_id FROM _tier_step
            WHERE stored_tier IS NOT NULL AND change IS NULL AND NOT changed_today
              AND new_rank > 0 AND new_renewed_on = {day}
              AND stored_renewed_on IS DISTINCT FROM {day})"""
    )

    # A rerun of D counts what it changed in the day's net changes (the earlier runs of D
    # counted theirs, and a day's counts add up over its runs): -1 for a change it undid,
    # and +1 renewed when it leaves the member at the tier they started D at and their basis
    # qualifies for it (the renewal one run of D would have counted; the first run counted
    # a change instead); -1 renewed when it promotes a member an earlier run of D renewed
    # (one run of D counts the promotion only).
    promoted, demoted, renewed = ctx.q(
        f"""SELECT count(*) FILTER (WHERE change = 'up')
                     - count(*) FILTER (WHERE today_change = 'up'),
                   count(*) FILTER (WHERE change = 'down')
                     - count(*) FILTER (WHERE today_change = 'down'),
                   count(*) FILTER (WHERE change IS NULL AND cur_rank > 0
                                    AND new_renewed_on = {day}
                                    AND (stored_renewed_on < {day}
                                         OR changed_today AND q_rank >= cur_rank))
                     - count(*) FILTER (WHERE change IS NOT NULL AND NOT changed_today
                                        AND cur_rank > 0 AND stored_renewed_on = {day})
        FROM _tier_step"""
    ).fetchone()
    ctx.count("tiers", "promoted", promoted)
    ctx.count("tiers", "demoted", demoted)
    ctx.count("tiers", "renewed", renewed)
    ctx.q("DROP TABLE _tier_step")


def tier_as_of_sql(
    ctx: RunContext, rows: str, day_col: str = "day", members: str | None = None
) -> str:
    """SQL of `rows` plus `tier` and `multiplier`: the member's tier at the start of the day.

    `rows` is a relation (SQL text built by the engine) with `customer_id` and `day_col`. The
    tier is the one of the member's latest change effective before that day, else the lowest
    level; a change made by the run for D therefore applies from D + 1 (SPEC 9.5), and a first
    run, which has no changes yet, applies the lowest level's multiplier to everyone.
    `multiplier` is DECIMAL(9,4), 1 when the program has no tiers (then `tier` is NULL).
    `members` (SQL of customer_id values), when given, holds every customer of `rows`: only
    their tier changes are read.
    """
    if not ctx.program.tiers:
        return (
            f"SELECT _r.*, CAST(NULL AS VARCHAR) AS tier, "
            f"CAST(1 AS {MULTIPLIER_TYPE}) AS multiplier FROM ({rows}) _r"
        )
    levels = levels_sql(ctx)
    lowest = _lowest(ctx)
    lowest_multiplier = _decimal_literal(
        ctx.program.levels[0].get("multiplier", 1), MULTIPLIER_TYPE
    )
    day = f"CAST(_r.{sql_ident(day_col)} AS DATE)"
    return f"""
        SELECT _r.*, coalesce(_l.id, {lowest}) AS tier,
               coalesce(_l.multiplier, {lowest_multiplier}) AS multiplier
        FROM ({rows}) _r
        ASOF LEFT JOIN (
            SELECT customer_id, effective_on, arg_max(to_tier, rowid) AS to_tier
            FROM tier_changes {f"WHERE customer_id IN ({members})" if members else ""}
            GROUP BY customer_id, effective_on) _c
          ON _r.customer_id = _c.customer_id AND {day} > _c.effective_on
        LEFT JOIN {levels} _l ON _l.id = _c.to_tier"""


def member_tiers_sql(ctx: RunContext, among: str | None = None) -> str:
    """SQL of customer_id, tier for every customer (or the customers of `among`, a query with
    a customer_id column): the tier at the start of the run's day D, lowest when none.

    That is the stored tier, except for a member whose tier an earlier run for the same D
    changed (a rerun of D with a late export): then the tier that change started from, so
    that a rerun judges the day's rows as the one run of D would have (9.12: the tier
    before this day's tier step). A tier that is no longer a level reads as the lowest.
    """
    members = (
        f"SELECT DISTINCT customer_id FROM ({among}) a"
        if among
        else "SELECT customer_id FROM customers"
    )
    if not ctx.program.tiers:
        return f"SELECT customer_id, CAST(NULL AS VARCHAR) AS tier FROM ({members}) c"
    return f"""
        SELECT c.customer_id, coalesce(l.id, {_lowest(ctx)}) AS tier
        FROM ({members}) c
        LEFT JOIN tiers t USING (customer_id)
        LEFT JOIN (SELECT customer_id, arg_min(from_tier, rowid) AS from_tier
                   FROM tier_changes WHERE effective_on = {ctx.sql_date()}
                   GROUP BY customer_id) x USING (customer_id)
        LEFT JOIN {levels_sql(ctx)} l ON l.id = coalesce(x.from_tier, t.tier)"""
