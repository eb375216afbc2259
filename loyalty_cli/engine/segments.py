"""Segments (SPEC 4 `segments`, 5 step 8): recomputed as of D, entering and leaving recorded.

Every segment is computed afresh for day D from the state, set-based in SQL, into one
relation of (customer_id, group, r, f, m, value) per segment. The models of `churn: bgnbd`
and `clv` are fitted with numpy/scipy on a per-member summary pulled out of DuckDB once and
their values joined back; there is no Python loop over members.

- `rfm`: scores over members with a completed order in (D - window, D]:
  `min(scores, 1 + floor(scores * percent_rank))`, percent_rank = (rank - 1) / (n - 1) with
  ties at their lowest rank, in ascending order of goodness (0 when n = 1). It is computed
  in exact integer arithmetic, `1 + (scores * (rank - 1)) // (n - 1)`, so that a rank that
  lands exactly on a score boundary never falls below it through rounding of a double.
- `rule`: members for whom `when` holds over the member view as after the run's earlier
  steps, with this run's rfm scores (rule segments are computed last).
- `churn: interval`: days since the last order day / the member's median gap between order
  days (the pooled median of all members' gaps for one-order members).
- `churn: bgnbd`: 1 - P(alive) from a BG/NBD fit over order days, in days.
- `clv`: BG/NBD x Gamma-Gamma expected spend over `horizon`; `top` is the `top_share` of
  members by value (ties by customer_id), the rest `rest`.

A member is a customer who joined by D; an order counts when it is completed and its day
is at most D. A purchase is an order day: several orders of a member on one day are one.

Entering and leaving are the difference between the membership before D and the new one:
a change of group is an exit from the old group and an entry into the new one. A rerun of
D first undoes what the earlier run of D recorded, so `segment_changes` always holds the
net change of each day and running D again with the same data records nothing new.
A model that cannot be fitted (too few repeat buyers, no convergence) leaves its segment as
it was, with a warning: a failed fit is not a reason for members to leave.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from typing import TYPE_CHECKING

from loyalty_cli import exprbase as expressions
from loyalty_cli.config.durations import Duration, parse_duration
from loyalty_cli.engine import memberview
from loyalty_cli.engine.context import RunContext, id_range
from loyalty_cli.engine.timeutil import sql_literal

if TYPE_CHECKING:  # scipy loads only when a model segment is computed
    from loyalty_cli.models import BgNbdFit

#: Fewest members with a repeat order day (and, for clv, positive repeat spend) for a
#: model fit: below that the parameters say more about chance than about the members.
MIN_REPEAT_BUYERS = 10

_NEW = "seg_new"  # the segment's new membership: customer_id, grp, r, f, m, value
_COLUMNS = "customer_id VARCHAR, grp VARCHAR, r INTEGER, f INTEGER, m INTEGER, value DOUBLE"


class SkipSegment(Exception):
    """A model segment cannot be computed in this run; the message says why."""


@dataclass
class _Shared:
    """What several segments of one run share: order days, the member summary, one fit."""

    days: bool = False
    history: bool = False
    bgnbd: BgNbdFit | None = None
    bgnbd_failure: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


def apply_segments(ctx: RunContext) -> dict[str, float]:
    """Recompute every segment as of D and record entries and exits.

    Returns seconds per part for benchmarks (the run ignores it): `order_days`,
    `member_summary`, each segment id, `<id>.fit` for the BG/NBD fit (made by the first
    model segment and reused by the others) and `<id>.spend_fit` for a Gamma-Gamma fit.
    """
    shared = _Shared()
    defined = ctx.program.data.get("segments") or []
    # A segment taken out of the program has no members any more (its history stays in
    # segment_changes): reports and explain do not show it, and if it comes back, its
    # first run compares with nobody, so everyone in it enters.
    ctx.q(
        "DELETE FROM segment_members WHERE NOT list_contains(?, segment_id)",
        [[str(s["id"]) for s in defined]],
    )
    # Rule segments last: they read this run's rfm scores (memberview.first_rfm).
    ordered = sorted(defined, key=lambda s: s["type"] == "rule")
    for seg in ordered:
        start = time.perf_counter()
        ctx.q(f"CREATE OR REPLACE TEMP TABLE {_NEW} ({_COLUMNS})")
        try:
            _BUILDERS[seg["type"]](ctx, seg, shared)
        except SkipSegment as reason:
            ctx.warnings.append(
                f"segment '{seg['id']}': {reason}; its members are kept as they were and no "
                "entries or exits are recorded for it in this run"
            )
            ctx.count("warnings", "segments_not_updated", 1)
            ctx.models.pop(seg["id"], None)
            ctx.q(
                "DELETE FROM model_fits WHERE segment_id = ? AND as_of = ?", [seg["id"], ctx.as_of]
            )
        else:
            record_membership(ctx, seg["id"])
        shared.timings[seg["id"]] = time.perf_counter() - start
    for table in (_NEW, "seg_history", _MEMBERS):
        ctx.q(f"DROP TABLE IF EXISTS {table}")
    ctx.q("DROP VIEW IF EXISTS seg_days")
    return shared.timings


# --------------------------------------------------------------------------- shared inputs


def refresh_order_days(ctx: RunContext, *, everyone: bool = False) -> None:
    """Bring `order_days` up to date with the orders after this run's earning and returns.

    `order_days` holds one row per member and order day of completed orders: the day's
    spend net of returns and the gap in days since the member's previous order day. Only
    the days whose orders changed in this run are summed again (days of orders first
    processed in this run, of orders returned in this run, of orders re-exported as
    cancelled), and the gaps of their members worked out again, so a nightly run neither
    regroups every order ever made nor reads every order of a member. An order
    re-exported as cancelled in this run (`cancelled_now`) is left out already, so that the
    run and a rerun of the same day see the same orders. `everyone` (and a first run)
    recomputes all members from all orders.
    """
    has = {name for name in ("cancelled_now", "new_returns") if ctx.has_table(name)}
    cancelled = ctx.not_cancelled_now("o.order_id")
    spend = "sum(greatest(o.total - o.returned, 0))"
    if everyone or ctx.first_run:
        ctx.q(
            f"""CREATE OR REPLACE TEMP TABLE _od_new AS
            SELECT customer_id, day, spend, {_GAP} AS gap
            FROM (SELECT o.customer_id, o.day, {spend} AS spend FROM orders o
                  WHERE o.status = 'completed' {cancelled} GROUP BY ALL) x"""
        )
        ctx.q("CREATE OR REPLACE TEMP TABLE _od_old AS SELECT rowid AS _rid, * FROM order_days")
    else:
        # The member and day of the orders first processed now, and of those returned or
        # cancelled now (found among the stored orders by id: a range of recent ids, then
        # the ids).
        pairs = "SELECT customer_id, day FROM new_orders"
        named = " UNION ALL ".join(f"SELECT order_id FROM {table}" for table in sorted(has))
        if named:
            pairs += f""" UNION ALL SELECT customer_id, day FROM orders
                WHERE {id_range("order_id", "_od_named")}
                  AND order_id IN (SELECT order_id FROM _od_named)"""
            pairs = f"WITH _od_named AS MATERIALIZED ({named}) {pairs}"
        ctx.q(f"CREATE OR REPLACE TEMP TABLE _od_pairs AS SELECT DISTINCT * FROM ({pairs}) p")
        # The stored days (with their rowid) of the members of those days.
        ctx.q(
            """CREATE OR REPLACE TEMP TABLE _od_old AS
            SELECT rowid AS _rid, * FROM order_days
            WHERE customer_id IN (SELECT customer_id FROM _od_pairs)"""
        )
        # Those days' spend from their orders, found by day first (orders are stored
        # about in time order, so a night reads the row groups of recent days), then the
        # members' other days as stored; the gaps over both.
        ctx.q(
            f"""CREATE OR REPLACE TEMP TABLE _od_new AS
            WITH touched AS (
                SELECT o.customer_id, o.day, {spend} AS spend
                FROM orders o
                JOIN _od_pairs p ON p.customer_id = o.customer_id AND p.day = o.day
                WHERE o.status = 'completed' {cancelled}
                  AND o.day BETWEEN (SELECT min(day) FROM _od_pairs)
                                AND (SELECT max(day) FROM _od_pairs)
                GROUP BY ALL),
            kept AS (
                SELECT d.customer_id, d.day, d.spend FROM _od_old d
                WHERE NOT EXISTS (SELECT 1 FROM _od_pairs p
                                  WHERE p.customer_id = d.customer_id AND p.day = d.day))
            SELECT customer_id, day, spend, {_GAP} AS gap
            FROM (SELECT * FROM touched UNION ALL SELECT * FROM kept) x"""
        )
        ctx.q("DROP TABLE _od_pairs")
    # Only the rows that differ are deleted and inserted: a night's new order day is one
    # insert, not the member's whole history again (deleted rows make the checkpoint
    # rewrite the row groups that held them).
    differs = "{a}.day IS NULL OR {a}.spend <> {b}.spend OR {a}.gap IS DISTINCT FROM {b}.gap"
    ctx.q(
        f"""DELETE FROM order_days WHERE rowid IN (
            SELECT o._rid FROM _od_old o LEFT JOIN _od_new n USING (customer_id, day)
            WHERE {differs.format(a="n", b="o")})"""
    )
    ctx.q(
        f"""INSERT INTO order_days
        SELECT n.* FROM _od_new n LEFT JOIN _od_old o USING (customer_id, day)
        WHERE {differs.format(a="o", b="n")}"""
    )
    ctx.q("DROP TABLE _od_old")
    ctx.q("DROP TABLE _od_new")


# The gap in days since the member's previous order day.
_GAP = "CAST(day - lag(day) OVER (PARTITION BY customer_id ORDER BY day) AS INTEGER)"


def _order_days(ctx: RunContext, shared: _Shared) -> None:
    """`seg_days` (a view): one row per member and order day (to D), spend net of returns and the
    gap since the previous order day, from `order_days` (see refresh_order_days)."""
    if shared.days:
        return
    start = time.perf_counter()
    d = ctx.sql_date()
    ctx.q(
        f"""CREATE OR REPLACE TEMP VIEW seg_days AS
        SELECT customer_id, day, spend, gap FROM order_days
        WHERE day <= {d}
          AND customer_id NOT IN (SELECT customer_id FROM customers WHERE join_day > {d})"""
    )
    shared.days = True
    shared.timings["order_days"] = time.perf_counter() - start


def _member_history(ctx: RunContext, shared: _Shared) -> None:
    """`seg_history`: the models' summary per member with an order day, in days.

    x = repeat order days, t_x = first to last order day, big_t = first order day to D,
    mean_spend = mean spend of the repeat order days (the first day left out; 0 when x = 0).
    `idx` numbers the rows 0..n-1 so values computed in numpy can be joined back.
    """
    _order_days(ctx, shared)
    if shared.history:
        return
    start = time.perf_counter()
    ctx.q(
        f"""CREATE OR REPLACE TEMP TABLE seg_history AS
        SELECT customer_id, row_number() OVER () - 1 AS idx, x, t_x, big_t,
               CASE WHEN x > 0 THEN CAST(repeat_spend AS DOUBLE) / x ELSE 0 END AS mean_spend
        FROM (SELECT customer_id, count(*) - 1 AS x,
                     CAST(max(day) - min(day) AS BIGINT) AS t_x,
                     CAST({ctx.sql_date()} - min(day) AS BIGINT) AS big_t,
                     sum(spend) - arg_min(spend, day) AS repeat_spend
              FROM seg_days GROUP BY customer_id)"""
    )
    shared.history = True
    shared.timings["member_summary"] = time.perf_counter() - start


def _bgnbd_fit(ctx: RunContext, seg: dict, shared: _Shared) -> BgNbdFit:
    """The run's BG/NBD fit over all members with an order day (fitted once per run)."""
    import numpy as np

    _member_history(ctx, shared)
    if shared.bgnbd is not None:
        return shared.bgnbd
    if shared.bgnbd_failure is None:
        start = time.perf_counter()
        rows = ctx.q(
            "SELECT x, t_x, big_t, count(*) AS n FROM seg_history GROUP BY ALL ORDER BY ALL"
        ).fetchnumpy()
        repeat = int(np.sum(rows["n"][rows["x"] > 0]))
        if repeat < MIN_REPEAT_BUYERS:
            shared.bgnbd_failure = (
                f"only {repeat} member(s) with a repeat order day; the BG/NBD model needs at "
                f"least {MIN_REPEAT_BUYERS}"
            )
        else:
            from loyalty_cli.models import fit_bgnbd

            fit = fit_bgnbd(rows["x"], rows["t_x"], rows["big_t"], weights=rows["n"])
            shared.timings[f"{seg['id']}.fit"] = time.perf_counter() - start
            if fit.converged:
                shared.bgnbd = fit
                return fit
            shared.bgnbd_failure = "the BG/NBD model did not converge on the members' order history"
    raise SkipSegment(shared.bgnbd_failure)


def _record_fit(ctx: RunContext, segment_id: str, entry: dict) -> None:
    """The fit goes to run.json `models` and to `model_fits` (one row per segment and day)."""
    ctx.models[segment_id] = entry
    ctx.q("DELETE FROM model_fits WHERE segment_id = ? AND as_of = ?", [segment_id, ctx.as_of])
    ctx.q(
        "INSERT INTO model_fits VALUES (?, ?, ?)",
        [segment_id, ctx.as_of, json.dumps(entry, sort_keys=True)],
    )


def _bgnbd_entry(fit: BgNbdFit) -> dict:
    return {"model": "bgnbd", "params": fit.params(), "loglik": fit.loglik}


def _number(value: float) -> str:
    """A DOUBLE literal from a number of the validated program."""
    return f"CAST({float(value)!r} AS DOUBLE)"


def _levels_case(levels: dict[str, float], value: str) -> str:
    """The highest level whose threshold is at most `value` (NULL below the lowest)."""
    ordered = sorted(levels.items(), key=lambda kv: float(kv[1]), reverse=True)
    whens = " ".join(
        f"WHEN {value} >= {_number(threshold)} THEN {sql_literal(str(name))}"
        for name, threshold in ordered
    )
    return f"CASE {whens} END"


# --------------------------------------------------------------------------- segment types


def _score(rank: str, scores: int) -> str:
    """min(scores, 1 + floor(scores * (rank - 1) / (n - 1))), 1 when n = 1, exactly."""
    return (
        f"CAST(CASE WHEN n = 1 THEN 1 "
        f"ELSE least({scores}, 1 + ({scores} * ({rank} - 1)) // (n - 1)) END AS INTEGER)"
    )


def _rfm(ctx: RunContext, seg: dict, shared: _Shared) -> None:
    """Scores over members with an order day in (D - window, D], then the first group."""
    _order_days(ctx, shared)
    window = _duration(seg, "window")
    d, first = ctx.sql_date(), ctx.sql_date(window.subtract_from(ctx.as_of))
    scores = int(seg.get("scores", 5))
    rctx = expressions.ExprContext.for_rule(None, ctx.program.extras, rfm=True)
    whens = " ".join(
        f"WHEN coalesce(({expressions.compile_expression(rule, rctx, kind='condition')}), "
        f"false) THEN {sql_literal(str(name))}"
        for name, rule in (seg.get("groups") or {}).items()
    )
    ctx.q(
        f"""INSERT INTO {_NEW}
        WITH w AS (
            SELECT customer_id, CAST({d} - max(day) AS BIGINT) AS days_since,
                   count(*) AS order_days, sum(spend) AS spend
            FROM seg_days WHERE day > {first} AND day <= {d} GROUP BY customer_id),
        ranked AS (
            -- rank() of days_since and order_days, which take few values, from counts per
            -- value (1 + the members before) rather than a sort of every member.
            SELECT customer_id, count(*) OVER () AS n, r_rank, f_rank,
                   rank() OVER (ORDER BY spend) AS m_rank
            FROM w
            JOIN ({_rank_by_count("w", "days_since", "DESC", "r_rank")}) USING (days_since)
            JOIN ({_rank_by_count("w", "order_days", "ASC", "f_rank")}) USING (order_days)),
        scored AS (
            SELECT customer_id, {_score("r_rank", scores)} AS r,
                   {_score("f_rank", scores)} AS f, {_score("m_rank", scores)} AS m
            FROM ranked)
        SELECT * FROM (
            SELECT "member".customer_id, CASE {whens} END AS grp,
                   "member".r, "member".f, "member".m, CAST(NULL AS DOUBLE) AS value
            FROM {_rfm_members(ctx, whens)})
        WHERE grp IS NOT NULL"""
    )


def _rank_by_count(rows: str, column: str, order: str, rank: str) -> str:
    """Per value of `column`: `rank() OVER (ORDER BY column order)` of the rows holding it,
    named `rank`."""
    return f"""
        SELECT {column}, 1 + coalesce(sum(count(*)) OVER (
                   ORDER BY {column} {order}
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS {rank}
        FROM {rows} GROUP BY {column}"""


_MEMBERS = "seg_members_now"  # the member view as after the run's earlier steps


def _members_now(ctx: RunContext) -> str:
    """The member view as the state stands after the run's earlier steps (taken once per
    run, when a segment first needs it): a rerun of the day finds the same (orders
    re-exported as cancelled in this run left out, see memberview.member_view_sql).
    """
    if not ctx.has_table(_MEMBERS):
        ctx.q(f"CREATE TEMP TABLE {_MEMBERS} AS {memberview.member_view_sql(ctx)}")
    return _MEMBERS


def _rfm_members(ctx: RunContext, whens: str) -> str:
    """FROM clause of the scored members for the group conditions: joined to the member
    and customer views only when the conditions name more than r, f and m."""
    member_columns = set(re.findall(r'"member"\."(\w+)"', whens))
    if member_columns <= {"r", "f", "m"}:
        members = 'scored AS "member"'
    else:
        members = (
            "(SELECT mv.* EXCLUDE (r, f, m), s.r, s.f, s.m "
            f'FROM scored s JOIN {_members_now(ctx)} mv USING (customer_id)) AS "member"'
        )
    if '"customer".' in whens:
        members += ' JOIN cust_view AS "customer" ON "customer".customer_id = "member".customer_id'
    return members


def _rule(ctx: RunContext, seg: dict, shared: _Shared) -> None:
    """Members (joined by D) for whom `when` holds; the group is the segment id. The member
    view is as after the run's earlier steps, with this run's rfm scores (rule segments are
    computed after the others)."""
    rctx = expressions.ExprContext.for_rule(None, ctx.program.extras, rfm=ctx.program.has_rfm)
    cond = expressions.compile_expression(seg["when"], rctx, kind="condition")
    rfm = memberview.first_rfm(ctx)
    members = (
        f"""(SELECT mv.* EXCLUDE (r, f, m), s.r, s.f, s.m FROM {_members_now(ctx)} mv
            LEFT JOIN segment_members s ON s.segment_id = {sql_literal(rfm)}
                 AND s.customer_id = mv.customer_id)"""
        if rfm
        else _members_now(ctx)
    )
    ctx.q(
        f"""INSERT INTO {_NEW}
        SELECT "customer".customer_id, ?, NULL, NULL, NULL, NULL
        FROM cust_view AS "customer"
        JOIN {members} AS "member" ON "member".customer_id = "customer".customer_id
        WHERE "customer".join_day <= {ctx.sql_date()} AND coalesce(({cond}), false)""",
        [seg["id"]],
    )


def _churn(ctx: RunContext, seg: dict, shared: _Shared) -> None:
    if seg.get("model", "interval") == "bgnbd":
        _churn_bgnbd(ctx, seg, shared)
    else:
        _churn_interval(ctx, seg, shared)


def _churn_interval(ctx: RunContext, seg: dict, shared: _Shared) -> None:
    """Days since the last order day over the member's median gap (pooled for one-order
    members); group = the highest level reached."""
    _order_days(ctx, shared)
    ctx.q(
        f"""INSERT INTO {_NEW}
        WITH gaps AS (SELECT customer_id, day, CAST(gap AS BIGINT) AS gap FROM seg_days),
        per_member AS (
            SELECT customer_id, max(day) AS last_day, median(gap) AS usual_gap
            FROM gaps GROUP BY customer_id),
        valued AS (
            SELECT customer_id,
                   CAST({ctx.sql_date()} - last_day AS DOUBLE)
                       / coalesce(usual_gap, (SELECT median(gap) FROM gaps)) AS value
            FROM per_member)
        SELECT customer_id, grp, NULL, NULL, NULL, value FROM (
            SELECT customer_id, value, {_levels_case(seg["levels"], "value")} AS grp
            FROM valued)
        WHERE grp IS NOT NULL"""
    )
    # Every member has one order day exactly when no day has a gap to an earlier one (then
    # no member has a value, so the segment is empty: only then is it worth looking).
    if not ctx.scalar(f"SELECT count(*) FROM {_NEW}") and ctx.scalar(
        "SELECT count(*) > 0 AND count(gap) = 0 FROM seg_days"
    ):
        ctx.warnings.append(
            f"segment '{seg['id']}': no member has two order days yet, so there is no usual "
            "gap between orders to compare with; nobody is in the segment"
        )


def _churn_bgnbd(ctx: RunContext, seg: dict, shared: _Shared) -> None:
    """1 - P(alive) from the run's BG/NBD fit; the value depends on (x, t_x, T) only, so it
    is computed once per distinct triple and joined back."""
    fit = _bgnbd_fit(ctx, seg, shared)
    rows = ctx.q("SELECT DISTINCT x, t_x, big_t FROM seg_history").fetchnumpy()
    from loyalty_cli.models import p_alive

    churn = 1.0 - p_alive(fit, rows["x"], rows["t_x"], rows["big_t"])
    values = {"x": rows["x"], "t_x": rows["t_x"], "big_t": rows["big_t"], "value": churn}
    ctx.con.register("seg_values", values)
    try:
        ctx.q(
            f"""INSERT INTO {_NEW}
            SELECT customer_id, grp, NULL, NULL, NULL, value FROM (
                SELECT h.customer_id, v.value, {_levels_case(seg["levels"], "v.value")} AS grp
                FROM seg_history h JOIN seg_values v USING (x, t_x, big_t))
            WHERE grp IS NOT NULL"""
        )
    finally:
        ctx.con.unregister("seg_values")
    _record_fit(ctx, seg["id"], _bgnbd_entry(fit))


def _clv(ctx: RunContext, seg: dict, shared: _Shared) -> None:
    """Expected spend over `horizon` (BG/NBD x Gamma-Gamma); the top share is `top`."""
    import numpy as np

    bg = _bgnbd_fit(ctx, seg, shared)
    start = time.perf_counter()
    hist = ctx.q("SELECT x, t_x, big_t, mean_spend FROM seg_history ORDER BY idx").fetchnumpy()
    x, mean_spend = hist["x"], hist["mean_spend"]
    buyers = int(np.sum((x > 0) & (mean_spend > 0)))
    if buyers < MIN_REPEAT_BUYERS:
        raise SkipSegment(
            f"only {buyers} member(s) with a repeat order day of positive spend; the "
            f"Gamma-Gamma model needs at least {MIN_REPEAT_BUYERS}"
        )
    from loyalty_cli.models import clv, fit_gamma_gamma

    gg = fit_gamma_gamma(x, mean_spend)
    shared.timings[f"{seg['id']}.spend_fit"] = time.perf_counter() - start
    if not gg.converged or not gg.q > 1:
        raise SkipSegment("the Gamma-Gamma spend model did not converge on the repeat buyers")
    horizon = _duration(seg, "horizon")
    days = (horizon.add_to(ctx.as_of) - ctx.as_of).days
    value = clv(bg, gg, x, hist["t_x"], hist["big_t"], mean_spend, float(days))
    if not np.all(np.isfinite(value)):
        raise SkipSegment("the lifetime value could not be computed for every member")
    n = int(x.shape[0])
    share = Decimal(str(seg.get("top_share", 0.1)))
    top = int((share * n).to_integral_value(rounding=ROUND_CEILING))
    ctx.con.register("seg_values", {"idx": np.arange(n, dtype=np.int64), "value": value})
    try:
        ctx.q(
            f"""INSERT INTO {_NEW}
            SELECT customer_id,
                   CASE WHEN row_number() OVER (ORDER BY value DESC, customer_id) <= {top}
                        THEN 'top' ELSE 'rest' END,
                   NULL, NULL, NULL, value
            FROM seg_history JOIN seg_values USING (idx)"""
        )
    finally:
        ctx.con.unregister("seg_values")
    entry = _bgnbd_entry(bg)
    entry["spend"] = gg.params()
    _record_fit(ctx, seg["id"], entry)


def _duration(seg: dict, key: str) -> Duration:
    parsed = parse_duration(seg.get(key))
    if parsed is None:
        raise ValueError(f"segment '{seg.get('id')}': {key} is not a duration; validate first")
    return parsed


_BUILDERS = {"rfm": _rfm, "rule": _rule, "churn": _churn, "clv": _clv}


# --------------------------------------------------------------------------- entering, leaving


def record_membership(ctx: RunContext, segment_id: str) -> None:
    """Record entries and exits against the membership before D, then store the new one.

    The membership before D is the stored one with D's recorded changes undone (entries
    removed, exits put back), so a rerun of D compares with the same baseline as the first
    run and replaces that run's changes instead of adding to them. A member is in at most
    one group of a segment, so one join by member finds who left a group and who entered one.
    """
    d = ctx.sql_date()
    before = "(SELECT customer_id, grp FROM segment_members WHERE segment_id = ?)"
    params = [segment_id]
    rerun = ctx.scalar(
        f"SELECT count(*) FROM segment_changes WHERE segment_id = ? AND on_day = {d}",
        [segment_id],
    )
    if rerun:
        ctx.q(
            f"""CREATE OR REPLACE TEMP TABLE seg_before AS
            SELECT customer_id, grp FROM (
                SELECT customer_id, grp FROM segment_members WHERE segment_id = $1
                EXCEPT
                SELECT customer_id, grp FROM segment_changes
                WHERE segment_id = $1 AND on_day = {d} AND change = 'enter')
            UNION
            SELECT customer_id, grp FROM segment_changes
            WHERE segment_id = $1 AND on_day = {d} AND change = 'exit'""",
            [segment_id],
        )
        ctx.q(f"DELETE FROM segment_changes WHERE segment_id = ? AND on_day = {d}", [segment_id])
        before, params = "seg_before", []
    ctx.q(
        f"""CREATE OR REPLACE TEMP TABLE seg_diff AS
        SELECT b.grp AS old_grp, n.grp AS new_grp,
               coalesce(b.customer_id, n.customer_id) AS customer_id
        FROM {before} b FULL JOIN {_NEW} n ON n.customer_id = b.customer_id
        WHERE b.grp IS DISTINCT FROM n.grp""",
        params,
    )
    ctx.q(
        f"""INSERT INTO segment_changes
        SELECT $1, customer_id, old_grp, 'exit', {d} FROM seg_diff WHERE old_grp IS NOT NULL
        UNION ALL
        SELECT $1, customer_id, new_grp, 'enter', {d} FROM seg_diff WHERE new_grp IS NOT NULL""",
        [segment_id],
    )
    ctx.q("DELETE FROM segment_members WHERE segment_id = ?", [segment_id])
    ctx.q(
        f"""INSERT INTO segment_members
        SELECT $1, customer_id, grp, r, f, m, value, {d} FROM {_NEW}""",
        [segment_id],
    )
    ctx.q("DROP TABLE IF EXISTS seg_before")
    ctx.q("DROP TABLE seg_diff")
    for grp, n in ctx.q(f"SELECT grp, count(*) FROM {_NEW} GROUP BY grp ORDER BY grp").fetchall():
        ctx.count("segments", f"{segment_id}.{grp}", n)
