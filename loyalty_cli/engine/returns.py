"""Step 3 of a run: returns cancel pending points or claw back available ones.

After each return of an order (SPEC 9.9):
    due = R_half_up(granted x returned_so_far / total), capped at granted,
and the return reverses `due - already_reversed`. A return dated before the order's
release day cancels pending points (while they are still pending); on or after it, the
reversal is a clawback from available lots, first-in first-out, never below zero.
Returned money is capped at the order total; an order with total 0 has nothing to return.
"""

from __future__ import annotations

from loyalty_cli.engine import ledger
from loyalty_cli.engine.context import RunContext, id_range


def _due_sql(points: str, cum_cents: str, total_cents: str) -> str:
    """round-half-up(points x cum / total) in exact integer arithmetic."""
    return (
        f"least({points}, CAST((2 * CAST({points} AS HUGEINT) * {cum_cents} + {total_cents}) "
        f"// (2 * {total_cents}) AS BIGINT))"
    )


def apply_returns(ctx: RunContext) -> None:
    """Process `new_returns` (order_id, returned_at, amount, day, return_key)."""
    ctx.q("DROP TABLE IF EXISTS ret")
    ctx.q(
        f"""CREATE TEMP TABLE ret AS
        WITH r AS (
            SELECT r.order_id, r.returned_at, r.amount, r.day, r.return_key,
                   o.customer_id, o.total, o.granted, o.qualifying, o.release_on, o.status,
                   o.returned AS returned0, o.reversed AS reversed0,
                   o.qualifying_reversed AS qrev0,
                   CAST(round(o.total * 100) AS HUGEINT) AS total_cents,
                   CAST(round(least(o.total, o.returned + sum(r.amount) OVER w) * 100)
                        AS HUGEINT) AS cum_cents,
                   row_number() OVER w AS k
            FROM new_returns r JOIN orders o USING (order_id)
            WHERE {id_range("o.order_id", "new_returns")}
            WINDOW w AS (PARTITION BY r.order_id ORDER BY r.returned_at, r.amount, r.return_key
                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)),
        d AS (
            SELECT *,
                   CASE WHEN total_cents > 0 AND status = 'completed'
                        THEN {_due_sql("granted", "cum_cents", "total_cents")}
                        ELSE reversed0 END AS due,
                   CASE WHEN total_cents > 0 AND status = 'completed'
                        THEN {_due_sql("qualifying", "cum_cents", "total_cents")}
                        ELSE qrev0 END AS qdue
            FROM r)
        SELECT d.*,
               greatest(0, due - coalesce(lag(due) OVER o, reversed0)) AS reverse,
               coalesce(p.pend, 0) AS pend
        FROM d LEFT JOIN (
            SELECT order_id, sum(remaining) AS pend FROM lots
            WHERE status = 'pending' AND order_id IN (SELECT order_id FROM new_returns)
            GROUP BY order_id) p USING (order_id)
        WINDOW o AS (PARTITION BY d.order_id ORDER BY k)"""
    )
    ledger.cancel_pending(
        ctx,
        """SELECT customer_id, order_id, reverse AS amount, 'return' AS rule_id,
                  return_key AS source_id, returned_at AS occurred_at, 'return' AS reason
           FROM ret WHERE reverse > 0 AND day < release_on AND pend > 0""",
    )
    # Pending points due by now (first runs, late rows) are released before clawbacks.
    ledger.release_due(ctx)
    ledger.debit(
        ctx,
        """SELECT customer_id, 'clawback' AS kind, reverse AS amount, 'return' AS rule_id,
                  return_key AS source_id, returned_at AS occurred_at, 'return' AS reason
           FROM ret WHERE reverse > 0 AND NOT (day < release_on AND pend > 0)""",
    )
    ctx.q(
        f"""UPDATE orders SET
            returned = least(orders.total, orders.returned + t.amt),
            reversed = t.due, qualifying_reversed = t.qdue
        FROM (SELECT order_id, sum(amount) AS amt, max(due) AS due, max(qdue) AS qdue
              FROM ret GROUP BY order_id) t
        WHERE orders.order_id = t.order_id AND {id_range("orders.order_id", "ret")}
          -- A return on a cancelled order does nothing.
          AND orders.status = 'completed'"""
    )
    ctx.q(
        f"""INSERT INTO returns
        SELECT order_id, returned_at, amount, day, {ctx.sql_date()} FROM new_returns"""
    )
    n, cancelled, clawed = ctx.q(
        """SELECT count(*),
                  coalesce(sum(CASE WHEN day < release_on AND pend > 0 THEN reverse END), 0),
                  coalesce(sum(CASE WHEN NOT (day < release_on AND pend > 0) THEN reverse END), 0)
           FROM ret"""
    ).fetchone()
    ctx.count("returns", "rows", n)
    ctx.count("returns", "pending_cancelled", cancelled)
    ctx.count("returns", "clawed_back", clawed)
