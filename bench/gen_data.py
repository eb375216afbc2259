"""Generate the benchmark's shop exports (and optionally one night's delta).

    python bench/gen_data.py OUT_DIR --customers 100000 --days 730 \
        [--nightly-day YYYY-MM-DD --nightly-out DIR]

Prints rows and size per file and the seconds taken (`--json` for a machine-readable
summary). See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date, timedelta
from pathlib import Path

try:
    from loyalty_cli import sampledata
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from loyalty_cli import sampledata


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out_dir", type=Path, help="folder for the history exports")
    p.add_argument("--customers", type=int, default=sampledata.BENCH["customers"])
    p.add_argument("--days", type=int, default=sampledata.BENCH["days"])
    p.add_argument("--start", type=date.fromisoformat, default=date(2024, 1, 1))
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--orders-per-customer", type=float, default=10.0)
    p.add_argument("--items-per-order", type=float, default=2.5)
    p.add_argument("--events-per-customer", type=float, default=100.0)
    p.add_argument("--format", dest="fmt", choices=sorted(sampledata.FORMATS), default="csv")
    p.add_argument(
        "--nightly-day",
        type=date.fromisoformat,
        help="also write this day's delta (default with --nightly-out: the day after the history)",
    )
    p.add_argument("--nightly-out", type=Path, help="folder for the nightly delta")
    p.add_argument("--json", action="store_true", help="print a JSON summary instead")
    return p.parse_args(argv)


def _summary(out_dir: Path, counts: dict[str, int], seconds: float) -> dict[str, object]:
    files = {
        name: {"rows": rows, "bytes": (out_dir / name).stat().st_size}
        for name, rows in counts.items()
    }
    return {"out_dir": str(out_dir), "seconds": round(seconds, 2), "files": files}


def _print(title: str, summary: dict[str, object]) -> None:
    files: dict[str, dict[str, int]] = summary["files"]  # type: ignore[assignment]
    print(f"{title}: {summary['out_dir']} ({summary['seconds']} s)")
    for name, f in files.items():
        print(f"  {name:<20} {f['rows']:>12,} rows {f['bytes'] / 1e6:>10.1f} MB")
    total = sum(f["bytes"] for f in files.values())
    print(f"  {'total':<20} {'':>17} {total / 1e6:>10.1f} MB")


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    shape = {
        "customers": args.customers,
        "start": args.start,
        "days": args.days,
        "seed": args.seed,
        "orders_per_customer": args.orders_per_customer,
        "items_per_order": args.items_per_order,
        "events_per_customer": args.events_per_customer,
        "fmt": args.fmt,
    }
    began = time.perf_counter()
    counts = sampledata.generate(args.out_dir, **shape)
    result = {"history": _summary(args.out_dir, counts, time.perf_counter() - began)}
    if args.nightly_out or args.nightly_day:
        day = args.nightly_day or args.start + timedelta(days=args.days)
        out = args.nightly_out or args.out_dir / f"nightly-{day.isoformat()}"
        began = time.perf_counter()
        counts = sampledata.generate_day(out, day, **shape)  # type: ignore[arg-type]
        result["nightly"] = _summary(out, counts, time.perf_counter() - began)
        result["nightly"]["day"] = day.isoformat()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print("history", result["history"])
        if "nightly" in result:
            _print(f"nightly {result['nightly']['day']}", result["nightly"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
