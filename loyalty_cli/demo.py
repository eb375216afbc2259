"""`make demo`: run the fashion example on the shipped sample data with a fresh state.

The sample data (examples/data/demo/, 300 customers over 18 months) was written by
`loyalty_cli.sampledata.generate(**sampledata.DEMO)`. The demo runs the first day (all
history in one run), then catches up the next nights one by one, and prints a summary.
"""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.table import Table

from loyalty_cli.diagnostics import LoyaltyError
from loyalty_cli.engine.run import run

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "examples" / "programs" / "fashion" / "program.yaml"
DATA = ROOT / "examples" / "data" / "demo"
FIRST_DAY = dt.date(2026, 6, 25)
LAST_DAY = dt.date(2026, 7, 1)


def main(out_root: Path = Path("demo-out")) -> int:
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    if out_root.exists():
        shutil.rmtree(out_root)
    out_root.mkdir(parents=True)
    state_file = out_root / "loyalty.duckdb"
    console.print(
        f"[bold]loyalty demo[/bold]: {PROGRAM.relative_to(ROOT)} on "
        f"{DATA.relative_to(ROOT)} (fresh state {state_file})"
    )
    try:
        first = run(PROGRAM, DATA, FIRST_DAY, state_file, out_root / "out")
        nights = run(PROGRAM, DATA, LAST_DAY, state_file, out_root / "out")
    except LoyaltyError as exc:
        for d in exc.diagnostics:
            console.print(f"[red]error[/red] {d.location()}: {d.message}")
        return exc.exit_code
    results = first + nights
    table = Table(title="Nightly runs", header_style="bold")
    for col in (
        "day",
        "status",
        "points earned",
        "rows",
        "rejects",
        "members",
        "available",
        "pending",
        "liability",
    ):
        table.add_column(col, justify="right")
    for r in results:
        earned = sum(v for k, v in r.counts.get("earning", {}).items() if k.endswith(".points"))
        rows = sum(r.counts.get("rows", {}).values())
        s = r.summary
        table.add_row(
            str(r.as_of),
            r.status,
            f"{earned:,}",
            f"{rows:,}",
            f"{r.rejects:,}",
            f"{s.get('members', 0):,}",
            f"{s.get('available', 0):,}",
            f"{s.get('pending', 0):,}",
            f"{Decimal(s['liability']):,} {s['currency']}" if s else "",
        )
    console.print(table)
    last = results[-1]
    tiers = ", ".join(f"{k} {v}" for k, v in last.summary.get("tiers", {}).items())
    console.print(f"tiers on {last.as_of}: {tiers}")
    console.print(
        f"files: {out_root / 'out'}/<day>/ (balances.csv, ledger.csv, ...); "
        f"try: .venv/bin/loyalty explain C000002 --state {state_file}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
