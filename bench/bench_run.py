"""Benchmark: a cold `loyalty run` over two years of history, then one nightly day.

    python bench/bench_run.py [--customers 100000] [--days 730] [--work /tmp/loyalty-bench]

Generates the exports once (bench/gen_data.py), then times in fresh processes:
1. the cold run: a fresh state, all history up to the last day, in one run;
2. the nightly run: the next day, from a folder holding only that day's order, item,
   event and return files plus the full customers file.
Prints wall seconds, peak RSS of each run and the per-stage timings from run.json.

With `--workflows`, the program also has workflows (bench/workflows.py writes it into the
work folder): the fashion example's welcome series and win-back, a reminder of expiring
points and a gold welcome with an award, their templates and a second coupon pool.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "bench" / "program.yaml"


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process (os.wait4 gives its own rusage)."""
    import os
    import tempfile

    with tempfile.TemporaryFile() as log:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            log.seek(0)
            sys.exit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{log.read().decode()[-3000:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=730)
    ap.add_argument("--start", default="2024-01-01")
    ap.add_argument("--work", default="/tmp/loyalty-bench")
    ap.add_argument("--program", default=str(PROGRAM))
    ap.add_argument(
        "--nights",
        type=int,
        default=1,
        help="nightly runs after the cold one (the first pays one-off costs of the state "
        "the cold run left; later ones show a steady night)",
    )
    ap.add_argument(
        "--workflows",
        action="store_true",
        help="add workflows to the program (see bench/workflows.py) and count the messages",
    )
    args = ap.parse_args()
    # Byte-compile the package first, as an installed one is: with PYTHONDONTWRITEBYTECODE
    # set, an editable install would otherwise compile every module in every run.
    import compileall

    compileall.compile_dir(ROOT / "loyalty_cli", quiet=1)
    work = Path(args.work)
    start = dt.date.fromisoformat(args.start)
    last = start + dt.timedelta(days=args.days - 1)
    night = last + dt.timedelta(days=1)
    data, nightly = work / f"data-{args.customers}-{args.days}", work / f"nightly-{night}"
    if not (data / "events.csv").exists() or not (nightly / "orders.csv").exists():
        print(f"generating {args.customers:,} customers x {args.days} days into {work} ...")
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "bench" / "gen_data.py"),
                str(data),
                "--customers",
                str(args.customers),
                "--days",
                str(args.days),
                "--start",
                args.start,
                "--nightly-day",
                night.isoformat(),
                "--nightly-out",
                str(nightly),
            ],
            check=True,
        )
    if args.workflows:
        sys.path.insert(0, str(ROOT / "bench"))
        from workflows import with_workflows

        args.program = str(with_workflows(Path(args.program), work / "program-workflows"))
    state, out = work / "bench.duckdb", work / "out"
    for p in (state, Path(str(state) + ".wal")):
        p.unlink(missing_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    loyalty = [
        sys.executable,
        "-m",
        "loyalty_cli.cli",
        "run",
        args.program,
        "--state",
        str(state),
        "--out",
        str(out),
    ]
    # Each run in its own process so peak RSS is per run (RUSAGE_CHILDREN keeps the max).
    cold_wall, cold_rss = timed([*loyalty, "--data", str(data), "--as-of", last.isoformat()])
    cold = json.loads((out / last.isoformat() / "run.json").read_text())
    nights = []
    for i in range(max(1, args.nights)):
        day = night + dt.timedelta(days=i)
        folder = nightly if i == 0 else work / f"nightly-{args.customers}-{day}"
        if not (folder / "orders.csv").exists():
            _generate_day(folder, day, args.customers, args.days, start)
        wall, rss = timed([*loyalty, "--data", str(folder), "--as-of", day.isoformat()])
        result = json.loads((out / day.isoformat() / "run.json").read_text())
        nights.append((day, wall, rss, result))
    print(f"cold run    {last}: {cold_wall:6.2f} s wall, peak RSS {cold_rss:,.0f} MiB")
    print("  stages: " + ", ".join(f"{k} {v:.2f}" for k, v in cold["timings"].items()))
    for day, wall, rss, result in nights:
        print(f"nightly run {day}: {wall:6.2f} s wall, peak RSS {rss:,.0f} MiB")
        print("  stages: " + ", ".join(f"{k} {v:.2f}" for k, v in result["timings"].items()))
    rows = cold["counts"].get("rows", {})
    print("  cold rows: " + ", ".join(f"{k} {v:,}" for k, v in rows.items()))
    for label, result in [("cold", cold), *((str(day), r) for day, _, _, r in nights)]:
        sent = {k: v for k, v in result["counts"].get("workflows", {}).items() if "sent" in k}
        if sent:
            print(f"  {label} messages: " + ", ".join(f"{k} {v:,}" for k, v in sent.items()))


def _generate_day(folder: Path, day: dt.date, customers: int, days: int, start: dt.date) -> None:
    """One more night's files, as bench/gen_data.py writes them for the same history."""
    from loyalty_cli import sampledata

    sampledata.generate_day(folder, day, customers=customers, days=days, start=start)


if __name__ == "__main__":
    main()
