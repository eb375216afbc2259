"""The ledger and its lots: credits, pending release, cancellations, FIFO debits, expiry.

Every change of a member's balances goes through here, so the invariants hold by
construction: available balance = sum of available lot remainders = sum of ledger
`points`; pending balance = sum of pending lot remainders = sum of ledger `pending`.

Debits are set-based: within one call, a member's debits are taken in order from the
balance at that moment; the balance never goes below zero, so the amount a debit takes is
`max(0, B0 - before) - max(0, B0 - after)` over the running total of amounts. What a
debit could not take is its `shortfall`. The total taken is then removed from the
member's available lots oldest `earned_on` first (then by lot creation order).
"""

from __future__ import annotations

from loyalty_cli import state
from loyalty_cli.engine.context import RunContext

LEDGER_COLUMNS = (
    "entry_id, run_on, customer_id, kind, points, pending, rule_id, source_id, "
    "occurred_at, occurred_on, reason, shortfall, lot_id"
)


_ID_COLUMNS = {"ledger": "entry_id", "lots": "lot_id"}


# Ids stay far below BIGINT's limit (2^63): a run reserves at most rows x rules of them.
_ID_LIMIT = 2**62


def _reserve(ctx: RunContext, table: str, count: int) -> int:
    """The id before a block of `count` new ids of `table` (read once per run, then counted).

    Released pending lots are deleted, so the highest lot id ever used may be gone from
    `lots`: meta `lots_removed_up_to` keeps it, and ids are never given out twice.
    """
    if table not in ctx.last_ids:
        column = _ID_COLUMNS[table]
        last = int(ctx.scalar(f"SELECT coalesce(max({column}), 0) FROM {table}"))
        if table == "lots":
            last = max(last, _lots_removed_up_to(ctx))
        ctx.last_ids[table] = last
    base = ctx.last_ids[table]
    if base + int(count) >= _ID_LIMIT:
        raise RuntimeError(f"{table} ids would pass {_ID_LIMIT}: {base} + {count}")
    ctx.last_ids[table] = base + int(count)
    return base


def _lots_removed_up_to(ctx: RunContext) -> int:
    return int(state.get_meta(ctx.con, state.LOTS_REMOVED_KEY) or 0)


def last_entry_id(ctx: RunContext) -> int:
    """The highest ledger entry id so far (entries after it are this run's)."""
    return _reserve(ctx, "ledger", 0)


# A run that made more entries than this (a first run, a long catch-up: a nightly run makes
# tens of thousands) tidies the ledger's last row groups once it has committed; see
# compact_tail.
TAIL_CHECK_ENTRIES = 250_000


def compact_tail(con) -> None:
    """Rewrite the ledger's last row groups when a partly filled one lies before the last.

    Each bulk insert of a run leaves its last row group partly filled, so a first run leaves
    several among the ledger's last row groups. DuckDB merges them at the first checkpoint
    that appends to the table: the next nightly run would pay for rewriting a few hundred
    thousand entries (about 0.15 s on the benchmark). Done here instead, in a transaction of
    its own after the run's commit: the same entries, in the same order, packed into full
    row groups. A kill in between leaves the state as the run committed it.
    """
    groups = con.execute(
        """SELECT row_group_id, sum(count) FROM pragma_storage_info('ledger')
        WHERE column_id = 0 AND segment_type <> 'VALIDITY' GROUP BY 1 ORDER BY 1"""
    ).fetchall()
    if len(groups) < 2:
        return
    capacity = max(n for _, n in groups)
    partly = [i for i, (_, n) in enumerate(groups[:-1]) if n < capacity]
    # Only a short tail: the merge a checkpoint would do covers the last few row groups.
    if not partly or len(groups) - partly[-1] > 4:
        return
    first_row = sum(n for _, n in groups[: partly[-1]])
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(
            f"CREATE TEMP TABLE _ledger_tail AS "
            f"SELECT * FROM ledger WHERE rowid >= {first_row} ORDER BY rowid"
        )
        con.execute(f"DELETE FROM ledger WHERE rowid >= {first_row}")
        con.execute("INSERT INTO ledger SELECT * FROM _ledger_tail")
        con.execute("DROP TABLE _ledger_tail")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("CHECKPOINT")


def expiry_sql(ctx: RunContext, earned_on: str) -> str:
    """SQL for a lot's last usable day: earned_on + after, rounded up by `at`."""
    after = ctx.expiry_after()
    if after is None:
        return "CAST(NULL AS DATE)"
    base = f"CAST({earned_on} + {after.sql_interval()} AS DATE)"
    at = (ctx.program.data.get("expiry") or {}).get("at", "end_of_day")
    if at == "end_of_month":
        return f"last_day({base})"
    if at == "end_of_quarter":
        return f"CAST(date_trunc('quarter', {base}) + INTERVAL 3 MONTH - INTERVAL 1 DAY AS DATE)"
    if at == "end_of_year":
        return f"CAST(date_trunc('year', {base}) + INTERVAL 1 YEAR - INTERVAL 1 DAY AS DATE)"
    return base


def numbered(relation: str, where: str) -> str:
    """The relation's rows with `n` = 1, 2, ... in (customer_id, occurred_at, kind, rule_id,
    source_id) order: the order of entry and lot ids.

    Numbered within each member and offset by the counts of the members before, which gives
    the same numbers as one global sort but sorts member by member (much cheaper on
    millions of rows).
    """
    return f"""
        WITH c AS MATERIALIZED (SELECT * FROM ({relation}) r WHERE {where}),
        base AS ({_members_before("c")})
        SELECT base.b + row_number() OVER (
                   PARTITION BY c.customer_id
                   ORDER BY c.occurred_at, c.kind, c.rule_id, c.source_id) AS n,
               c.*
        FROM c JOIN base USING (customer_id)"""


def _members_before(rows: str) -> str:
    """SQL: customer_id, b = the number of `rows` of the members before it (by customer_id).

    With the place of a row within its member, b numbers the rows as one sort by member
    would, while each member's rows are sorted on their own.
    """
    return f"""
        SELECT customer_id,
               coalesce(sum(k) OVER (ORDER BY customer_id
                   ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS b
        FROM (SELECT customer_id, count(*) AS k FROM {rows} GROUP BY customer_id) per"""


def credit(ctx: RunContext, relation: str, *, ordinal_span: int | None = None) -> int:
    """Add credits from a relation (SQL text built by the engine, not by users).

    Columns: customer_id, kind, points (> 0), rule_id, source_id, occurred_at, earned_on,
    pending_until (DATE or NULL: pending until the start of that day), order_id, reason.
    Each credit makes a ledger entry: `pending` for pending credits, else one of `kind`.
    Returns the number of entries made.

    Lots: a pending credit goes to the pending lot of its order and rule; an available one
    to the member's lot of kind `points` for its expiry day, which collects every
    available credit that expires that day (or, without `expiry.after`, every one).
    Debits take lots oldest first and all points of one expiry day expire together, so
    which of that day's credits a debit took changes nothing a member or a file can see;
    one lot per day keeps the table small (a member has a few lots, not one per event).

    With `ordinal_span`, the relation also has `ordinal`: a number in [0, ordinal_span)
    fixed by the rows' positions in the exports, unique per row. Entry ids are then
    base + 1 + ordinal (with gaps), which spares sorting millions of credits to number them.
    """
    ctx.q("DROP TABLE IF EXISTS _credits")
    if ordinal_span is None:
        ctx.q(f"""CREATE TEMP TABLE _credits AS {numbered(relation, "points > 0")}""")
        cred = "SELECT * FROM _credits"
    else:
        cred = f"SELECT ordinal + 1 AS n, * FROM ({relation}) r WHERE points > 0"
    # Expiry days per earning day, computed once per day rather than once per credit; the
    # credits per day give their number without another pass.
    ctx.q("DROP TABLE IF EXISTS _expday")
    ctx.q(
        f"""CREATE TEMP TABLE _expday AS
        SELECT earned_on, coalesce({expiry_sql(ctx, "earned_on")}, DATE '9999-12-31') AS k_exp,
               credits
        FROM (SELECT earned_on, count(*) AS credits FROM ({cred}) c GROUP BY earned_on) d"""
    )
    n = int(ctx.scalar("SELECT coalesce(sum(credits), 0) FROM _expday"))
    if not n:
        for table in ("_expday", "_credits"):
            ctx.q(f"DROP TABLE IF EXISTS {table}")
        return 0
    entry0 = _reserve(ctx, "ledger", n if ordinal_span is None else int(ordinal_span))
    run_on = ctx.sql_date()
    keyed = f"""SELECT c.*,
               CASE WHEN pending_until IS NOT NULL THEN order_id ELSE '' END AS k_order,
               CASE WHEN pending_until IS NOT NULL THEN rule_id ELSE '' END AS k_rule, e.k_exp
        FROM ({cred}) c JOIN _expday e USING (earned_on)"""
    _add_to_lots(
        ctx,
        f"""SELECT customer_id, k_order, k_rule, k_exp, min(pending_until) AS pending_until,
                   min(earned_on) AS earned_on,
                   min(coalesce(pending_until, earned_on)) AS available_on, sum(points) AS amount
            FROM ({keyed}) x GROUP BY customer_id, k_order, k_rule, k_exp""",
    )
    ctx.q(
        f"""INSERT INTO ledger ({LEDGER_COLUMNS})
        SELECT {entry0} + c.n, {run_on}, c.customer_id,
               CASE WHEN c.pending_until IS NOT NULL THEN 'pending' ELSE c.kind END,
               CASE WHEN c.pending_until IS NOT NULL THEN 0 ELSE c.points END,
               CASE WHEN c.pending_until IS NOT NULL THEN c.points ELSE 0 END,
               c.rule_id, c.source_id, c.occurred_at, CAST(c.occurred_at AS DATE), c.reason, 0,
               k.lot_id
        FROM ({keyed}) c
        JOIN _lotk k ON k.customer_id = c.customer_id AND k.k_order = c.k_order
                    AND k.k_rule = c.k_rule AND k.k_exp = c.k_exp"""
    )
    for table in ("_lotk", "_expday", "_credits"):
        ctx.q(f"DROP TABLE IF EXISTS {table}")
    return n


def _add_to_lots(ctx: RunContext, groups: str) -> None:
    """Add points to lots and leave `_lotk`: the groups with the lot_id each went to.

    `groups` has customer_id, k_order, k_rule, k_exp (expiry day, 9999-12-31 for none),
    pending_until, earned_on, available_on, amount. A group with k_order '' adds to the
    member's `points` lot of that expiry day, made when missing (its available_on is the
    first day any of its points was available); the others are pending lots of order
    k_order and rule k_rule. New lots are numbered by member but stored in order of expiry
    day: a night's releases, debits and expiry touch the lots of a few expiry days, so their
    updates stay in a few row groups of the table instead of all of them.
    """
    run_on = ctx.sql_date()
    ctx.q("DROP TABLE IF EXISTS _lotk")
    ctx.q(
        f"""CREATE TEMP TABLE _lotk AS
        WITH k AS ({groups}),
        b AS (
            SELECT customer_id, coalesce(expires_on, DATE '9999-12-31') AS k_exp,
                   min(lot_id) AS lot_id
            FROM lots WHERE kind = 'points' AND status = 'available'
              AND customer_id IN (SELECT customer_id FROM k WHERE k_order = '')
            GROUP BY ALL)
        SELECT k.*, b.lot_id AS existing,
               CASE WHEN b.lot_id IS NULL THEN row_number() OVER (
                   PARTITION BY b.lot_id IS NULL
                   ORDER BY k.customer_id, k.k_exp, k.k_order, k.k_rule)
               END AS new_n
        FROM k LEFT JOIN b ON k.k_order = '' AND b.customer_id = k.customer_id
                          AND b.k_exp = k.k_exp"""
    )
    # A checkpoint rewrites each updated column of every row group an update touched, so
    # the dates, which rarely move (a late credit for an earlier day), are updated apart.
    ctx.q(
        """UPDATE lots SET amount = lots.amount + k.amount, remaining = lots.remaining + k.amount
        FROM _lotk k WHERE lots.lot_id = k.existing"""
    )
    ctx.q(
        """UPDATE lots SET earned_on = least(lots.earned_on, k.earned_on),
                          available_on = least(lots.available_on, k.available_on)
        FROM _lotk k WHERE lots.lot_id = k.existing
          AND (k.earned_on < lots.earned_on OR k.available_on < lots.available_on)"""
    )
    new_lots = int(ctx.scalar("SELECT count(*) FROM _lotk WHERE existing IS NULL"))
    lot0 = _reserve(ctx, "lots", new_lots)
    ctx.q(
        f"""INSERT INTO lots
        SELECT {lot0} + new_n, customer_id, earned_on, available_on,
               CASE WHEN k_exp < DATE '9999-12-31' THEN k_exp END, amount, amount,
               CASE WHEN k_order <> '' THEN 'pending' ELSE 'available' END,
               CASE WHEN k_order <> '' THEN k_order END,
               CASE WHEN k_order <> '' THEN 'earn' ELSE 'points' END,
               CASE WHEN k_order <> '' THEN k_rule END, {run_on}
        FROM _lotk WHERE existing IS NULL ORDER BY k_exp, new_n"""
    )
    ctx.q(
        f"""CREATE OR REPLACE TEMP TABLE _lotk AS
        SELECT *, coalesce(existing, {lot0} + new_n) AS lot_id FROM _lotk"""
    )


def release_due(ctx: RunContext, *, created_before_run: bool = False) -> int:
    """Pending lots whose day has come are released (a `release` entry each): their points
    move to the member's lot of their expiry day and the pending lot, now empty, is deleted
    (its pending and release entries keep its id). Pending lots emptied by returns go too.

    Deleting keeps `lots` to what can still be spent: most of a first run's lots are
    pending lots of past orders, released in the same run.
    """
    run_on = ctx.sql_date()
    created = f"AND created_on < {run_on}" if created_before_run else ""
    ctx.q("DROP TABLE IF EXISTS _release")
    ctx.q(
        f"""CREATE TEMP TABLE _release AS
        SELECT * FROM lots WHERE status = 'pending' AND available_on <= {run_on} {created}"""
    )
    n, released, first, last = ctx.q(
        "SELECT count(*), coalesce(sum(remaining), 0), min(lot_id), max(lot_id) FROM _release "
        "WHERE remaining > 0"
    ).fetchone()
    n = int(n)
    ctx.count("release", "points", int(released))
    if n:
        # Entries numbered by lot id (lots are numbered per member): no sort needed.
        entry0 = _reserve(ctx, "ledger", int(last) - int(first) + 1)
        ctx.q(
            f"""INSERT INTO ledger ({LEDGER_COLUMNS})
            SELECT {entry0} + 1 + lot_id - {int(first)}, {run_on}, customer_id, 'release',
                   remaining, -remaining, rule_id, order_id,
                   CAST(available_on AS TIMESTAMP), available_on, NULL, 0, lot_id
            FROM _release WHERE remaining > 0"""
        )
        # The released points join the member's lot of their expiry day.
        _add_to_lots(
            ctx,
            """SELECT customer_id, '' AS k_order, '' AS k_rule,
                      coalesce(expires_on, DATE '9999-12-31') AS k_exp,
                      CAST(NULL AS DATE) AS pending_until, min(earned_on) AS earned_on,
                      min(available_on) AS available_on,
                      sum(remaining) AS amount
               FROM _release WHERE remaining > 0 GROUP BY ALL""",
        )
        ctx.q("DROP TABLE _lotk")
    top = ctx.scalar("SELECT max(lot_id) FROM _release")
    if top is not None:
        removed = max(int(top), _lots_removed_up_to(ctx))
        state.set_meta(ctx.con, state.LOTS_REMOVED_KEY, str(removed))
        ctx.q("DELETE FROM lots WHERE lot_id IN (SELECT lot_id FROM _release)")
    ctx.q("DROP TABLE _release")
    return n


def cancel_pending(ctx: RunContext, relation: str) -> int:
    """Cancel pending points of orders (returns before release).

    Columns: customer_id, order_id, amount (> 0), rule_id, source_id, occurred_at, reason.
    Takes from the order's pending lots (one per rule) in proportion to what each holds, so
    each rule's released points shrink by its share; an entry per row.
    """
    ctx.q("DROP TABLE IF EXISTS _cancel")
    ctx.q(
        f"""CREATE TEMP TABLE _cancel AS
        SELECT row_number() OVER (ORDER BY order_id, occurred_at, source_id) AS n,
               sum(amount) OVER (PARTITION BY order_id ORDER BY occurred_at, source_id
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS before,
               *
        FROM ({relation}) c WHERE amount > 0"""
    )
    n = int(ctx.scalar("SELECT count(*) FROM _cancel"))
    if not n:
        return 0
    entry0 = _reserve(ctx, "ledger", n)
    run_on = ctx.sql_date()
    # What each order's pending lots can give, in total.
    ctx.q(
        f"""INSERT INTO ledger ({LEDGER_COLUMNS})
        WITH avail AS (
            SELECT order_id, sum(remaining) AS pend FROM lots
            WHERE status = 'pending' AND order_id IN (SELECT order_id FROM _cancel)
            GROUP BY order_id)
        SELECT {entry0} + n, {run_on}, c.customer_id, 'cancel', 0,
               -(greatest(0, coalesce(a.pend, 0) - coalesce(c.before, 0))
                 - greatest(0, coalesce(a.pend, 0) - coalesce(c.before, 0) - c.amount)),
               c.rule_id, c.source_id, c.occurred_at, CAST(c.occurred_at AS DATE), c.reason,
               c.amount - (greatest(0, coalesce(a.pend, 0) - coalesce(c.before, 0))
                 - greatest(0, coalesce(a.pend, 0) - coalesce(c.before, 0) - c.amount)),
               NULL
        FROM _cancel c LEFT JOIN avail a USING (order_id)"""
    )
    # Remove the cancelled total from the order's pending lots (one per rule) in proportion
    # to what each holds: floor(amt x remaining / pend) each, and the points left over one
    # each to the lots with the largest remainders (then by lot id). The amounts sum to amt
    # and none passes its lot's remaining.
    ctx.q(
        """UPDATE lots SET remaining = lots.remaining - t.take FROM (
            WITH tot AS (SELECT order_id, sum(amount) AS amt FROM _cancel GROUP BY order_id),
            l AS (
                SELECT lot_id, order_id, CAST(remaining AS HUGEINT) AS remaining,
                       CAST(sum(remaining) OVER (PARTITION BY order_id) AS HUGEINT) AS pend
                FROM lots WHERE status = 'pending' AND remaining > 0
                  AND order_id IN (SELECT order_id FROM tot)),
            q AS (
                SELECT l.*, least(CAST(tot.amt AS HUGEINT), l.pend) AS amt FROM l
                JOIN tot USING (order_id)),
            s AS (
                SELECT lot_id, order_id, amt, amt * remaining // pend AS base,
                       amt * remaining % pend AS rest FROM q),
            r AS (
                SELECT s.*, amt - sum(base) OVER (PARTITION BY order_id) AS left_over,
                       row_number() OVER (PARTITION BY order_id ORDER BY rest DESC, lot_id) AS k
                FROM s)
            SELECT lot_id, CAST(base + CASE WHEN k <= left_over THEN 1 ELSE 0 END AS BIGINT)
                       AS take
            FROM r) t
        WHERE lots.lot_id = t.lot_id AND t.take > 0"""
    )
    ctx.q("DROP TABLE _cancel")
    return n


def debit(ctx: RunContext, relation: str) -> int:
    """Take points from available balances, first-in first-out, never below zero.

    Columns: customer_id, kind, amount (> 0), rule_id, source_id, occurred_at, reason,
    and optionally the tie-breakers seq, key and sub: debits are taken in (occurred_at,
    seq, key, sub, source_id, kind) order. Each row makes an entry with the points it took
    (negative) and its shortfall.
    """
    cols = {c[0] for c in ctx.q(f"SELECT * FROM ({relation}) LIMIT 0").description}
    seq = "seq" if "seq" in cols else "0"
    key = "key" if "key" in cols else "''"
    sub = "sub" if "sub" in cols else "0"
    ctx.q("DROP TABLE IF EXISTS _debits")
    ctx.q(
        f"""CREATE TEMP TABLE _debits AS
        WITH d AS (SELECT *, {seq} AS _seq, {key} AS _key, {sub} AS _sub
                   FROM ({relation}) x WHERE amount > 0),
        bal AS (
            SELECT customer_id, sum(remaining) AS b0 FROM lots
            WHERE status = 'available' AND remaining > 0
              AND customer_id IN (SELECT customer_id FROM d)
            GROUP BY customer_id),
        run AS (
            SELECT d.*, coalesce(bal.b0, 0) AS b0,
                   sum(amount) OVER w AS cum_after,
                   sum(amount) OVER w - amount AS cum_before,
                   row_number() OVER w AS k
            FROM d LEFT JOIN bal USING (customer_id)
            WINDOW w AS (PARTITION BY d.customer_id
                         ORDER BY occurred_at, _seq, _key, _sub, source_id, kind
                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)),
        -- Numbered in (customer_id, occurred_at, _seq, _key, _sub, source_id, kind) order: the
        -- members' debits before, plus the place within the member (the same sort as the
        -- running sum).
        base AS ({_members_before("d")})
        SELECT base.b + run.k AS n, run.* EXCLUDE (k),
               greatest(0, b0 - cum_before) - greatest(0, b0 - cum_after) AS taken
        FROM run JOIN base USING (customer_id)"""
    )
    n = int(ctx.scalar("SELECT count(*) FROM _debits"))
    if not n:
        return 0
    entry0 = _reserve(ctx, "ledger", n)
    run_on = ctx.sql_date()
    ctx.q(
        f"""INSERT INTO ledger ({LEDGER_COLUMNS})
        SELECT {entry0} + n, {run_on}, customer_id, kind, -taken, 0, rule_id, source_id,
               occurred_at, CAST(occurred_at AS DATE), reason, amount - taken, NULL
        FROM _debits"""
    )
    consume_fifo(ctx, "SELECT customer_id, sum(taken) AS take FROM _debits GROUP BY customer_id")
    ctx.q("DROP TABLE _debits")
    return n


def consume_fifo(ctx: RunContext, totals: str) -> None:
    """Remove per-member totals (customer_id, take) from available lots, oldest first."""
    ctx.q(
        f"""UPDATE lots SET remaining = lots.remaining - t.take FROM (
            WITH tot AS ({totals}),
            l AS (
                SELECT lot_id, customer_id, remaining,
                       coalesce(sum(remaining) OVER (PARTITION BY customer_id
                           ORDER BY earned_on, lot_id
                           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
                FROM lots
                WHERE status = 'available' AND remaining > 0
                  AND customer_id IN (SELECT customer_id FROM tot WHERE take > 0))
            SELECT l.lot_id, least(l.remaining, greatest(0, tot.take - l.before)) AS take
            FROM l JOIN tot USING (customer_id)) t
        WHERE lots.lot_id = t.lot_id AND t.take > 0"""
    )


def inactivity_days_sql(ctx: RunContext) -> str | None:
    """SQL (customer_id, inactive_on) of the day `expiry.inactivity` takes all of a member's
    available points (9.15: the run for D with D - day(last completed order, or join day
    if none) >= N); None without `inactivity`. An order re-exported as cancelled in this
    run is no longer completed (its status changes at the end of the run)."""
    inactivity = ctx.program.duration("expiry", "inactivity")
    if inactivity is None:
        return None
    cancelled = ctx.not_cancelled_now("order_id")
    return f"""SELECT c.customer_id,
               CAST(coalesce(o.last_day, c.join_day) + {inactivity.sql_interval()} AS DATE)
                   AS inactive_on
        FROM customers c
        LEFT JOIN (SELECT customer_id, max(day) AS last_day FROM orders
                   WHERE status = 'completed' {cancelled} GROUP BY customer_id) o
            USING (customer_id)"""


def expire(ctx: RunContext) -> int:
    """Expire what is left of lots past their last day, and everything after inactivity."""
    run_on = ctx.sql_date()
    ctx.q("DROP TABLE IF EXISTS _expire")
    days = inactivity_days_sql(ctx)
    inactive = (
        "FALSE"
        if days is None
        else f"customer_id IN (SELECT customer_id FROM ({days}) x WHERE x.inactive_on <= {run_on})"
    )
    ctx.q(
        f"""CREATE TEMP TABLE _expire AS
        SELECT lot_id, customer_id, remaining,
               CASE WHEN expires_on IS NOT NULL AND expires_on <= {run_on}
                    THEN expires_on ELSE {run_on} END AS on_day,
               CASE WHEN expires_on IS NOT NULL AND expires_on <= {run_on}
                    THEN 'expiry' ELSE 'inactivity' END AS why
        FROM lots
        WHERE status = 'available' AND remaining > 0
          AND ((expires_on IS NOT NULL AND expires_on <= {run_on}) OR {inactive})"""
    )
    n, expired = ctx.q(
        "SELECT count(DISTINCT (customer_id, on_day, why)), coalesce(sum(remaining), 0) "
        "FROM _expire"
    ).fetchone()
    n = int(n)
    ctx.count("expiry", "points", int(expired))
    entry0 = _reserve(ctx, "ledger", n)
    ctx.q(
        f"""INSERT INTO ledger ({LEDGER_COLUMNS})
        SELECT {entry0} + row_number() OVER (ORDER BY customer_id, on_day, why), {run_on},
               customer_id, 'expire', -sum(remaining), 0, NULL, NULL,
               CAST(on_day AS TIMESTAMP), on_day, why, 0, NULL
        FROM _expire GROUP BY customer_id, on_day, why"""
    )
    ctx.q("UPDATE lots SET remaining = 0 FROM _expire e WHERE lots.lot_id = e.lot_id")
    ctx.q("DROP TABLE _expire")
    return n
