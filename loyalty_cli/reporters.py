"""Diagnostics reporters for the CLI: text (rich), json and GitHub Actions annotations."""

from __future__ import annotations

import json
from pathlib import Path

from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape

from loyalty_cli.diagnostics import Diagnostic

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


# A snippet shows this much of a line: an export's line may be megabytes long.
SNIPPET_WIDTH = 200


def _source_lines(path: str, upto: int) -> list[str] | None:
    """The first `upto` lines of a file, each cut to SNIPPET_WIDTH characters; read line by
    line, so a diagnostic near the top of a gigabyte export reads only that far."""
    if not Path(path).is_file():  # a folder, a FIFO (reading would wait), nothing
        return None
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            lines = []
            for text in fh:
                text = text.rstrip("\r\n")
                if len(text) > SNIPPET_WIDTH:
                    text = text[:SNIPPET_WIDTH] + "..."
                lines.append(text)
                if len(lines) >= upto:
                    break
            return lines
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def snippet(d: Diagnostic, lines: list[str] | None, context: int = 1) -> list[str]:
    """Numbered source lines around the diagnostic, with a caret under the column."""
    if not lines or not d.line or d.line > len(lines):
        return []
    first, last = max(1, d.line - context), min(len(lines), d.line + context)
    width = len(str(last))
    out = []
    for n in range(first, last + 1):
        marker = ">" if n == d.line else " "
        out.append(f"{marker} {n:>{width}} | {lines[n - 1]}")
        if n == d.line and d.col:
            # The caret under the column as the terminal shows it: wide characters (CJK,
            # most emoji) take two cells.
            out.append(" " * (width + 5) + " " * cell_len(lines[n - 1][: d.col - 1]) + "^")
    return out


def render_text(diags: list[Diagnostic], console: Console, summary: str = "") -> None:
    upto: dict[str, int] = {}  # per file, the last line a snippet shows
    for d in diags:
        if d.path and d.line:
            upto[d.path] = max(upto.get(d.path, 0), d.line + 1)
    cache = {path: _source_lines(path, n) for path, n in upto.items()}
    for d in diags:
        style = _STYLE.get(d.severity, "")
        where = f"[bold]{escape(d.location())}[/bold]: " if d.path else ""
        console.print(
            f"{where}[{style}]{d.severity}[{escape(d.code)}][/{style}] {escape(d.message)}",
            highlight=False,
        )
        for line in snippet(d, cache.get(d.path) if d.path else None):
            console.print(f"[dim]{escape(line)}[/dim]", highlight=False)
        if d.hint:
            console.print(f"  [green]hint:[/green] {escape(d.hint)}", highlight=False)
    if summary:
        console.print(summary, highlight=False)


def render_json(payload: dict | list) -> str:
    return json.dumps(payload, indent=2, ensure_ascii=False, default=str)


def _gh_escape_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_escape_prop(s: str) -> str:
    return _gh_escape_data(s).replace(":", "%3A").replace(",", "%2C")


def render_github(diags: list[Diagnostic]) -> str:
    """GitHub Actions workflow commands: `::error file=...,line=...,col=...::message`."""
    out = []
    for d in diags:
        level = {"error": "error", "warning": "warning"}.get(d.severity, "notice")
        props = [f"file={_gh_escape_prop(d.path)}"] if d.path else []
        if d.path and d.line:
            props.append(f"line={d.line}")
            if d.col:
                props.append(f"col={d.col}")
        props.append(f"title={_gh_escape_prop(d.code)}")
        msg = d.message + (f" (hint: {d.hint})" if d.hint else "")
        out.append(f"::{level} {','.join(props)}::{_gh_escape_data(msg)}")
    return "\n".join(out)


def github_annotation(level: str, message: str) -> str:
    """One annotation without a file (`::error::message`), the message escaped."""
    return f"::{level}::{_gh_escape_data(message)}"
