"""Check at scale: the benchmark shop run whole gives each member what its shards give.

    python bench/check_shards.py [--shards 4] [--nights 1] [--work /tmp/loyalty-bench]

Members are independent in a program without referrals, segments or a coupon pool that
can run short: what a run books for a member depends on that member's rows only. So the
benchmark exports (bench/gen_data.py: 100,000 members, two years) are split by member
into shards, each shard is run on a state of its own, and every member's balances row,
ledger entries, tier changes and redemptions must be the same as in the run of the whole
shop: a cold run of the history, then the nightly runs of the next days.

Small literal tests cannot show what only happens at scale: work tables of millions of
rows spilling to disk, statements running in parallel over many row groups, DuckDB
choosing other plans. A member who gets other numbers in the whole run than in a shard
points at such a fault. The script prints the first differences and exits 1.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import duckdb
from ruamel.yaml import YAML

from loyalty_cli import sampledata
from loyalty_cli.engine.run import run

ROOT = Path(__file__).resolve().parent.parent
# bench/gen_data.py's defaults: 730 days from 2024-01-01
HISTORY_START = dt.date(2024, 1, 1)
HISTORY_LAST = dt.date(2025, 12, 30)
NIGHT = HISTORY_LAST + dt.timedelta(days=1)

# The sources that name their member, and how the others find it (through their order).
BY_MEMBER = ("customers", "orders", "events", "redemptions", "adjustments")
BY_ORDER = ("order_items", "returns")


def independent_program(src: Path, dest: Path) -> None:
    """bench/program.yaml without what ties members together: the referral bonus (two
    members), segments (scores relative to everyone) and coupon codes (random, and a pool
    shared by all). The challenges come first, and the first one nobody reaches, so the
    bonus step starts with an empty insert (as on a quiet night) followed by 339,319
    grants."""
    yaml = YAML()
    data = yaml.load(src.read_text())
    nobody = {
        "id": "nobody",
        "trigger": "challenge",
        "period": "week",
        "on": "order_item",
        "when": "item.quantity < 0",
        "goal": {"count": 1},
        "points": 5,
    }
    kept = [b for b in data["bonuses"] if b["trigger"] != "referral"]
    challenges = [b for b in kept if b["trigger"] == "challenge"]
    data["bonuses"] = [nobody, *challenges, *(b for b in kept if b["trigger"] != "challenge")]
    data.pop("segments", None)
    for reward in data["rewards"]:
        reward.pop("coupon_pool", None)
    data.pop("coupons", None)
    with dest.open("w") as fh:
        yaml.dump(data, fh)


def _read(data: Path, source: str) -> str:
    path = str(data / f"{source}.csv").replace("'", "''")
    return f"read_csv('{path}', header = true, all_varchar = true)"


def order_shards(con: duckdb.DuckDBPyConnection, folders: list[Path], shards: int) -> None:
    """`order_shard`: the shard of every order of the export folders (its member's)."""
    orders = " UNION ALL ".join(
        f"SELECT order_id, customer_id FROM {_read(folder, 'orders')}" for folder in folders
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE order_shard AS "
        f"SELECT order_id, hash(customer_id) % {shards} AS k FROM ({orders})"
    )


def split(data: Path, dest: Path, shards: int, con: duckdb.DuckDBPyConnection) -> list[Path]:
    """Write each shard's exports: the rows of members whose hash falls in it. Items and
    returns go with their order (`order_shard`: every order of the history and the night,
    as a night's returns are of earlier orders)."""
    folders = [dest / f"shard-{k}" for k in range(shards)]
    for folder in folders:
        folder.mkdir(parents=True)

    def read(source: str) -> str:
        return _read(data, source)

    shard_of = f"hash(customer_id) % {shards}"
    for source in (*BY_MEMBER, *BY_ORDER):
        if not (data / f"{source}.csv").exists():
            continue
        for k, folder in enumerate(folders):
            if source in BY_MEMBER:
                rows = f"SELECT * FROM {read(source)} WHERE {shard_of} = {k}"
            else:
                rows = (
                    f"SELECT s.* FROM {read(source)} s "
                    f"WHERE s.order_id IN (SELECT order_id FROM order_shard WHERE k = {k})"
                )
            target = str(folder / f"{source}.csv").replace("'", "''")
            # An order's item lines are numbered by their place in the export: on one
            # thread the join keeps the file's order.
            con.execute("SET threads = 1" if source in BY_ORDER else "RESET threads")
            con.execute(f"COPY ({rows}) TO '{target}' (HEADER, FORMAT csv)")
    return folders


def outputs(out: Path, day: dt.date) -> dict[str, Counter]:
    """The files of a run, as multisets of rows (entry order differs between runs)."""

    def rows(name: str, drop: tuple[str, ...] = ()) -> Counter:
        with (out / day.isoformat() / name).open(newline="") as fh:
            return Counter(
                tuple(v for k, v in row.items() if k not in drop) for row in csv.DictReader(fh)
            )

    return {
        "balances.csv": rows("balances.csv"),
        "ledger.csv": rows("ledger.csv"),
        "tier_changes.csv": rows("tier_changes.csv"),
        "redemptions.csv": rows("redemptions.csv", drop=("coupon_code",)),
        # Shards number their lines differently; what was rejected, and why, must agree.
        "rejects.csv": rows("rejects.csv", drop=("line",)),
    }


def run_days(program: Path, history: Path, nights: list[Path], work: Path) -> dict:
    """The cold run of the history, then one run per night; each day's files."""
    work.mkdir(parents=True, exist_ok=True)
    state = work / "state.duckdb"
    out = work / "out"
    run(program, history, HISTORY_LAST, state, out)
    days = [HISTORY_LAST]
    for i, folder in enumerate(nights):
        days.append(NIGHT + dt.timedelta(days=i))
        run(program, folder, days[-1], state, out)
    return {day: outputs(out, day) for day in days}


def compare(whole: dict, parts: list[dict]) -> list[str]:
    problems = []
    for day, files in whole.items():
        for name, rows in files.items():
            summed: Counter = Counter()
            for part in parts:
                summed.update(part[day][name])
            if summed != rows:
                only_whole = list((rows - summed).elements())[:3]
                only_shards = list((summed - rows).elements())[:3]
                problems.append(
                    f"{day} {name}: {sum((rows - summed).values())} rows only in the whole "
                    f"run, e.g. {only_whole}; {sum((summed - rows).values())} only in the "
                    f"shards, e.g. {only_shards}"
                )
            else:
                print(f"  {day} {name}: {sum(rows.values()):,} rows agree")
    return problems


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--nights", type=int, default=1, help="nightly runs after the cold one")
    ap.add_argument("--work", type=Path, default=Path("/tmp/loyalty-bench"))
    args = ap.parse_args()
    history = args.work / "data-100000-730"
    if not (history / "events.csv").exists():
        sys.exit(f"no benchmark exports in {args.work}: run bench/bench_run.py first")
    # The nights' folders as bench/bench_run.py names (and makes) them.
    nights = []
    for i in range(args.nights):
        day = NIGHT + dt.timedelta(days=i)
        folder = args.work / (f"nightly-{day}" if i == 0 else f"nightly-100000-{day}")
        if not (folder / "orders.csv").exists():
            sampledata.generate_day(folder, day, **sampledata.BENCH, start=HISTORY_START)
        nights.append(folder)
    check = args.work / "shards"
    shutil.rmtree(check, ignore_errors=True)
    check.mkdir(parents=True)
    program = check / "program.yaml"
    independent_program(ROOT / "bench" / "program.yaml", program)

    t = time.perf_counter()
    con = duckdb.connect()
    order_shards(con, [history, *nights], args.shards)
    histories = split(history, check / "history", args.shards, con)
    # Each shard's folders, one per night.
    shard_nights = [
        list(n)
        for n in zip(
            *(split(f, check / f"night-{i}", args.shards, con) for i, f in enumerate(nights)),
            strict=True,
        )
    ]
    con.close()
    print(f"split into {args.shards} shards: {time.perf_counter() - t:.1f} s")

    t = time.perf_counter()
    whole = run_days(program, history, nights, check / "whole")
    print(
        f"whole shop, cold and nightly runs and their files read: {time.perf_counter() - t:.1f} s"
    )
    parts = []
    for k, (h, n) in enumerate(zip(histories, shard_nights, strict=True)):
        t = time.perf_counter()
        parts.append(run_days(program, h, n, check / f"run-{k}"))
        print(f"shard {k}: {time.perf_counter() - t:.1f} s")

    problems = compare(whole, parts)
    shutil.rmtree(check, ignore_errors=True)
    if problems:
        print("MEMBERS DIFFER between the whole run and its shards:")
        for p in problems:
            print("  " + p)
        sys.exit(1)
    print("every member's results agree")


if __name__ == "__main__":
    main()
