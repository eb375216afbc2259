"""Step 5 of a run: redemption requests, accepted or rejected with a reason.

SPEC 4 `rewards`, 5 step 5, 7, 8 (redemptions.csv), 9.10, 9.12, 9.19. Requests are taken
in `requested_at` order, ties by redemption_id. A request is accepted when, in this order:

1. the reward exists in the program            else `unknown_reward`
2. the member's tier is at least `min_tier`    else `tier_too_low`
3. the available balance covers `cost`         else `insufficient_points`
4. the reward's coupon pool has a free code    else `pool_exhausted`

The tier is the one at the start of the run's day (tiers.member_tiers_sql: the stored
tier, or for a rerun of the day the tier its change started from); the balance is the
one at that moment, i.e. after the member's earlier accepted requests of the run. A
rejection is final and takes no points. An accepted request takes `cost` points first-in
first-out (a `redeem` ledger entry, rule_id = reward id, source_id = redemption_id) and,
with a pool, the pool's next free code.

A request's outcome depends on the member's own earlier requests (the balance) and on the
earlier requests for the same coupon pool (the codes left), whoever made them. Requests
are decided in waves, set-based: a wave takes each member's earliest undecided request,
unless an earlier request for its pool is still undecided (then it waits for a later
wave). The globally earliest undecided request is always taken, so every wave decides at
least one, and there are about as many waves as the most requests one member made in the
run. Pool codes within a wave go to the requests in (requested_at, redemption_id) order.
"""

from __future__ import annotations

from loyalty_cli.engine import coupons, ledger
from loyalty_cli.engine.context import RunContext
from loyalty_cli.engine.tiers import member_tiers_sql

REASONS = ("unknown_reward", "tier_too_low", "insufficient_points", "pool_exhausted")

# `assigned_for` of a code given to a redemption: keeps it apart from workflow requests.
REQUEST_PREFIX = "redemption:"


def _rewards_table(ctx: RunContext) -> None:
    """`_rewards` (reward_id, name, cost, pool_id, min_rank) and `_tier_rank` (tier, rank).

    Built from parameters, so ids and names from the program never enter SQL text.
    """
    levels = [lvl.get("id") for lvl in ctx.program.levels]
    rank = {tier: i for i, tier in enumerate(levels)}
    rewards = ctx.program.data.get("rewards") or []
    ctx.q("DROP TABLE IF EXISTS _rewards")
    ctx.q(
        """CREATE TEMP TABLE _rewards AS
        SELECT unnest(CAST($1 AS VARCHAR[])) AS reward_id,
               unnest(CAST($2 AS VARCHAR[])) AS name,
               unnest(CAST($3 AS BIGINT[])) AS cost,
               unnest(CAST($4 AS VARCHAR[])) AS pool_id,
               unnest(CAST($5 AS INTEGER[])) AS min_rank""",
        [
            [str(r["id"]) for r in rewards],
            [str(r["name"]) for r in rewards],
            [int(r["cost"]) for r in rewards],
            [r.get("coupon_pool") for r in rewards],
            [rank.get(r.get("min_tier"), 0) for r in rewards],
        ],
    )
    ctx.q("DROP TABLE IF EXISTS _tier_rank")
    ctx.q(
        """CREATE TEMP TABLE _tier_rank AS
        SELECT unnest(CAST($1 AS VARCHAR[])) AS tier, unnest(CAST($2 AS INTEGER[])) AS rank""",
        [[t for t in levels if t is not None], [rank[t] for t in levels if t is not None]],
    )


def apply_redemptions(ctx: RunContext) -> None:
    """Decide every request of `new_redemptions`, take points and codes, remember them."""
    _rewards_table(ctx)
    ctx.q("DROP TABLE IF EXISTS _redeem")
    # Static checks first (reward, tier); `status` stays NULL while a request is undecided.
    ctx.q(
        f"""CREATE TEMP TABLE _redeem AS
        SELECT n.redemption_id, n.customer_id, n.reward_id, n.requested_at,
               w.name, w.cost, w.pool_id, CAST(NULL AS INTEGER) AS wave,
               CASE WHEN w.reward_id IS NULL
                      OR coalesce(t.rank, 0) < w.min_rank THEN 'rejected' END AS status,
               CASE WHEN w.reward_id IS NULL THEN 'unknown_reward'
                    WHEN coalesce(t.rank, 0) < w.min_rank THEN 'tier_too_low' END AS reason,
               CAST(NULL AS VARCHAR) AS coupon_code
        FROM new_redemptions n
        LEFT JOIN _rewards w ON w.reward_id = n.reward_id
        LEFT JOIN ({member_tiers_sql(ctx, "SELECT customer_id FROM new_redemptions")}) m
               ON m.customer_id = n.customer_id
        LEFT JOIN _tier_rank t ON t.tier = coalesce(m.tier, ?)""",
        [ctx.program.lowest_tier],
    )
    pools = [
        r[0]
        for r in ctx.q(
            "SELECT DISTINCT pool_id FROM _redeem WHERE status IS NULL AND pool_id IS NOT NULL "
            "ORDER BY pool_id"
        ).fetchall()
    ]
    for pool_id in pools:
        coupons.ensure_pool(ctx.con, ctx.program, pool_id, ctx.warnings)
    valid_days = {p: coupons.pool_config(ctx.program, p).get("valid_days") for p in pools}

    # Pools with fewer free codes than requests: only there can an earlier request take
    # the last code, so only there must a member's request wait for earlier ones.
    short = [
        pool_id
        for pool_id in pools
        if ctx.scalar(
            "SELECT count(*) FROM _redeem WHERE status IS NULL AND pool_id = $1", [pool_id]
        )
        > coupons.pool_free(ctx.con, pool_id, ctx.as_of)
    ]
    wave = 0
    while ctx.scalar("SELECT count(*) FROM _redeem WHERE status IS NULL"):
        wave += 1
        _wave(ctx, wave, pools, short, valid_days)

    ctx.q(
        f"""INSERT INTO redemptions
        SELECT redemption_id, customer_id, reward_id, requested_at, status, reason,
               coupon_code, cost, {ctx.sql_date()}
        FROM _redeem"""
    )
    for status, reason, n, points in ctx.q(
        """SELECT status, reason, count(*), coalesce(sum(cost), 0) FROM _redeem
        GROUP BY ALL ORDER BY ALL"""
    ).fetchall():
        if status == "accepted":
            ctx.count("redemptions", "accepted", n)
            ctx.count("redemptions", "points", points)
        else:
            ctx.count("redemptions", "rejected", n)
            ctx.count("redemptions", f"rejected.{reason}", n)
    ctx.q("DROP TABLE _redeem")
    ctx.q("DROP TABLE _rewards")
    ctx.q("DROP TABLE _tier_rank")


def _wave(ctx: RunContext, k: int, pools: list[str], short: list[str], valid_days: dict) -> None:
    """The requests that can be decided now (see the module's docstring; only requests for
    a pool in `short` can have to wait): balance, then pool, then the debit of the
    accepted."""
    ctx.con.execute(
        """UPDATE _redeem SET wave = $k
        FROM (
            WITH open AS (SELECT * FROM _redeem WHERE status IS NULL),
            heads AS (
                SELECT * FROM open
                QUALIFY row_number() OVER (PARTITION BY customer_id
                                           ORDER BY requested_at, redemption_id) = 1),
            waiting AS (  -- per pool, its earliest open request that is no member's head
                SELECT pool_id, min(requested_at) AS at,
                       arg_min(redemption_id, (requested_at, redemption_id)) AS id
                FROM open
                WHERE list_contains(CAST($short AS VARCHAR[]), pool_id)
                  AND redemption_id NOT IN (SELECT redemption_id FROM heads)
                GROUP BY pool_id)
            SELECT h.redemption_id FROM heads h LEFT JOIN waiting w USING (pool_id)
            WHERE w.pool_id IS NULL OR h.requested_at < w.at
               OR (h.requested_at = w.at AND h.redemption_id < w.id)) x
        WHERE _redeem.redemption_id = x.redemption_id""",
        {"k": k, "short": short},
    )
    ctx.con.execute(
        """UPDATE _redeem SET status = 'rejected', reason = 'insufficient_points'
        FROM (SELECT r.redemption_id FROM _redeem r
              LEFT JOIN (SELECT customer_id, sum(remaining) AS balance FROM lots
                         WHERE status = 'available' AND remaining > 0
                           AND customer_id IN (SELECT customer_id FROM _redeem
                                               WHERE wave = $k AND status IS NULL)
                         GROUP BY customer_id) b USING (customer_id)
              WHERE r.wave = $k AND r.status IS NULL AND coalesce(b.balance, 0) < r.cost) x
        WHERE _redeem.redemption_id = x.redemption_id""",
        {"k": k},
    )
    for pool_id in pools:
        ctx.q("DROP TABLE IF EXISTS _pool_requests")
        ctx.con.execute(
            """CREATE TEMP TABLE _pool_requests AS
            SELECT customer_id, $prefix || redemption_id AS request_id, requested_at AS ord
            FROM _redeem WHERE wave = $k AND status IS NULL AND pool_id = $pool""",
            {"k": k, "pool": pool_id, "prefix": REQUEST_PREFIX},
        )
        if not ctx.scalar("SELECT count(*) FROM _pool_requests"):
            continue
        given = coupons.assign_codes(
            ctx.con,
            pool_id,
            "SELECT * FROM _pool_requests",
            ctx.as_of,
            valid_days=valid_days.get(pool_id),
        )
        ctx.count("coupons", f"{pool_id}.assigned", given)
        ctx.con.execute(
            """UPDATE _redeem SET coupon_code = c.code
            FROM coupon_codes c
            WHERE c.pool_id = $pool AND c.assigned_for = $prefix || _redeem.redemption_id
              AND _redeem.wave = $k AND _redeem.status IS NULL AND _redeem.pool_id = $pool""",
            {"k": k, "pool": pool_id, "prefix": REQUEST_PREFIX},
        )
        ctx.con.execute(
            """UPDATE _redeem SET status = 'rejected', reason = 'pool_exhausted'
            WHERE wave = $k AND status IS NULL AND pool_id = $pool AND coupon_code IS NULL""",
            {"k": k, "pool": pool_id},
        )
        ctx.q("DROP TABLE _pool_requests")
    ctx.con.execute(
        "UPDATE _redeem SET status = 'accepted' WHERE wave = $k AND status IS NULL", {"k": k}
    )
    ledger.debit(
        ctx,
        f"""SELECT customer_id, 'redeem' AS kind, cost AS amount, reward_id AS rule_id,
                  redemption_id AS source_id, requested_at AS occurred_at, name AS reason
           FROM _redeem WHERE wave = {int(k)} AND status = 'accepted'""",
    )
