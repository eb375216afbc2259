"""Diagnostics reporters for the CLI: text (rich), json and GitHub Actions annotations."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from loyalty_cli.diagnostics import Diagnostic

_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _source_lines(path: str, cache: dict[str, list[str] | None]) -> list[str] | None:
    if path not in cache:
        try:
            cache[path] = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            cache[path] = None
    return cache[path]


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
            out.append(" " * (width + 5) + " " * (d.col - 1) + "^")
    return out


def render_text(diags: list[Diagnostic], console: Console, summary: str = "") -> None:
    cache: dict[str, list[str] | None] = {}
    for d in diags:
        style = _STYLE.get(d.severity, "")
        where = f"[bold]{escape(d.location())}[/bold]: " if d.path else ""
        console.print(
            f"{where}[{style}]{d.severity}[{escape(d.code)}][/{style}] {escape(d.message)}",
            highlight=False,
        )
        for line in snippet(d, _source_lines(d.path, cache)):
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
