"""The member view (SPEC 4): what expressions read about a member, as the state stands.

One query, taken at three moments of a run:
- at its start, for earning rules and challenges (`member_view`, run._prepare): a row is
  judged by the member as they were before the run, with the tier of the start of D (a
  rerun of D with a late export judges the late rows as the one run of D would have);
- in the segments step, for rule segments and rfm group conditions (segments.py): the
  member after the run's earlier steps, so that a rerun of the day, which finds those
  steps done, places everyone where the run did;
- in the workflows step (`_wf_member`, workflows.py), for the members it acts on.
"""

from __future__ import annotations

from loyalty_cli.engine.context import RunContext
from loyalty_cli.engine.timeutil import sql_literal

# Member-view columns read from the lots and from the orders.
FROM_LOTS = frozenset({"balance", "pending"})
FROM_ORDERS = frozenset({"days_since_last_order", "orders_count", "lifetime_spend"})


def first_rfm(ctx: RunContext) -> str | None:
    """The id of the program's first rfm segment, whose scores are the view's r, f, m."""
    return next(
        (s["id"] for s in ctx.program.data.get("segments") or [] if s["type"] == "rfm"), None
    )


def member_view_sql(
    ctx: RunContext,
    *,
    names: set[str] | None = None,
    among: str | None = None,
    start_of_day: bool = False,
) -> str:
    """SELECT of the member view of every customer (or of those `among`, a query of
    customer ids) as the state stands: customer_id, tier, balance, pending,
    days_since_last_order, orders_count, lifetime_spend, r, f, m, last_order_day.

    With `names`, the columns that need a pass over all lots or all orders are worked out
    only when `names` holds them (else 0 or NULL): a view that no expression reads costs
    nothing.

    With `start_of_day` (the view of the run's start, for earning rules and challenges), the
    tier is the member's tier at the start of D (tiers.member_tiers_sql): in a rerun of D
    with a late export, not the tier the day's first run moved them to.

    An order re-exported as cancelled in this run is still `completed` in `orders` until
    the run's end; once the run knows it (`cancelled_now`, made after the start's view),
    the view leaves it out, so the segments and workflows steps see what a rerun of the
    day, which finds it cancelled, sees.
    """
    d = ctx.sql_date()
    only = f"AND customer_id IN ({among})" if among else ""
    lots = names is None or bool(names & FROM_LOTS)
    orders = names is None or bool(names & FROM_ORDERS)
    balances = (
        f"""(SELECT customer_id,
                   sum(remaining) FILTER (status = 'available') AS balance,
                   sum(remaining) FILTER (status = 'pending') AS pending
            FROM lots WHERE remaining > 0 {only} GROUP BY customer_id)"""
        if lots
        else "(SELECT NULL::VARCHAR AS customer_id, 0 AS balance, 0 AS pending WHERE FALSE)"
    )
    order_stats = (
        f"""(SELECT customer_id, max(day) AS last_day, count(*) AS n,
                   sum(greatest(total - returned, 0)) AS spend
            FROM orders WHERE status = 'completed' {only} {ctx.not_cancelled_now("order_id")}
            GROUP BY customer_id)"""
        if orders
        else "(SELECT NULL::VARCHAR AS customer_id, NULL::DATE AS last_day, 0 AS n, "
        "CAST(0 AS DECIMAL(18,2)) AS spend WHERE FALSE)"
    )
    lowest, rfm = ctx.program.lowest_tier, first_rfm(ctx)
    if start_of_day:
        from loyalty_cli.engine import tiers

        stored = f"({tiers.member_tiers_sql(ctx, among)})"
    else:
        stored = "tiers"
    return f"""
        SELECT c.customer_id,
               coalesce(t.tier, {"NULL" if lowest is None else sql_literal(lowest)}) AS tier,
               CAST(coalesce(b.balance, 0) AS BIGINT) AS balance,
               CAST(coalesce(b.pending, 0) AS BIGINT) AS pending,
               CAST({d} - o.last_day AS BIGINT) AS days_since_last_order,
               coalesce(o.n, 0) AS orders_count,
               coalesce(o.spend, CAST(0 AS DECIMAL(18,2))) AS lifetime_spend,
               s.r, s.f, s.m, o.last_day AS last_order_day
        FROM customers c
        LEFT JOIN {stored} t USING (customer_id)
        LEFT JOIN {balances} b USING (customer_id)
        LEFT JOIN {order_stats} o USING (customer_id)
        LEFT JOIN (SELECT customer_id, r, f, m FROM segment_members
                   WHERE segment_id = {"NULL" if rfm is None else sql_literal(rfm)}) s
               USING (customer_id)
        {f"WHERE c.customer_id IN ({among})" if among else ""}"""
