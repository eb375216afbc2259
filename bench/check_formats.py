"""Check at scale: the benchmark shop gives the same files whatever its exports' format.

    python bench/check_formats.py [--one-thread] [--work /tmp/loyalty-bench]

The benchmark exports (bench/gen_data.py: 100,000 members, two years, CSV) are written
again as Parquet and as JSON lines (event properties as nested objects), and a cold run
of bench/program.yaml over each must write the same `balances.csv`, `ledger.csv`,
`tier_changes.csv`, `segments.csv`, `rejects.csv` and `redemptions.csv` (without the
coupon codes, which are random) byte for byte. With `--one-thread`, a run of the CSV
exports on one thread must too.

The loaders of the three formats number rows and keep their order differently, and over
many row groups DuckDB reads files in parallel: a row taken out of order changes entry
ids, item numbers and ties. Small tests (tests/test_engine_properties.py) cannot show
that. The script prints the files that differ and exits 1.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import time
from pathlib import Path

import duckdb

from loyalty_cli import state
from loyalty_cli.engine.run import run

ROOT = Path(__file__).resolve().parent.parent
LAST = dt.date(2025, 12, 30)  # the last day of bench/gen_data.py's default history
SOURCES = ("customers", "orders", "order_items", "returns", "events", "redemptions", "adjustments")
FILES = ("balances.csv", "ledger.csv", "tier_changes.csv", "segments.csv", "rejects.csv")


def convert(data: Path, dest: Path, fmt: str) -> None:
    """The CSV exports as `fmt` (parquet or jsonl), values as the CSV's text."""
    dest.mkdir(parents=True)
    con = duckdb.connect()
    for source in SOURCES:
        path = str(data / f"{source}.csv").replace("'", "''")
        rows = f"SELECT * FROM read_csv('{path}', header = true, all_varchar = true)"
        if fmt == "jsonl" and source == "events":
            rows = (
                "SELECT * REPLACE (CASE WHEN properties IS NOT NULL THEN json(properties) END "
                f"AS properties) FROM ({rows})"
            )
        target = str(dest / f"{source}.{fmt}").replace("'", "''")
        kind = "parquet" if fmt == "parquet" else "json"
        con.execute(f"COPY ({rows}) TO '{target}' (FORMAT {kind})")
    con.close()


def program_for(fmt: str, dest: Path) -> Path:
    text = (ROOT / "bench" / "program.yaml").read_text()
    path = dest / f"program-{fmt}.yaml"
    path.write_text(text.replace(".csv}", f".{fmt}}}"))
    return path


def cold_run(program: Path, data: Path, work: Path, threads: int | None = None) -> Path:
    """A cold run over the history; the folder of its files."""
    work.mkdir(parents=True)
    configure = state.configure
    if threads is not None:

        def with_threads(con: duckdb.DuckDBPyConnection) -> None:
            configure(con)
            con.execute(f"SET threads = {threads}")

        state.configure = with_threads
    try:
        t = time.perf_counter()
        run(program, data, LAST, work / "state.duckdb", work / "out")
        print(f"  {work.name}: {time.perf_counter() - t:.1f} s")
    finally:
        state.configure = configure
    return work / "out" / LAST.isoformat()


def differences(a: Path, b: Path) -> list[str]:
    found = [name for name in FILES if (a / name).read_bytes() != (b / name).read_bytes()]

    def redemptions(folder: Path) -> list[str]:
        lines = (folder / "redemptions.csv").read_text().splitlines()
        return [line.rsplit(",", 1)[0] for line in lines]  # without coupon_code

    if redemptions(a) != redemptions(b):
        found.append("redemptions.csv")
    return found


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--one-thread", action="store_true", help="also run the CSV on one thread")
    ap.add_argument("--work", type=Path, default=Path("/tmp/loyalty-bench"))
    args = ap.parse_args()
    data = args.work / "data-100000-730"
    if not (data / "events.csv").exists():
        sys.exit(f"no benchmark exports in {args.work}: run bench/bench_run.py first")
    check = args.work / "formats"
    shutil.rmtree(check, ignore_errors=True)
    check.mkdir(parents=True)
    try:
        t = time.perf_counter()
        for fmt in ("parquet", "jsonl"):
            convert(data, check / f"data-{fmt}", fmt)
        print(f"exports written as Parquet and JSON lines: {time.perf_counter() - t:.1f} s")
        csv_files = cold_run(ROOT / "bench" / "program.yaml", data, check / "csv")
        others = {
            fmt: cold_run(program_for(fmt, check), check / f"data-{fmt}", check / fmt)
            for fmt in ("parquet", "jsonl")
        }
        if args.one_thread:
            others["csv on one thread"] = cold_run(
                ROOT / "bench" / "program.yaml", data, check / "csv-1-thread", threads=1
            )
        problems = {name: differences(csv_files, files) for name, files in others.items()}
    finally:
        shutil.rmtree(check, ignore_errors=True)
    failed = False
    for name, files in problems.items():
        if files:
            failed = True
            print(f"{name}: differs from the CSV run in {', '.join(files)}")
        else:
            print(f"{name}: the same files as the CSV run")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
