"""`loyalty report` for people: tables in the terminal, or one self-contained HTML file.

The HTML file has no script and loads nothing: its charts are inline SVG, and every value
from the state (ids, names) is escaped by Jinja2's autoescaping.
"""

from __future__ import annotations

import os
import stat
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from loyalty_cli.engine.report import NO_TIERS
from loyalty_cli.tables import fitted_table


def _n(value) -> str:
    return "" if value is None else f"{value:,}"


def _pct(ratio: str | None) -> str:
    return "n/a" if ratio is None else f"{Decimal(ratio) * 100:.1f}%"


def movement_matrix(figures: dict) -> tuple[list[str], list[list[str]]]:
    """The tier movement as a table: a row per tier a year ago (and `new`), a column per
    tier on the day."""
    rows = figures["tier_movement"]["rows"]
    if all(t["tier"] is None for t in figures["tiers"]):  # a program without tiers
        return [], []
    order = [t["tier"] for t in figures["tiers"]]
    # Tiers members were on a year ago that no level of the program has now (renamed).
    order += sorted({str(r["from"]) for r in rows} - {*map(str, order), "new"})
    to = [t for t in order if any(r["to"] == t for r in rows)]
    frm = ["new", *order]
    frm = [f for f in frm if any(r["from"] == f for r in rows)]
    count = {(r["from"], r["to"]): r["members"] for r in rows}
    return ["from \\ to", *to], [[f, *(_n(count.get((f, t), 0)) for t in to)] for f in frm]


def render_text(figures: dict, console: Console) -> None:
    prog = figures["program"]
    currency = prog.get("currency") or ""
    console.print(
        f"[bold]{escape(str(prog.get('name') or prog.get('id')))}[/bold] as of {figures['as_of']} "
        f"(last run {figures['last_run']})",
        highlight=False,
    )
    console.print(
        f"members {figures['members']:,} | available {figures['available']:,} points | "
        f"liability {Decimal(figures['liability']):,} {currency}",
        highlight=False,
    )

    def table(title: str, header: list[str], rows: list[list[str]]) -> None:
        if rows:  # the title on a line of its own: a narrow table would wrap it
            console.print(f"\n[bold]{title}[/bold]", highlight=False)
            console.print(fitted_table("", header, rows, console), soft_wrap=False)

    table(
        "Tiers",
        ["tier", "members", "points", "pending", f"liability ({currency})"],
        [
            [
                NO_TIERS if t["tier"] is None else str(t["tier"]),
                _n(t["members"]),
                _n(t["points"]),
                _n(t["pending"]),
                f"{Decimal(t['liability']):,}",
            ]
            for t in figures["tiers"]
        ],
    )
    header, rows = movement_matrix(figures)
    table(f"Tier movement since {figures['tier_movement']['since']}", header, rows)
    table(
        "Points per month",
        ["month", "earned", "returned", "redeemed", "expired"],
        [
            [m["month"], _n(m["earned"]), _n(m["returned"]), _n(m["redeemed"]), _n(m["expired"])]
            for m in figures["monthly"]
        ],
    )
    r = figures["redemption"]
    console.print(
        f"redemption rate {_pct(r['rate'])}: {r['redeemed']:,} of {r['earned']:,} points "
        f"earned were redeemed; requests accepted {r['accepted']:,}, rejected {r['rejected']:,}",
        highlight=False,
    )
    table(
        "Segments (revenue: the year up to the day)",
        ["segment", "group", "members", f"revenue ({currency})"],
        [
            [s["segment_id"], str(s["group"] or ""), _n(s["members"]), f"{s['revenue']:,}"]
            for s in figures["segments"]
        ],
    )
    top = figures["top_share"]
    console.print(
        f"top 10%: {top['top']:,} of the {top['buyers']:,} members who ordered in the year "
        f"brought {_pct(top['share'])} of its revenue "
        f"({Decimal(top['top_revenue']):,} of {Decimal(top['revenue']):,} {currency})",
        highlight=False,
    )
    for period, leaders in figures["leaderboards"].items():
        title = "Most points earned, " + ("the year" if period == "year" else period)
        table(
            title,
            ["#", "customer_id", "earned"],
            [[str(i), x["customer_id"], _n(x["earned"])] for i, x in enumerate(leaders, 1)],
        )


# --------------------------------------------------------------------------- HTML


def _bars(series: list[tuple[str, list[int]]], labels: list[str], colors: list[str]) -> dict:
    """Geometry of a grouped bar chart (one group per label, one bar per series)."""
    width, height, pad = 720, 220, 30
    top = max([v for _, values in series for v in values] + [1])
    group = (width - pad) / max(len(labels), 1)
    bar = group * 0.8 / max(len(series), 1)
    bars = []
    for j, (name, values) in enumerate(series):
        for i, v in enumerate(values):
            h = (height - 2 * pad) * v / top
            bars.append(
                {
                    "x": round(pad + i * group + group * 0.1 + j * bar, 1),
                    "y": round(height - pad - h, 1),
                    "w": round(bar, 1),
                    "h": round(h, 1),
                    "color": colors[j % len(colors)],
                    "title": f"{labels[i]} {name}: {v:,}",
                }
            )
    ticks = [
        {"x": round(pad + i * group + group / 2, 1), "label": label}
        for i, label in enumerate(labels)
    ]
    legend = [
        {"name": name, "color": colors[j % len(colors)]} for j, (name, _) in enumerate(series)
    ]
    return {
        "width": width,
        "height": height,
        "pad": pad,
        "bars": bars,
        "ticks": ticks,
        "legend": legend,
        "top": f"{top:,}",
    }


# The page's template (package data), rendered with autoescaping on.
_HTML = Path(__file__).resolve().parent.parent / "report" / "report.html.j2"


def render_html(figures: dict) -> str:
    """The report as one HTML page (no script, nothing loaded from elsewhere)."""
    from jinja2 import select_autoescape
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(autoescape=select_autoescape(default=True))
    months = figures["monthly"]
    month_chart = _bars(
        [(k, [int(m[k]) for m in months]) for k in ("earned", "redeemed", "expired")],
        [m["month"][2:] for m in months],
        ["#3b7dd8", "#2a9d5b", "#d8823b"],
    )
    tier_chart = _bars(
        [("members", [int(t["members"]) for t in figures["tiers"]])],
        [NO_TIERS if t["tier"] is None else str(t["tier"]) for t in figures["tiers"]],
        ["#3b7dd8"],
    )
    return env.from_string(_HTML.read_text(encoding="utf-8")).render(
        f=figures,
        p=figures["program"],
        movement=movement_matrix(figures),
        month_chart=month_chart,
        tier_chart=tier_chart,
        rate=_pct(figures["redemption"]["rate"]),
        share=_pct(figures["top_share"]["share"]),
    )


# How an HTML report written by loyalty begins, and what its head holds (the generator
# meta tag; ": report as of " in the title of reports written before the tag).
HTML_START = b"<!DOCTYPE html>"
HTML_MARKS = (b'<meta name="generator" content="loyalty report">', b": report as of ")


def html_target_problem(target: str, state_file: str) -> str | None:
    """Why `--html target` must not be written, or None: it is the state file, a folder,
    a link or anything else that is not a regular file, or a file that is not a report
    written by loyalty (it is replaced whole, so only an earlier report may be there)."""
    if not target:
        return "is no file name"
    path = Path(target)
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        existing = path.parent
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
        if not existing.is_dir():
            return f"its folder cannot be made: {str(existing)!r} is not a folder"
        return None
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder; name the HTML file to write"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link; name the file itself"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a FIFO, socket or device)"
    try:
        if Path(state_file).exists() and os.path.samefile(path, state_file):
            return "is the state file; name another file for the HTML report"
    except OSError:
        pass
    if st.st_size == 0:
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
    except OSError as exc:
        return f"cannot be read: {exc.strerror}"
    if not head.startswith(HTML_START) or not any(mark in head for mark in HTML_MARKS):
        return (
            "exists and is not an HTML report written by loyalty; "
            "remove it or name another file (it is replaced whole)"
        )
    return None
