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
from rich.markup import escape

from loyalty_cli.diagnostics import LoyaltyError
from loyalty_cli.engine.run import run
from loyalty_cli.tables import fitted_table

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "examples" / "programs" / "fashion" / "program.yaml"
DATA = ROOT / "examples" / "data" / "demo"
FIRST_DAY = dt.date(2026, 6, 25)
LAST_DAY = dt.date(2026, 7, 1)


def main(out_root: Path = Path("demo-out"), console: Console | None = None) -> int:
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=120)
    if out_root.exists():
        shutil.rmtree(out_root)
    out_root.mkdir(parents=True)
    state_file = out_root / "loyalty.duckdb"
    console.print(
        f"[bold]loyalty demo[/bold]: {PROGRAM.relative_to(ROOT)} on "
        f"{DATA.relative_to(ROOT)} (fresh state {escape(str(state_file))})"
    )
    try:
        first = run(PROGRAM, DATA, FIRST_DAY, state_file, out_root / "out")
        nights = run(PROGRAM, DATA, LAST_DAY, state_file, out_root / "out")
    except LoyaltyError as exc:
        for d in exc.diagnostics:
            console.print(f"[red]error[/red] {escape(d.location())}: {escape(d.message)}")
        return exc.exit_code
    results = first + nights
    currency = next((r.summary["currency"] for r in results if r.summary), "")
    header = ["day", "status", "earned", "rows", "rejects", "members", "available", "pending"]
    rows = []
    for r in results:
        earned = sum(v for k, v in r.counts.get("earning", {}).items() if k.endswith(".points"))
        s = r.summary
        rows.append(
            [
                str(r.as_of),
                r.status,
                f"{earned:,}",
                f"{sum(r.counts.get('rows', {}).values()):,}",
                f"{r.rejects:,}",
                f"{s.get('members', 0):,}",
                f"{s.get('available', 0):,}",
                f"{s.get('pending', 0):,}",
                f"{Decimal(s['liability']):,}" if s else "",
            ]
        )
    title = f"Nightly runs: points earned, export rows taken, liability in {currency}"
    table = fitted_table(title, [*header, "liability"], rows, console)
    console.print(table, soft_wrap=False)
    last = results[-1]
    tiers = ", ".join(f"{k} {v}" for k, v in last.summary.get("tiers", {}).items())
    console.print(f"tiers on {last.as_of}: {tiers}")
    sent: dict[str, int] = {}
    for r in results:
        for key, n in r.counts.get("workflows", {}).items():
            workflow, _, action = key.rpartition(".")
            if action == "sent":
                sent[workflow] = sent.get(workflow, 0) + n
    if sent:
        listed = ", ".join(f"{w} {n}" for w, n in sorted(sent.items()))
        console.print(f"messages sent by workflows: {listed} (out/<day>/messages/)")
    console.print(
        f"files: {out_root / 'out'}/<day>/ (balances.csv, ledger.csv, ...); "
        f"try: .venv/bin/loyalty explain C000002 --state {state_file}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
