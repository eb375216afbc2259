"""Time the least work any first run over the benchmark exports must do, with no checks.

A first `loyalty run` of bench/program.yaml over the benchmark history has to read the
exports, write one ledger entry per credited row into the state file, group the credits
into lots, write `ledger.csv` and commit. This script does only that, the plainest way
DuckDB allows, on the same data, the same state schema and the same memory cap:

- the CSV files are read with their types declared and nothing checked: no time zones,
  no rejects, no keys, no duplicates, no line numbers;
- every event of a crediting type earns its points, with no caps; every completed order
  its total and every item tagged `new` its value, as pending points, with no tier
  multiplier;
- the lots are one group per member and expiry quarter, with no FIFO, bonuses,
  returns, redemptions, expiry, tiers, segments or other output files.

So its total is a floor under the cold run of `bench/bench_run.py`, on this machine: the
part of that run no change to the engine can remove while a first run writes what it
writes today. Each step's wall and CPU seconds (user + sys, all threads) are printed.

Usage: python bench/bench_floor.py [DATA] [--threads N]
  DATA defaults to /tmp/loyalty-bench/data-100000-730 (bench/gen_data.py makes it).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

from loyalty_cli import state
from loyalty_cli.columns import DUCKDB_TYPES, SOURCE_COLUMNS

DEFAULT_DATA = Path("/tmp/loyalty-bench/data-100000-730")

# bench/program.yaml's event rules, without their caps: type -> points.
EVENT_POINTS = {
    "page_view": 1,
    "email_open": 2,
    "newsletter_read": 2,
    "product_like": 1,
    "unsubscribe": -50,
    "cart_abandoned": -5,
}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _csv(data: Path, source: str) -> str:
    """read_csv of a source's file with the data contract's columns and types; lists and
    JSON are read as text (the floor parses nothing it does not need)."""
    types = {
        column: "VARCHAR" if kind in ("list", "json") else DUCKDB_TYPES[kind]
        for column, (kind, _required) in SOURCE_COLUMNS[source].items()
    }
    cols = ", ".join(f"'{k}': '{v}'" for k, v in types.items())
    path = data / f"{source}.csv"
    return f"read_csv('{path}', columns={{{cols}}}, header=true, auto_detect=false)"


def steps(data: Path, csv_out: Path) -> list[tuple[str, str]]:
    """The floor's statements, in order, each with a label."""
    events, orders, items = (_csv(data, s) for s in ("events", "orders", "order_items"))
    case = " ".join(f"WHEN '{t}' THEN {p}" for t, p in EVENT_POINTS.items())
    types = ", ".join(f"'{t}'" for t in EVENT_POINTS)
    return [
        ("read events.csv", f"CREATE TEMP TABLE ev AS SELECT * FROM {events}"),
        ("read orders.csv", f"CREATE TEMP TABLE o AS SELECT * FROM {orders}"),
        ("read order_items.csv", f"CREATE TEMP TABLE i AS SELECT * FROM {items}"),
        (
            "ledger: order and item credits",
            """INSERT INTO ledger
            SELECT id, DATE '2025-12-30', customer_id, 'pending', 0, pts,
                   rule_id, order_id, ordered_at, CAST(ordered_at AS DATE), NULL, NULL, NULL
            FROM (SELECT o.rowid AS id, o.customer_id, 'base' AS rule_id, o.order_id,
                         o.ordered_at, CAST(floor(o.total) AS BIGINT) AS pts
                  FROM o WHERE o.status = 'completed'
                  UNION ALL
                  SELECT 5000000 + i.rowid, o.customer_id, 'new-collection', o.order_id,
                         o.ordered_at,
                         CAST(floor(i.unit_price * i.quantity) AS BIGINT)
                  FROM i JOIN o USING (order_id)
                  WHERE o.status = 'completed' AND contains(i.tags, 'new'))
            WHERE pts <> 0""",
        ),
        (
            "ledger: event credits",
            f"""INSERT INTO ledger
            SELECT 10000000 + rowid, DATE '2025-12-30', customer_id, 'earn',
                   CASE type {case} END, 0, type, event_id, occurred_at,
                   CAST(occurred_at AS DATE), NULL, NULL, NULL
            FROM ev WHERE type IN ({types})""",
        ),
        (
            "lots: one per member and expiry quarter",
            """INSERT INTO lots
            SELECT row_number() OVER (), customer_id, earned_on, earned_on, expires_on,
                   points, points, 'available', NULL, 'points', NULL, DATE '2025-12-30'
            FROM (SELECT customer_id, min(occurred_on) AS earned_on,
                         CAST(last_day(date_trunc('quarter', min(occurred_on)
                                                   + INTERVAL 365 DAY) + INTERVAL 2 MONTH)
                              AS DATE) AS expires_on,
                         sum(points + pending) AS points
                  FROM ledger
                  GROUP BY customer_id, date_trunc('quarter', occurred_on))""",
        ),
        (
            "ledger.csv",
            f"""COPY (SELECT customer_id, kind, points, pending, rule_id, source_id,
                            occurred_on, reason, shortfall
                     FROM ledger ORDER BY entry_id) TO '{csv_out}' (HEADER)""",
        ),
        ("commit", "COMMIT"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if not (args.data / "events.csv").exists():
        print(
            f"{args.data / 'events.csv'} not found: make the data with bench/gen_data.py",
            file=sys.stderr,
        )
        return 2
    limit = state.memory_limit()
    with tempfile.TemporaryDirectory(prefix="loyalty-floor-") as tmp:
        path = Path(tmp) / "floor.duckdb"
        con = state.connect(path)  # the state's schema, under LOYALTY_MEMORY_LIMIT
        if args.threads:
            con.execute(f"SET threads = {int(args.threads)}")
        con.execute("CHECKPOINT")
        con.execute("BEGIN TRANSACTION")
        total_wall = total_cpu = 0.0
        threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
        print(f"{args.data}, {threads} threads, memory cap {limit}")
        print(f"{'wall s':>7} {'cpu s':>7}  step")
        for name, sql in steps(args.data, Path(tmp) / "ledger.csv"):
            w, c = time.perf_counter(), _cpu()
            con.execute(sql)
            w, c = time.perf_counter() - w, _cpu() - c
            total_wall += w
            total_cpu += c
            print(f"{w:7.2f} {c:7.2f}  {name}")
        rows, points = con.execute("SELECT count(*), sum(points + pending) FROM ledger").fetchone()
        w, c = time.perf_counter(), _cpu()
        con.close()
        w, c = time.perf_counter() - w, _cpu() - c
        total_wall += w
        total_cpu += c
        print(f"{w:7.2f} {c:7.2f}  close (checkpoint)")
        size = path.stat().st_size / 2**20
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{total_wall:7.2f} {total_cpu:7.2f}  total")
    print(f"{rows:,} ledger entries ({points:,} points), state file {size:,.0f} MiB")
    print(f"peak RSS {peak:,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
