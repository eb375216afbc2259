"""Time the segments step on a large synthetic base.

Builds an in-memory state with N members (default 1,000,000) and their orders, generated in
DuckDB from range() (no Python loop): each member first orders on a day in the three years
before D and then orders following the BG/NBD story (a purchase rate of their own, leaving
for good after a repeat purchase with a probability of their own); one order in twenty is
half returned. Then runs
`apply_segments` for a program with an rfm segment, a BG/NBD churn segment and a clv
segment, and prints the seconds of each part:

- order_days: completed orders grouped by member and day (shared by all segments),
- member_summary: frequency, recency, age and mean repeat spend per member (for the models),
- churn.fit: the BG/NBD fit (done once, reused by clv), clv.spend_fit: the Gamma-Gamma fit,
- rfm, churn, clv: each segment from start to end (scores or model values, groups, entries
  and exits, the stored membership), including the shared parts it was the first to need.

The step runs twice: the first run records every member as entering; the second is a rerun
of the same day, which must record nothing new.

Usage: python bench/bench_segments.py [--members N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

from loyalty_cli import state
from loyalty_cli.config.model import Program, with_defaults
from loyalty_cli.engine.context import RunContext
from loyalty_cli.engine.segments import apply_segments, refresh_order_days

D = dt.date(2026, 3, 31)

PROGRAM = {
    "version": 1,
    "program": {"id": "bench", "name": "Bench", "currency": "PLN", "timezone": "Europe/Warsaw"},
    "segments": [
        {
            "id": "rfm",
            "type": "rfm",
            "window": "730 days",
            "scores": 5,
            "groups": {
                "champions": "r >= 4 and f >= 4 and m >= 4",
                "at_risk": "r <= 2 and f >= 3",
                "hibernating": "r <= 2 and f <= 2",
                "others": "true",
            },
        },
        {
            "id": "churn",
            "type": "churn",
            "model": "bgnbd",
            "levels": {"low": 0, "medium": 0.5, "high": 0.8},
        },
        {"id": "clv", "type": "clv", "horizon": "365 days", "top_share": 0.1},
    ],
}


def build_state(members: int):
    """An in-memory state with `members` customers, their orders and the run's views."""
    con = state.connect(None)
    d = f"DATE '{D.isoformat()}'"

    # u(...): a deterministic pseudo-random number in (0, 1) from a hash of its arguments.
    def u(*args: str) -> str:
        return f"((hash({', '.join(args)}) % 1000000) + 0.5) / 1e6"

    # The BG/NBD story: a member buys at a rate of their own (log-normal, median one order
    # every 40 days) and leaves after each repeat purchase with a probability of their own
    # (p ~ 0.6 * u^2, so some stay for long); K = repeat purchases before leaving.
    con.execute(
        f"""CREATE TEMP TABLE bench_members AS
        SELECT i, printf('c%07d', i) AS customer_id,
               {d} - CAST(floor({u("i", "'first'")} * 1095) AS INTEGER) AS first_day,
               exp(-ln(40) + 1.2 * sqrt(-2 * ln({u("i", "'z1'")}))
                   * cos(2 * pi() * {u("i", "'z2'")})) AS rate,
               least(60, CAST(ceil(ln({u("i", "'k'")})
                   / ln(1 - (0.01 + 0.6 * pow({u("i", "'p'")}, 2)))) AS INTEGER)) AS k,
               20 + {u("i", "'spend'")} * 80 AS usual_spend
        FROM range({int(members)}) t(i)"""
    )
    con.execute(
        """INSERT INTO customers (customer_id, joined_at, join_day)
        SELECT customer_id, first_day, first_day FROM bench_members"""
    )
    # Purchase j > 0 comes an exponential gap after purchase j - 1; purchases after D wait.
    con.execute(
        f"""INSERT INTO orders (order_id, customer_id, ordered_at, day, total, status, returned)
        SELECT order_id, customer_id, day, day, total, 'completed',
               CASE WHEN hash(order_id, 'ret') % 20 = 0 THEN round(total / 2, 2) ELSE 0 END
        FROM (
            SELECT customer_id || '-' || j AS order_id, customer_id,
                   first_day + CAST(floor(offset_days) AS INTEGER) AS day,
                   CAST(usual_spend * (0.5 + {u("i", "j", "'t'")}) AS DECIMAL(18,2)) AS total
            FROM (
                SELECT m.i, j, m.customer_id, m.first_day, m.usual_spend,
                       sum(CASE WHEN j = 0 THEN 0 ELSE -ln({u("m.i", "j")}) / m.rate END)
                           OVER (PARTITION BY m.i ORDER BY j) AS offset_days
                FROM bench_members m, range(m.k + 1) o(j)))
        WHERE day <= {d}"""
    )
    con.execute("DROP TABLE bench_members")
    con.execute("CREATE TEMP VIEW cust_view AS SELECT * EXCLUDE (extra) FROM customers")
    con.execute(
        f"""CREATE TEMP TABLE member_view AS
        SELECT c.customer_id, 'bronze' AS tier, 0 AS balance, 0 AS pending,
               CAST({d} - o.last_day AS BIGINT) AS days_since_last_order,
               coalesce(o.n, 0) AS orders_count,
               coalesce(o.spend, CAST(0 AS DECIMAL(18,2))) AS lifetime_spend,
               CAST(NULL AS INTEGER) AS r, CAST(NULL AS INTEGER) AS f, CAST(NULL AS INTEGER) AS m
        FROM customers c
        LEFT JOIN (SELECT customer_id, max(day) AS last_day, count(*) AS n,
                          sum(greatest(total - returned, 0)) AS spend
                   FROM orders GROUP BY customer_id) o USING (customer_id)"""
    )
    return con


def timed_run(con, program: Program) -> tuple[RunContext, dict[str, float], float]:
    ctx = RunContext(con, program, D)
    # The order days a run keeps up to date (a first run computes them for everyone).
    refresh_order_days(ctx, everyone=True)
    start = time.perf_counter()
    con.execute("BEGIN TRANSACTION")
    parts = apply_segments(ctx)
    con.execute("COMMIT")
    return ctx, parts, time.perf_counter() - start


def report(title: str, parts: dict[str, float], total: float) -> None:
    print(f"\n{title}: {total:.2f} s")
    for name in (
        "order_days",
        "member_summary",
        "churn.fit",
        "clv.spend_fit",
        "rfm",
        "churn",
        "clv",
    ):
        if name in parts:
            print(f"  {name:<16} {parts[name]:7.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=1_000_000)
    args = parser.parse_args()
    program = Program(Path("bench.yaml"), with_defaults(PROGRAM))

    start = time.perf_counter()
    con = build_state(args.members)
    n_orders = con.execute("SELECT count(*) FROM orders").fetchone()[0]
    print(
        f"{args.members:,} members, {n_orders:,} orders generated in "
        f"{time.perf_counter() - start:.2f} s"
    )

    ctx, parts, total = timed_run(con, program)
    report("first run (everyone enters)", parts, total)
    changes = con.execute("SELECT count(*) FROM segment_changes").fetchone()[0]
    print(f"  {changes:,} entries recorded; warnings: {ctx.warnings or 'none'}")
    for sid, fit in ctx.models.items():
        params = ", ".join(f"{k} {v:.4g}" for k, v in fit["params"].items())
        spend = fit.get("spend")
        extra = ("; " + ", ".join(f"{k} {v:.4g}" for k, v in spend.items())) if spend else ""
        print(f"  {sid}: {params}{extra}")
    print(
        "  members per group: "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(ctx.counts["segments"].items()))
    )

    ctx, parts, total = timed_run(con, program)
    report("rerun of the same day", parts, total)
    again = con.execute("SELECT count(*) FROM segment_changes").fetchone()[0]
    print(f"  changes before {changes:,}, after {again:,}")
    con.close()


if __name__ == "__main__":
    main()
