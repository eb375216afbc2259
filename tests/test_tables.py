"""Tables for people fit the terminal and never cut a value (loyalty_cli.tables)."""

from __future__ import annotations

import json
import re
from decimal import Decimal

from rich.console import Console

from loyalty_cli import demo
from loyalty_cli.tables import fitted_table


def render(table, width: int) -> list[str]:
    console = Console(width=width, no_color=True)
    with console.capture() as cap:
        console.print(table, soft_wrap=False)
    return cap.get().splitlines()


def test_a_narrow_terminal_wraps_long_values_and_keeps_short_ones_whole():
    header = ["day", "kind", "points", "source_id"]
    rows = [
        ["2026-03-01", "earn", "120", "WEBSHOP-ORDER-2026-03-01-0000000001"],
        ["2026-03-02", "clawback", "-35", "WEBSHOP-ORDER-2026-03-01-0000000001|r1"],
    ]
    console = Console(width=40, no_color=True)
    lines = render(fitted_table("Ledger", header, rows, console), 40)
    assert max(len(line) for line in lines) <= 40
    assert not any("…" in line for line in lines)
    text = "\n".join(lines)
    for short in ("2026-03-01", "2026-03-02", "earn", "clawback", "120", "-35"):
        assert re.search(rf"(^| ){re.escape(short)}( |$)", text, re.M), short
    # The id wraps within its column: its pieces, read down the column, give it back.
    start = lines[1].index("source_id")
    column = "".join(line[start:].strip() for line in lines[3:] if line[start:].strip())
    assert column == ("WEBSHOP-ORDER-2026-03-01-0000000001WEBSHOP-ORDER-2026-03-01-0000000001|r1")
    # Wide enough, every row is one line; numbers are right-aligned.
    wide = render(fitted_table("Ledger", header, rows, Console(width=120)), 120)
    assert len(wide) == 5
    # kind is as wide as "clawback", points as its header; one space between columns.
    assert wide[3].startswith("2026-03-01 " + "earn".ljust(8) + " " + "120".rjust(6) + " WEBSHOP")


def test_columns_with_nothing_to_show_are_left_out():
    header = ["kind", "reason", "shortfall", "points"]
    rows = [["earn", "", "0", "10"], ["debit", "", "0", "-10"]]
    console = Console(width=80)
    lines = render(
        fitted_table("t", header, rows, console, drop_empty=True, zero_means_nothing={"shortfall"}),
        80,
    )
    assert lines[1].split() == ["kind", "points"]
    # Without drop_empty every column is shown; a shortfall that is not 0 is shown too.
    shown = render(fitted_table("t", header, rows, console), 80)
    assert shown[1].split() == header
    rows[1][2] = "5"
    short = render(
        fitted_table("t", header, rows, console, drop_empty=True, zero_means_nothing={"shortfall"}),
        80,
    )
    assert short[1].split() == ["kind", "shortfall", "points"]


def test_demo_summary_fits_an_80_column_terminal(tmp_path):
    console = Console(width=80, no_color=True, record=True)
    assert demo.main(tmp_path / "demo-out", console=console) == 0
    text = console.export_text()
    table = text[text.index("Nightly runs") : text.index("tiers on")].splitlines()
    assert max(len(line) for line in table) <= 80
    assert "…" not in text
    # Seven nights, one line each, every figure whole: what each night's run.json says.
    nights = [line.split() for line in table if re.match(r"2026-0[67]-\d\d ", line)]
    assert [n[0] for n in nights] == [
        f"2026-0{d}" for d in ("6-25", "6-26", "6-27", "6-28", "6-29", "6-30", "7-01")
    ]
    for night in nights:
        run = json.loads((tmp_path / "demo-out" / "out" / night[0] / "run.json").read_text())
        earning = run["counts"]["earning"]
        s = run["summary"]
        assert night[1:] == [
            run["status"],
            f"{sum(v for k, v in earning.items() if k.endswith('.points')):,}",
            f"{sum(run['counts']['rows'].values()):,}",
            f"{run['rejects']:,}",
            f"{s['members']:,}",
            f"{s['available']:,}",
            f"{s['pending']:,}",
            f"{Decimal(s['liability']):,}",
        ]
    # The messages the workflows sent, over the seven nights.
    sent: dict[str, int] = {}
    for night in nights:
        run = json.loads((tmp_path / "demo-out" / "out" / night[0] / "run.json").read_text())
        for key, n in run["counts"].get("workflows", {}).items():
            if key.endswith(".sent"):
                sent[key.removesuffix(".sent")] = sent.get(key.removesuffix(".sent"), 0) + n
    assert sent  # the fashion example's welcome series and win-back send on these nights
    listed = ", ".join(f"{w} {n}" for w, n in sorted(sent.items()))
    assert f"messages sent by workflows: {listed} (out/<day>/messages/)" in text
