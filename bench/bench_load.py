"""Time stage 1 of a run (`load_sources`) on the benchmark exports, statement by statement.

Loads the sources of bench/program.yaml from DATA (default
/tmp/loyalty-bench/data-100000-730, made by ``bench/gen_data.py DATA --customers 100000
--days 730 --start 2024-01-01``) for the run of 2025-12-30 (Europe/Warsaw, PLN) the way
``loyalty run`` does: into a fresh state file (memory_limit 1500MB unless
LOYALTY_MEMORY_LIMIT says otherwise), inside ``BEGIN TRANSACTION``, with the state's
``customers`` table as the known customers. Prints the seconds of every SQL statement the
loader runs (labelled by what it creates, inserts into or reads) with the CPU seconds
(user + sys, all threads) it took, the seconds per table, the totals and the process's
peak RSS. The machine may be shared: compare CPU seconds as well as wall seconds.

``--digest`` also prints, per loaded table, its row count and a hash of its rows in order,
to check that a change of the loader keeps its results (compare the output of two versions).

Usage: python bench/bench_load.py [DATA] [--digest] [--top N] [--sources events,...]
"""

from __future__ import annotations

import argparse
import re
import resource
import sys
import tempfile
import time
from collections import defaultdict
from datetime import date
from pathlib import Path

from loyalty_cli import state
from loyalty_cli.config.model import load_program
from loyalty_cli.engine.sources import load_sources

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = Path("/tmp/loyalty-bench/data-100000-730")
AS_OF = date(2025, 12, 30)

_LABEL_RES = (
    ("create", re.compile(r"^CREATE (?:OR REPLACE )?(?:TEMP )?TABLE (\S+)", re.I)),
    ("insert", re.compile(r"^INSERT INTO (\S+)", re.I)),
    ("update", re.compile(r"^UPDATE (\S+)", re.I)),
    ("delete", re.compile(r"^DELETE FROM (\S+)", re.I)),
    ("alter", re.compile(r"^ALTER TABLE (\S+)", re.I)),
    ("drop", re.compile(r"^DROP TABLE (?:IF EXISTS )?(\S+)", re.I)),
    ("explain", re.compile(r"^EXPLAIN .*?INSERT INTO (\S+)", re.I)),
    ("describe", re.compile(r"^DESCRIBE ", re.I)),
    ("select", re.compile(r"\bFROM\s+([A-Za-z_][A-Za-z0-9_]*)", re.I)),
)


def label(sql: str) -> str:
    """A short name for a statement: what it does and the table it creates, changes or reads."""
    head = " ".join(sql.split())
    for kind, pattern in _LABEL_RES:
        m = pattern.search(head)
        if m:
            return f"{kind} {m.group(1)}" if m.groups() else kind
    return head[:60]


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (every thread)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sys_seconds() -> float:
    """System CPU seconds of this process so far: page faults, spilling, file reads."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


class TimedConnection:
    """A DuckDB connection whose execute() records (label, seconds, sql, cpu) per statement."""

    def __init__(self, con):
        self._con = con
        self.log: list[tuple[str, float, str, float]] = []
        self.peak_mib = 0
        self.peaks: list[tuple[str, int]] = []  # statements after which peak RSS rose

    def execute(self, sql, *args, **kwargs):
        start, cpu = time.perf_counter(), cpu_seconds()
        try:
            return self._con.execute(sql, *args, **kwargs)
        finally:
            seconds = time.perf_counter() - start
            self.log.append((label(sql), seconds, sql, cpu_seconds() - cpu))
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            if peak > self.peak_mib + 20:
                self.peaks.append((label(sql), peak))
            self.peak_mib = max(self.peak_mib, peak)

    def __getattr__(self, name):
        return getattr(self._con, name)


def digest(con, table: str) -> tuple[int, str]:
    """Rows and an order-sensitive hash of a table's rows (in rowid order)."""
    count, h = con.execute(
        f"SELECT count(*), coalesce(bit_xor(hash(n, r)), 0) FROM "
        f"(SELECT row_number() OVER (ORDER BY rowid) AS n, t AS r FROM {table} t)"
    ).fetchone()
    return count, f"{h:016x}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--digest", action="store_true", help="hash every loaded table")
    parser.add_argument("--top", type=int, default=25, help="slowest statements shown")
    parser.add_argument(
        "--sources", help="comma-separated sources to load (customers and orders always)"
    )
    args = parser.parse_args()
    if not (args.data / "events.csv").exists():
        print(
            f"no benchmark data in {args.data}; make it with: python bench/gen_data.py "
            f"{args.data} --customers 100000 --days 730 --start 2024-01-01",
            file=sys.stderr,
        )
        return 2
    program = load_program(HERE / "program.yaml")
    sources = program.data["sources"]
    if args.sources:
        keep = {"customers", "orders", *args.sources.split(",")}
        sources = {name: spec for name, spec in sources.items() if name in keep}

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        raw = state.connect(Path(tmp) / "state.duckdb")
        limit = raw.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        con = TimedConnection(raw)
        raw.execute("BEGIN TRANSACTION")
        start, cpu, system = time.perf_counter(), cpu_seconds(), sys_seconds()
        result = load_sources(
            con,
            sources,
            args.data,
            AS_OF,
            "Europe/Warsaw",
            "PLN",
            known_customer_ids_table="customers",
        )
        total, total_cpu = time.perf_counter() - start, cpu_seconds() - cpu
        total_sys = sys_seconds() - system
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        print(f"load_sources {args.data} as of {AS_OF} (memory_limit {limit})")
        print(f"\n{'statement':<44} {'seconds':>8} {'cpu':>8}")
        slow = sorted(con.log, key=lambda e: -e[1])[: args.top]
        for name, seconds, _, cpu in sorted(slow, key=lambda e: con.log.index(e)):
            print(f"{name:<44} {seconds:8.2f} {cpu:8.2f}")
        per_table: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for name, seconds, _, cpu in con.log:
            per_table[name.split(" ", 1)[-1]][0] += seconds
            per_table[name.split(" ", 1)[-1]][1] += cpu
        print(f"\n{'table (all statements on it)':<44} {'seconds':>8} {'cpu':>8}")
        for name, (seconds, cpu) in sorted(per_table.items(), key=lambda e: -e[1][0])[:15]:
            print(f"{name:<44} {seconds:8.2f} {cpu:8.2f}")
        memory = raw.execute(
            "SELECT sum(memory_usage_bytes), sum(temporary_storage_bytes) FROM duckdb_memory()"
        ).fetchone()
        sql_seconds = sum(e[1] for e in con.log)
        print(f"\nstatements: {len(con.log)}, in SQL {sql_seconds:.2f} s")
        print(
            f"total: {total:.2f} s, cpu {total_cpu:.2f} s "
            f"(user {total_cpu - total_sys:.2f} + sys {total_sys:.2f})"
        )
        print(f"peak RSS: {peak_mib:.0f} MiB")
        print("peak RSS rose after: " + ", ".join(f"{n} ({m} MiB)" for n, m in con.peaks))
        in_memory, spilled = (m / 2**20 for m in memory)
        print(f"DuckDB at the end: {in_memory:.0f} MiB in memory, {spilled:.0f} MiB spilled")
        print("\nsource          read     held  rejected  dupes    loaded")
        for name, c in result.counts.items():
            print(
                f"{name:<12} {c['rows_read']:>9} {c['held_back']:>7} {c['rejected']:>8} "
                f"{c['duplicates_in_export']:>6} {c['loaded']:>9}"
            )
        if args.digest:
            print("\ndigests")
            tables = [*result.tables.values(), result.rejects_table]
            if result.held_back_orders_table:
                tables.append(result.held_back_orders_table)
            for table in tables:
                rows, h = digest(raw, table)
                print(f"{table:<20} {rows:>9} {h}")
        raw.execute("ROLLBACK")
        raw.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
