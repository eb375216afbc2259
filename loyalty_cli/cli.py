"""The `loyalty` command line: parse options, call the core, print, exit."""

from __future__ import annotations

import os
import sys
from enum import Enum

import typer
from rich.console import Console

from loyalty_cli import reporters
from loyalty_cli.diagnostics import ExitCode, LoyaltyError

app = typer.Typer(
    name="loyalty",
    help="Declarative loyalty programs for online shops: YAML in git, nightly runs over DuckDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


class Format(str, Enum):
    text = "text"
    json = "json"
    github = "github"


def _console(stderr: bool = False) -> Console:
    return Console(stderr=stderr, no_color=bool(os.environ.get("NO_COLOR")) or None, soft_wrap=True)


@app.command(
    epilog="Examples:\n\n"
    "  loyalty validate program.yaml\n\n"
    "  loyalty validate programs/ --format github\n\n"
    "  loyalty validate 'shops/*/program.yaml' --format json > report.json"
)
def validate(
    paths: list[str] = typer.Argument(  # noqa: B008
        ..., help="Program or workflow files, folders (searched for *.yaml) or globs."
    ),
    fmt: Format = typer.Option(Format.text, "--format", "-f", help="Output: text, json or github."),
) -> None:
    """Check program and workflow files: schema, references, expressions and templates.

    Needs no data. Exit code 0 when every file is valid, 1 when any has an error,
    2 when a path does not exist.
    """
    from loyalty_cli.config.validate import validate_paths

    report = validate_paths(paths)
    if fmt is Format.json:
        typer.echo(reporters.render_json(report.to_dict()))
    elif fmt is Format.github:
        text = reporters.render_github(report.diagnostics)
        if text:
            typer.echo(text)
        for problem in report.usage_errors:
            typer.echo(f"::error::{problem}")
    else:
        out = _console()
        for problem in report.usage_errors:
            _console(stderr=True).print(f"[bold red]error:[/bold red] {problem}", highlight=False)
        n_err, n_warn = len(report.errors), len(report.warnings)
        if report.usage_errors:
            summary = ""
        elif n_err:
            summary = (
                f"[bold red]{n_err} error(s)[/bold red], {n_warn} warning(s) "
                f"in {len(report.files)} file(s)"
            )
        else:
            summary = f"[green]ok[/green]: {len(report.files)} file(s) valid" + (
                f", {n_warn} warning(s)" if n_warn else ""
            )
        reporters.render_text(report.diagnostics, out, summary)
    raise typer.Exit(int(report.exit_code))


def main() -> None:
    """Console entry point: no traceback reaches the user for bad input."""
    try:
        app(standalone_mode=True)
    except LoyaltyError as exc:
        console = _console(stderr=True)
        reporters.render_text(exc.diagnostics, console)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _console(stderr=True).print("interrupted")
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - last line of defence, never a traceback
        if os.environ.get("LOYALTY_DEBUG"):
            raise
        _console(stderr=True).print(
            f"[bold red]internal error:[/bold red] {type(exc).__name__}: {exc}\n"
            "This is a bug in loyalty, not in your files. Run again with LOYALTY_DEBUG=1 "
            "to see the details and report them.",
            highlight=False,
        )
        sys.exit(ExitCode.INVALID)


if __name__ == "__main__":  # pragma: no cover
    main()
