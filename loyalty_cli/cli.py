"""The `loyalty` command line: parse options, call the core, print, exit."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
from collections.abc import Iterator
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from loyalty_cli import reporters
from loyalty_cli.diagnostics import Diagnostic, ExitCode, LoyaltyError
from loyalty_cli.tables import fitted_table

app = typer.Typer(
    name="loyalty",
    help="Declarative loyalty programs for online shops: YAML in git, nightly runs over DuckDB.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)


class Format(str, Enum):
    text = "text"
    json = "json"
    github = "github"


# Parameters shared by the commands.
ProgramArg = Annotated[str, typer.Argument(metavar="PROGRAM", help="The program YAML file.")]
DataOpt = Annotated[str, typer.Option("--data", metavar="DIR", help="Folder holding the exports.")]
StateOpt = Annotated[
    str,
    typer.Option(
        "--state",
        metavar="FILE",
        help="State file (DuckDB), relative to the current folder.",
    ),
]
FormatOpt = Annotated[Format, typer.Option("--format", "-f", help="Output: text, json or github.")]


# The usage errors typer raises (BadParameter and the like), from typer's own click.
_UsageError = typer.BadParameter.__mro__[1]


class TextOrJson(str, Enum):
    """--format of the commands that print figures, not diagnostics."""

    text = "text"
    json = "json"


def _guard(func):
    """Turn a LoyaltyError into its diagnostics on stderr and its exit code; with
    `--format json` or `github` also into a JSON object or annotations on stdout, and a
    usage error found by the command (a bad --as-of) likewise."""
    import functools

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        fmt = getattr(kwargs.get("fmt"), "value", "text")
        try:
            return func(*args, **kwargs)
        except LoyaltyError as exc:
            diags = exc.diagnostics
            reporters.render_text(diags, _console(stderr=True))
            _print_error_for_machines(fmt, exc.exit_code, diags, [])
            raise typer.Exit(exc.exit_code) from None
        except _UsageError as exc:
            _print_error_for_machines(fmt, int(ExitCode.USAGE), [], [_usage_text(exc)])
            raise

    return wrapper


def _usage_text(exc) -> str:
    """A usage error's message as click prints it after 'Error: '."""
    return str(exc.format_message())


def _print_error_for_machines(
    fmt: str, exit_code: int, diags: list[Diagnostic], usage_errors: list[str]
) -> None:
    """On stdout, for `--format json` an object with the diagnostics (docs/run.md), for
    `--format github` one annotation per problem; nothing for text."""
    if fmt == "json":
        typer.echo(
            reporters.render_json(
                {
                    "status": "error",
                    "exit_code": int(exit_code),
                    "diagnostics": [d.to_dict() for d in diags],
                    "usage_errors": usage_errors,
                }
            )
        )
    elif fmt == "github":
        lines = [reporters.render_github(diags)] if diags else []
        lines += [reporters.github_annotation("error", problem) for problem in usage_errors]
        typer.echo("\n".join(lines))


@app.callback()
def _root() -> None:
    """Declarative loyalty programs for online shops: YAML in git, nightly runs over DuckDB."""


def _console(stderr: bool = False) -> Console:
    console = Console(
        stderr=stderr, no_color=bool(os.environ.get("NO_COLOR")) or None, soft_wrap=True
    )
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # Piped or captured output: wide enough that tables keep whole values.
        console = Console(stderr=stderr, no_color=True, soft_wrap=True, width=200)
    return console


@app.command(
    epilog="Examples:\n\n"
    "  loyalty validate program.yaml\n\n"
    "  loyalty validate programs/ --format github\n\n"
    "  loyalty validate 'shops/*/program.yaml' --format json > report.json"
)
@_guard
def validate(
    paths: list[str] = typer.Argument(  # noqa: B008
        ...,
        metavar="PATHS",
        help="Program or workflow files, folders (searched for *.yaml) or globs.",
    ),
    fmt: FormatOpt = Format.text,
) -> None:
    """Check program and workflow files: schema, references, expressions and templates.

    Needs no data. Exit code 0 when every file is valid, 1 when any has an error,
    2 when a path does not exist.
    """
    from loyalty_cli.config.validate import validate_paths

    # A FIFO or device would block or be read forever: said as such, never read.
    special = [p for p in paths if _special_file(p)]
    report = validate_paths([p for p in paths if p not in special] or [])
    for p in special:
        report.usage_errors.append(f"{p}: not a regular file (a FIFO, socket or device)")
    if fmt is Format.json:
        typer.echo(reporters.render_json(report.to_dict()))
    elif fmt is Format.github:
        text = reporters.render_github(report.diagnostics)
        if text:
            typer.echo(text)
        for problem in report.usage_errors:
            typer.echo(reporters.github_annotation("error", problem))
    else:
        out = _console()
        for problem in report.usage_errors:
            _console(stderr=True).print(
                f"[bold red]error:[/bold red] {escape(str(problem))}", highlight=False
            )
        n_err, n_warn = len(report.errors), len(report.warnings)
        n_usage = len(report.usage_errors)
        if n_err or n_usage:
            summary = (
                f"[bold red]{n_err} error(s)[/bold red], {n_warn} warning(s) "
                f"in {len(report.files)} file(s)"
            )
            if n_usage:
                summary += f"; [bold red]{n_usage} path(s) not checked[/bold red]"
        else:
            summary = f"[green]ok[/green]: {len(report.files)} file(s) valid" + (
                f", {n_warn} warning(s)" if n_warn else ""
            )
        reporters.render_text(report.diagnostics, out, summary)
    raise typer.Exit(int(report.exit_code))


def _special_file(path: str) -> bool:
    """Whether `path` exists and is neither a regular file nor a folder."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    import stat

    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


# The days --as-of, --from and --to accept: the engine works a day past the day asked
# for (its end), a year and more before it (report, tier windows) and expiry dates after
# it, all well inside these bounds.
FIRST_DAY = dt.date(1900, 1, 1)
LAST_DAY = dt.date(2999, 12, 31)


def _parse_day(value: str | None, option: str) -> dt.date | None:
    """A date option's day; a usage error when it is not a date or out of range."""
    if value is None:
        return None
    try:
        day = dt.date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date; write YYYY-MM-DD", param_hint=option
        ) from None
    if not FIRST_DAY <= day <= LAST_DAY:
        raise typer.BadParameter(
            f"{value} is out of range; days from {FIRST_DAY} to {LAST_DAY} are accepted",
            param_hint=option,
        )
    return day


def _not_after_today(day: dt.date | None, program: str, option: str):
    """The program, loaded; a usage error when `day` is after today in its timezone.

    A run for a day that has not come expires points and moves tiers before their time,
    and the nights before it can then no longer run (runs go forward): a typo in the year
    would cost every member their points. `plan` writes nothing and may look ahead."""
    from loyalty_cli.config.model import load_program
    from loyalty_cli.engine.run import default_as_of

    loaded = load_program(program)
    today = default_as_of(loaded) + dt.timedelta(days=1)
    if day is not None and day > today:
        raise typer.BadParameter(
            f"{day} is after today ({today} in {loaded.timezone}); a run may not go ahead "
            "of time (it would expire points and move tiers early, and the nights before "
            "it could not run any more). Use `loyalty plan` to look ahead",
            param_hint=option,
        )
    return loaded


def _interactive() -> bool:
    """Whether questions can be asked: standard input is a terminal."""
    return sys.stdin.isatty()


def _day_range(from_day: str, to_day: str) -> tuple[dt.date, dt.date]:
    """--from and --to as dates, the second not before the first."""
    d1, d2 = _parse_day(from_day, "--from"), _parse_day(to_day, "--to")
    assert d1 is not None and d2 is not None
    if d2 < d1:
        raise typer.BadParameter("--to is before --from", param_hint="--to")
    return d1, d2


def _print_result(result, fmt: Format, console: Console) -> None:
    if fmt is Format.json:
        return
    if result.status == "refused":
        console.print(
            f"[bold red]refused[/bold red] run for {result.as_of}: {escape(str(result.reason))}",
            highlight=False,
        )
        if result.out_dir:
            console.print(
                f"rejects: {escape(str(result.out_dir / 'rejects.csv'))}", highlight=False
            )
        return
    title = f"{'plan' if result.status == 'planned' else 'run'} for {result.as_of}"
    console.print(f"[bold]{title}[/bold]", highlight=False)
    steps = [
        [step, key, f"{value:,}"]
        for step, items in sorted(result.counts.items())
        if step != "sources"
        for key, value in sorted(items.items())
    ]
    if result.counts.get("sources"):
        console.print(_sources_table(result.counts["sources"], console), soft_wrap=False)
    if steps:  # a day with nothing new counts nothing
        table = fitted_table("steps", ["step", "what", "count"], steps, console)
        console.print(table, soft_wrap=False)
    s = result.summary
    if s:
        tiers = ", ".join(f"{k}: {v:,}" for k, v in s.get("tiers", {}).items())
        counts = s.get("tiers") or {}
        if list(counts) in (["None"], [""]) or (s["members"] and not counts):
            tiers = "(no tiers)"  # a program without tiers: members without a tier
        console.print(
            f"members {s['members']:,} | available {s['available']:,} | pending {s['pending']:,}"
            f" | liability {Decimal(s['liability']):,} {s['currency']} | tiers {tiers}",
            highlight=False,
        )
    if result.rejects:
        console.print(f"[yellow]{result.rejects:,} rejected row(s)[/yellow]", highlight=False)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)
    if result.out_dir:
        console.print(f"files: {escape(str(result.out_dir))}", highlight=False)


# The loader's counts per source (run.json counts.sources "<source>.<what>"), as columns.
SOURCE_COLUMNS = (
    ("files", "files"),
    ("rows_read", "rows read"),
    ("held_back", "held back"),
    ("rejected", "rejected"),
    ("duplicates_in_export", "duplicates"),
    ("loaded", "loaded"),
)


def _sources_table(counts: dict[str, int], console: Console):
    """One row per source: files, rows read, held back (after the day), rejected,
    repeated within the export, loaded."""
    per: dict[str, dict[str, int]] = {}
    for key, value in counts.items():
        source, _, what = key.partition(".")
        per.setdefault(source, {})[what] = value
    rows = [
        [source, *(f"{per[source].get(key, 0):,}" for key, _ in SOURCE_COLUMNS)]
        for source in sorted(per)
    ]
    return fitted_table(
        "exports", ["source", *(label for _, label in SOURCE_COLUMNS)], rows, console
    )


def _print_day_line(result, console: Console) -> None:
    """One line for a day run on the way to the day asked for (a catch-up or backfill day)."""
    s = result.summary or {}
    parts = [f"{result.as_of}: {result.status}"]
    if s:
        parts.append(
            f"members {s['members']:,} | available {s['available']:,} | pending {s['pending']:,}"
        )
    parts.append(f"{result.rejects:,} rejected row(s)")
    if result.warnings:
        parts.append(f"{len(result.warnings)} warning(s)")
    console.print(" | ".join(parts), highlight=False)


@contextlib.contextmanager
def _day_progress(console: Console) -> Iterator[tuple]:
    """(planned, progress) callbacks for the engine: on a terminal, a transient display of
    the day and stage being run, with a bar over the days; elsewhere (cron, CI) nothing.
    Given the stderr console, so that stdout holds only the results (`--format json`)."""
    if not console.is_terminal:
        yield None, None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("opening the state", total=None)

        def planned(days: list[dt.date]) -> None:
            bar.update(task, total=len(days))

        def progress(day: dt.date, stage: str) -> None:
            if stage == "done":
                bar.advance(task)
            else:
                bar.update(task, description=f"{day} {stage}")

        yield planned, progress


def _print_github_result(result) -> None:
    """A refused day as an error annotation, each warning of the day as a warning one."""
    if result.status == "refused":
        typer.echo(
            reporters.github_annotation(
                "error", f"{result.status} run for {result.as_of}: {result.reason}"
            )
        )
    for w in result.warnings:
        typer.echo(reporters.github_annotation("warning", f"run for {result.as_of}: {w}"))


def _result_json(result) -> dict:
    return {
        "as_of": result.as_of.isoformat(),
        "status": result.status,
        "reason": result.reason,
        "counts": result.counts,
        "rejects": result.rejects,
        "warnings": result.warnings,
        "summary": result.summary,
        "models": result.models,
        "out_dir": str(result.out_dir) if result.out_dir else None,
    }


@app.command(
    epilog="Examples:\n\n"
    "  loyalty run program.yaml --data exports/2026-11-22/\n\n"
    "  loyalty run program.yaml --data exports/ --as-of 2026-11-22 --state shop.duckdb --out out/"
)
@_guard
def run(
    program: ProgramArg,
    data: DataOpt,
    as_of: str = typer.Option(
        None,
        "--as-of",
        metavar="DATE",
        help="Day to run (YYYY-MM-DD), not after today; default yesterday in the program's "
        "timezone.",
    ),
    state_file: StateOpt = "loyalty.duckdb",
    out: str = typer.Option(
        "out", "--out", metavar="DIR", help="Folder for the day's output files."
    ),
    no_catch_up: bool = typer.Option(False, "--no-catch-up", help="Do not run missed days first."),
    fmt: FormatOpt = Format.text,
) -> None:
    """The nightly run: earn, return, bonus, redeem, expire, tier, segment, advance the
    workflows; write out/D/.

    Atomic and idempotent: running the same day again changes nothing. Exit 3 when the run
    is refused for its data (too many rejects, a short coupon pool, state in use); the
    state is then untouched.
    """
    from loyalty_cli.engine.run import run as run_core

    day = _parse_day(as_of, "--as-of")
    loaded = _not_after_today(day, program, "--as-of")
    fresh = not Path(state_file).exists()
    console = _console()
    with _day_progress(_console(stderr=True)) as (planned, progress):
        results = run_core(
            loaded,
            data,
            day,
            state_file,
            out,
            catch_up=not no_catch_up,
            progress=progress,
            planned=planned,
        )
    if fmt is not Format.json:
        # Days caught up on the way get a line each; the day asked for, the full table.
        for result in results[:-1]:
            _print_day_line(result, console)
        if results:
            _print_result(results[-1], fmt, console)
        if fresh and any(r.status == "ok" for r in results):
            # A state file made by this run: the usual cause of a night that takes all
            # history again is a run from another folder (cron starts in $HOME).
            console.print(
                f"new state file: {escape(str(Path(state_file).resolve()))} (a first run: all "
                "history up to the day in one run; pass this --state every night)",
                highlight=False,
            )
    if fmt is Format.json:
        typer.echo(reporters.render_json([_result_json(r) for r in results]))
    if fmt is Format.github:
        for r in results:
            _print_github_result(r)
    raise typer.Exit(max((int(r.exit_code) for r in results), default=0))


@app.command(epilog="Example:\n\n  loyalty plan program.yaml --data exports/ --as-of 2026-11-22")
@_guard
def plan(
    program: ProgramArg,
    data: DataOpt,
    as_of: str = typer.Option(
        None, "--as-of", metavar="DATE", help="Day to plan (YYYY-MM-DD); default yesterday."
    ),
    state_file: StateOpt = "loyalty.duckdb",
    fmt: FormatOpt = Format.text,
) -> None:
    """Dry run: what `run` would do for one day (points by rule, tiers, expiry,
    redemptions, rejects). Writes nothing."""
    from loyalty_cli.engine.run import plan as plan_core

    day = _parse_day(as_of, "--as-of")
    console = _console()
    with _day_progress(_console(stderr=True)) as (_, progress):
        result = plan_core(program, data, day, state_file, progress=progress)
    _print_result(result, fmt, console)
    if fmt is Format.json:
        typer.echo(reporters.render_json(_result_json(result)))
    if fmt is Format.github:
        _print_github_result(result)
    raise typer.Exit(int(result.exit_code))


@app.command(
    epilog="Example:\n\n"
    "  loyalty backfill program.yaml --data history/ --from 2025-01-01 --to 2026-11-22 "
    "--state fresh.duckdb"
)
@_guard
def backfill(
    program: ProgramArg,
    data: DataOpt,
    from_day: str = typer.Option(..., "--from", metavar="DATE", help="First day (YYYY-MM-DD)."),
    to_day: str = typer.Option(..., "--to", metavar="DATE", help="Last day (YYYY-MM-DD)."),
    state_file: StateOpt = "loyalty.duckdb",
    out: str = typer.Option(
        "out", "--out", metavar="DIR", help="Folder for each day's output files."
    ),
) -> None:
    """Replay history one day at a time (the same as one run per day D1..D2)."""
    from loyalty_cli.engine.run import backfill as backfill_core

    d1, d2 = _day_range(from_day, to_day)
    loaded = _not_after_today(d2, program, "--to")
    console = _console()
    with _day_progress(_console(stderr=True)) as (planned, progress):
        results = backfill_core(
            loaded, data, d1, d2, state_file, out, progress=progress, planned=planned
        )
    refused = [r for r in results if r.status == "refused"]
    if refused:
        _print_result(refused[0], Format.text, console)
    else:
        # The days run: missed days before D1 are caught up first (docs/run.md).
        first, last = (results[0].as_of, results[-1].as_of) if results else (d1, d2)
        console.print(f"backfill done: {len(results)} day(s), {first} .. {last}", highlight=False)
        if results:
            _print_result(results[-1], Format.text, console)
    raise typer.Exit(max((int(r.exit_code) for r in results), default=0))


@app.command(
    epilog="Example:\n\n  loyalty simulate program-new.yaml --baseline program.yaml "
    "--data exports/ --from 2026-01-01 --to 2026-06-30"
)
@_guard
def simulate(
    new: str = typer.Argument(..., metavar="NEW", help="The changed program."),
    baseline: str = typer.Option(
        ..., "--baseline", metavar="OLD", help="The program to compare with."
    ),
    data: DataOpt = ...,  # type: ignore[assignment]
    from_day: str = typer.Option(..., "--from", metavar="DATE", help="First day (YYYY-MM-DD)."),
    to_day: str = typer.Option(..., "--to", metavar="DATE", help="Last day (YYYY-MM-DD)."),
    fmt: TextOrJson = typer.Option(TextOrJson.text, "--format", "-f", help="Output: text or json."),
) -> None:
    """Compare two versions of a program over the same history, side by side.

    Both are backfilled over the exports, each on a throw-away state, and compared: points
    earned, returned, redeemed and expired, liability, points by rule, tier mix, redemptions and
    the workflows' audiences. The first day's run covers all history before it, as on a fresh
    state. Writes no files and leaves no state behind.
    """
    from loyalty_cli.engine.simulate import comparison
    from loyalty_cli.engine.simulate import simulate as simulate_core

    d1, d2 = _day_range(from_day, to_day)
    with _day_progress(_console(stderr=True)) as (planned, progress):
        result = simulate_core(
            new,
            baseline,
            data,
            d1,
            d2,
            progress=(lambda label, day, stage: progress(day, stage)) if progress else None,
            planned=(lambda label, days: planned(days)) if planned else None,
        )
    if fmt is TextOrJson.json:
        typer.echo(reporters.render_json(result))
        raise typer.Exit(0)
    console = _console()
    console.print(
        f"[bold]simulation {d1} .. {d2}[/bold]: "
        f"baseline {escape(str(result['baseline']['program']))} ({escape(str(baseline))}), "
        f"new {escape(str(result['new']['program']))} ({escape(str(new))})",
        highlight=False,
    )
    cells = [
        [section, what, _cell(b), _cell(n), _change(b, n)]
        for section, what, b, n in comparison(result)
    ]
    table = fitted_table("", ["section", "what", "baseline", "new", "change"], cells, console)
    console.print(table, soft_wrap=False)


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return f"{Decimal(value):,}"
    return f"{value:,}"


def _change(base, new) -> str:
    """new - baseline, and by how much in percent when baseline is not 0."""
    if base is None or new is None:
        return (
            "only in new"
            if base is None and new is not None
            else ""
            if new is None and base is None
            else "only in baseline"
        )
    diff = Decimal(str(new)) - Decimal(str(base))
    if not diff:
        return "="
    text = f"{diff:+,}"
    if Decimal(str(base)):
        text += f" ({diff / Decimal(str(base)) * 100:+.1f}%)"
    return text


class Dialect(str, Enum):
    duckdb = "duckdb"
    spark = "spark"
    postgres = "postgres"


@app.command(
    "compile",
    epilog="Examples:\n\n  loyalty compile program.yaml\n\n"
    "  loyalty compile program.yaml --dialect spark > program.sql",
)
@_guard
def compile_(
    program: ProgramArg,
    dialect: Dialect = typer.Option(Dialect.duckdb, "--dialect", help="SQL dialect."),
) -> None:
    """Print the program's expressions as SQL queries over the exports' tables.

    Which rows each earning rule credits and with how many points, bonus conditions, rule
    segments and groups, workflow audiences and conditions. The expressions are checked and
    compiled as a run compiles them; sqlglot writes them in another dialect. The engine's own
    steps (rounding, multipliers, caps, lots, expiry, tiers) are the same for every program and
    are not printed.
    """
    from loyalty_cli.config.model import load_program
    from loyalty_cli.engine.compile import compile_program

    typer.echo(compile_program(load_program(program), dialect.value), nl=False)


@app.command(
    epilog="Examples:\n\n  loyalty init my-club\n\n"
    "  loyalty init my-club --name 'My Club' --currency EUR --timezone Europe/Berlin --yes"
)
@_guard
def init(
    folder: str = typer.Argument(
        ".", metavar="DIR", help="A new (or empty) folder for the program."
    ),
    name: str = typer.Option(None, "--name", help="Program name, e.g. 'Fashion Club'."),
    program_id: str = typer.Option(
        None, "--id", help="Program id (default: the name in lower case with dashes)."
    ),
    currency: str = typer.Option(None, "--currency", help="ISO 4217 code, e.g. EUR."),
    timezone: str = typer.Option(None, "--timezone", help="IANA time zone, e.g. Europe/Berlin."),
    from_email: str = typer.Option(None, "--from-email", help="Sender of emails."),
    sms_sender: str = typer.Option(None, "--sms-sender", help="Sender of text messages."),
    region: str = typer.Option(
        None, "--region", help="Country of phone numbers without a country code, e.g. DE."
    ),
    sample_data: bool = typer.Option(
        True, "--sample-data/--no-sample-data", help="Write 18 months of sample exports."
    ),
    yes: bool = typer.Option(
        False, "--yes", "-y", help="Ask nothing: the defaults for every answer not given."
    ),
) -> None:
    """Start a program: a working starter program with sample exports, in DIR.

    Writes program.yaml, a welcome workflow, its email templates and 18 months of sample
    exports, ready for `loyalty validate`, `plan` and `run`. Asks for what the options do not
    give (in a terminal, without --yes).
    """
    from loyalty_cli.init import QUESTIONS, Answers, answer_problem, slug
    from loyalty_cli.init import init as init_core

    given = {
        "name": name,
        "id": program_id,
        "currency": currency,
        "timezone": timezone,
        "from_email": from_email,
        "sms_sender": sms_sender,
        "region": region,
    }
    options = {
        "name": "--name",
        "id": "--id",
        "currency": "--currency",
        "timezone": "--timezone",
        "from_email": "--from-email",
        "sms_sender": "--sms-sender",
        "region": "--region",
    }
    # A bad option is a usage error naming the option, before anything is asked or written.
    bad = [
        (options[key], problem)
        for key, value in given.items()
        if value is not None and (problem := answer_problem(key, value))
    ]
    if len(bad) == 1:
        raise typer.BadParameter(bad[0][1], param_hint=f"'{bad[0][0]}'")
    if bad:
        raise _UsageError(
            "\n".join(f"Invalid value for '{option}': {problem}" for option, problem in bad)
        )
    answers = Answers(sample_data=sample_data)
    ask = not yes and _interactive()
    for key, question in QUESTIONS:
        value = given[key]
        if value is None and ask:
            default = getattr(answers, key) or (slug(answers.name) if key == "id" else "")
            while True:  # a bad answer is asked again, not failed on at the end
                value = typer.prompt(question, default=default, show_default=True)
                if key == "region" and value.strip() in ("-", "none"):
                    value = ""  # Enter takes the default, so "none" is said with a dash
                problem = answer_problem(key, value)
                if not problem:
                    break
                _console(stderr=True).print(
                    f"[bold red]error:[/bold red] {escape(problem)}", highlight=False
                )
        if value is not None:
            setattr(answers, key, value)
    program = init_core(Path(folder), answers)
    console = _console()
    where = program.parent
    console.print(f"wrote {where}: program.yaml, workflows/, templates/", markup=False)
    data = where / "data"
    if sample_data:
        console.print(f"sample exports: {data}", markup=False)
    console.print(
        "next:\n"
        f"  loyalty validate {program}\n"
        f"  loyalty run {program} --data {data if sample_data else 'EXPORTS'} "
        f"--state {where / 'loyalty.duckdb'} --out {where / 'out'}"
        + ("" if sample_data else "\n(EXPORTS: the folder holding your shop's exports)"),
        markup=False,
        highlight=False,
    )


@app.command(
    epilog="Examples:\n\n  loyalty report --state shop.duckdb\n\n"
    "  loyalty report --state shop.duckdb --as-of 2026-10-31 --html report.html"
)
@_guard
def report(
    state_file: StateOpt = "loyalty.duckdb",
    as_of: str = typer.Option(
        None, "--as-of", metavar="DATE", help="Day of the figures (default: the last run's)."
    ),
    html: str = typer.Option(
        None, "--html", metavar="FILE", help="Also write a self-contained HTML report."
    ),
    fmt: TextOrJson = typer.Option(TextOrJson.text, "--format", "-f", help="Output: text or json."),
) -> None:
    """Program analytics from the state, in the terminal or as one HTML page.

    Members and liability per tier, tier movement, points per month, redemption rate,
    segments' revenue, the top 10%'s share and leaderboards, as of the last run's day or
    --as-of."""
    from loyalty_cli import state
    from loyalty_cli.engine.report import report as report_core
    from loyalty_cli.engine.report_render import html_target_problem, render_html, render_text

    day = _parse_day(as_of, "--as-of")
    if html is not None:  # checked before the state is opened: a bad name costs nothing
        problem = html_target_problem(html, state_file)
        if problem:
            raise typer.BadParameter(f"{html!r} {problem}", param_hint="--html")
    con = state.connect(state_file, read_only=True)
    try:
        figures = report_core(con, day)
    finally:
        con.close()
    if html:
        from loyalty_cli.csvsafe import write_text_atomic

        try:
            write_text_atomic(Path(html), render_html(figures))
        except OSError as exc:
            raise LoyaltyError(
                Diagnostic(
                    code="D608",
                    path=html,
                    message=f"the HTML report could not be written: {exc.strerror or exc}",
                    hint="Check the folder's permissions and free space, or name another file.",
                )
            ) from None
    if fmt is TextOrJson.json:
        typer.echo(reporters.render_json(figures))
        raise typer.Exit(0)
    console = _console()
    render_text(figures, console)
    if html:
        console.print(f"HTML report: {html}", markup=False, highlight=False)


coupons_app = typer.Typer(
    help="Coupon pools: codes left, generate codes, import codes from a file.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
app.add_typer(coupons_app, name="coupons")
PoolArg = Annotated[str, typer.Argument(metavar="POOL", help="The pool's id in the program.")]


@coupons_app.command(
    "status", epilog="Example:\n\n  loyalty coupons status program.yaml --state shop.duckdb"
)
@_guard
def coupons_status(
    program: ProgramArg,
    state_file: StateOpt = "loyalty.duckdb",
    as_of: str = typer.Option(
        None,
        "--as-of",
        metavar="DATE",
        help="Count codes past their valid_until on this day as expired (YYYY-MM-DD; "
        "default: the day after the state's last run).",
    ),
    fmt: TextOrJson = typer.Option(TextOrJson.text, "--format", "-f", help="Output: text or json."),
) -> None:
    """Codes per pool: stored, assigned, free, expired, and still to generate."""
    from loyalty_cli.config.model import load_program
    from loyalty_cli.engine.coupons import pools_status

    rows = pools_status(load_program(program), state_file, _parse_day(as_of, "--as-of"))
    if fmt is TextOrJson.json:
        typer.echo(reporters.render_json(rows))
        raise typer.Exit(0)
    console = _console()
    cols = ["pool", "source", "total", "assigned", "free", "expired", "to_generate"]
    cells = [[str(r[c]) if isinstance(r[c], str) else f"{r[c]:,}" for c in cols] for r in rows]
    if not cells:
        console.print("the program has no coupon pools")
        raise typer.Exit(0)
    console.print(fitted_table("coupon pools", cols, cells, console), soft_wrap=False)


@coupons_app.command(
    "generate",
    epilog="Examples:\n\n  loyalty coupons generate program.yaml winback-15 --state shop.duckdb\n\n"
    "  loyalty coupons generate program.yaml winback-15 --count 5000",
)
@_guard
def coupons_generate(
    program: ProgramArg,
    pool: PoolArg,
    count: int = typer.Option(
        None, "--count", min=1, help="Codes to add (default: the pool's `count`)."
    ),
    state_file: StateOpt = "loyalty.duckdb",
) -> None:
    """Add generated codes to a `generate` pool: before the run that would first fill it,
    or when it runs low (runs fill a pool only while it has never had codes). Codes never
    repeat one already in the pool."""
    from loyalty_cli.config.model import load_program
    from loyalty_cli.engine import coupons

    prog = load_program(program)
    added = coupons.change_pools(
        prog, state_file, lambda con: coupons.generate_pool(con, prog, pool, count)
    )
    _print_pool_change(prog, state_file, pool, f"generated {added:,} code(s)")


@coupons_app.command(
    "import",
    epilog="Example:\n\n"
    "  loyalty coupons import program.yaml partner-10 codes.csv --state shop.duckdb",
)
@_guard
def coupons_import(
    program: ProgramArg,
    pool: PoolArg,
    file: str = typer.Argument(
        ..., metavar="FILE", help="CSV with a header: code, and optionally valid_until."
    ),
    state_file: StateOpt = "loyalty.duckdb",
) -> None:
    """Add the codes of a CSV file to a pool; codes the pool has already are left as they
    are. A `file` pool also reads its own file at every run that needs codes."""
    from loyalty_cli.config.model import load_program
    from loyalty_cli.engine import coupons

    prog = load_program(program)
    coupons.pool_config(prog, pool)  # an unknown pool is refused before the file is read
    added = coupons.change_pools(prog, state_file, lambda con: coupons.import_file(con, pool, file))
    _print_pool_change(prog, state_file, pool, f"imported {added:,} new code(s)")


def _print_pool_change(prog, state_file: str, pool: str, done: str) -> None:
    from loyalty_cli.engine.coupons import pools_status

    row = next(r for r in pools_status(prog, state_file) if r["pool"] == pool)
    _console().print(
        f"pool {pool}: {done}; {row['total']:,} stored, {row['free']:,} free",
        markup=False,
        highlight=False,
    )


@app.command(epilog="Example:\n\n  loyalty explain C000123 --state shop.duckdb")
@_guard
def explain(
    customer_id: str = typer.Argument(
        ..., metavar="CUSTOMER_ID", help="The customer id (text, as in the exports)."
    ),
    state_file: StateOpt = "loyalty.duckdb",
    fmt: TextOrJson = typer.Option(TextOrJson.text, "--format", "-f", help="Output: text or json."),
) -> None:
    """A member's ledger, lots, tier history, segments, redemptions and workflow steps, with
    their causes."""
    from loyalty_cli import state
    from loyalty_cli.engine.explain import explain as explain_core

    con = state.connect(state_file, read_only=True)
    try:
        info = explain_core(con, customer_id)
    finally:
        con.close()
    if fmt is TextOrJson.json:
        typer.echo(reporters.render_json(info))
        raise typer.Exit(0)
    console = _console()
    c = info["customer"]
    t = info["tier"]
    tier = (
        f"{escape(t['tier'])} (since {t['since']}, renewed {t['renewed_on']})" if t else "(lowest)"
    )
    console.print(
        f"[bold]{escape(customer_id)}[/bold] joined {c.get('join_day')} | tier {tier} | "
        f"available {info['balances']['available']:,} | pending {info['balances']['pending']:,}",
        highlight=False,
    )
    sections = [
        (
            "Ledger",
            info["ledger"],
            [
                "run_on",
                "kind",
                "points",
                "pending",
                "rule_id",
                "source_id",
                "occurred_on",
                "reason",
                "shortfall",
            ],
        ),
        (
            "Lots",
            info["lots"],
            [
                "lot_id",
                "kind",
                "rule_id",
                "earned_on",
                "available_on",
                "expires_on",
                "amount",
                "remaining",
                "status",
            ],
        ),
        (
            "Tier changes",
            info["tier_changes"],
            ["effective_on", "from_tier", "to_tier", "change", "basis"],
        ),
        ("Segments", info["segments"], ["segment_id", "group", "r", "f", "m", "value"]),
        ("Segment changes", info["segment_changes"], ["on_day", "segment_id", "group", "change"]),
        ("Badges", info["badges"], ["badge", "bonus_id", "period", "earned_on"]),
        (
            "Redemptions",
            info["redemptions"],
            ["redemption_id", "reward_id", "cost", "status", "reason", "coupon_code"],
        ),
        (
            "Workflow steps",
            info["workflow_steps"],
            [
                "run_on",
                "workflow_id",
                "step_id",
                "action",
                "channel",
                "message_id",
                "detail",
                "coupon_code",
            ],
        ),
        (
            "Orders",
            info["orders"],
            [
                "order_id",
                "day",
                "total",
                "status",
                "returned",
                "granted",
                "reversed",
                "release_on",
                "cancelled_on",
            ],
        ),
    ]
    # Columns with nothing to show for this member are left out (--format json has them).
    for title, rows, cols in sections:
        if rows:
            cells = [["" if r.get(c) is None else str(r.get(c)) for c in cols] for r in rows]
            table = fitted_table(
                title, cols, cells, console, drop_empty=True, zero_means_nothing=ZERO_MEANS_NOTHING
            )
            console.print(table, soft_wrap=False)


# Explain's columns that are left out when every row's value is 0 (nothing fell short,
# nothing returned or reversed).
ZERO_MEANS_NOTHING = frozenset({"shortfall", "returned", "reversed"})


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
        import duckdb

        if isinstance(exc, duckdb.OutOfMemoryException):
            from loyalty_cli import state

            error = state.out_of_memory(exc, "working on the state")
            reporters.render_text(error.diagnostics, _console(stderr=True))
            sys.exit(error.exit_code)
        _console(stderr=True).print(
            f"[bold red]internal error:[/bold red] {type(exc).__name__}: {escape(str(exc))}\n"
            "This is a bug in loyalty, not in your files. Run again with LOYALTY_DEBUG=1 "
            "to see the details and report them.",
            highlight=False,
        )
        sys.exit(ExitCode.INVALID)


if __name__ == "__main__":  # pragma: no cover
    main()
