"""`loyalty run` for day D: every stage of SPEC section 5 inside one transaction.

A run either commits everything (state, then its output folder is swapped in) or nothing:
a refused run or a killed process leaves the state as it was. Running the same day again
with the same exports changes nothing and writes the same files; missed nights are caught
up one day at a time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import re
import shutil
import tempfile
import time
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from loyalty_cli import state
from loyalty_cli.config.model import Program, load_program
from loyalty_cli.diagnostics import Diagnostic, ExitCode, LoyaltyError, first_line
from loyalty_cli.engine import (
    bonuses,
    earning,
    ledger,
    memberview,
    outputs,
    redemptions,
    returns,
    segments,
    tiers,
    workflows,
)
from loyalty_cli.engine.context import RunContext, id_range
from loyalty_cli.exprbase import value_error
from loyalty_cli.state import Connection

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass
class RunResult:
    """What a run did: its day, status, counts and where its files are."""

    as_of: dt.date
    status: str  # ok | refused | planned
    counts: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    models: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    out_dir: Path | None = None
    reason: str | None = None
    rejects: int = 0
    summary: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return ExitCode.REFUSED if self.status == "refused" else ExitCode.OK


def default_as_of(program: Program, now: dt.datetime | None = None) -> dt.date:
    """Yesterday in the program's timezone."""
    tz = zoneinfo.ZoneInfo(program.timezone)
    now = now or dt.datetime.now(tz)
    return (now.astimezone(tz) - dt.timedelta(days=1)).date()


def last_run_day(con: Connection) -> dt.date | None:
    return state.value(con, "SELECT max(as_of) FROM runs WHERE status = 'ok'")


# The stages of a day's run in order: timed in run.json (all but the commit) and reported,
# as each starts, to a `progress` callback with the day; "done" follows the last one.
STAGES = (
    "load",
    "prepare",
    "earning",
    "returns",
    "bonuses",
    "redemptions",
    "expiry",
    "tiers",
    "segments",
    "workflows",
    "outputs",
    "commit",
)
Progress = Callable[[dt.date, str], None]


def check_program(con: Connection, program: Program, state_path: str | Path | None) -> None:
    """Refuse (D609, exit 3) a program other than the one whose runs the state holds: a
    state is one program's ledger, and another program's rules, tiers and bonuses run on
    it would mix two programs' points (most often a wrong --state)."""
    row = con.execute(
        "SELECT program_id FROM runs WHERE status = 'ok' ORDER BY run_id DESC LIMIT 1"
    ).fetchone()
    if row is None or row[0] is None or row[0] == program.id:
        return
    raise LoyaltyError(
        Diagnostic(
            code="D609",
            path="" if state_path is None else str(state_path),
            message=f"the state holds the runs of program '{row[0]}', not of '{program.id}'",
            hint="Pass this program's state file (--state), or a new file to start it; if the "
            f"program was renamed, keep `program.id: {row[0]}`.",
        ),
        ExitCode.REFUSED,
    )


def _check_out_folder(out_dir: str | Path | None) -> None:
    """Say at once (D608), before any work, when the --out folder is a file or cannot be
    made there; the run makes it when it writes its first files."""
    if out_dir is None:
        return
    out = Path(out_dir)
    existing = out
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        problem, code = f"cannot be made: {str(existing)!r} is a file", ExitCode.USAGE
        if existing == out:
            problem = "is a file, not a folder"
    elif not os.access(existing, os.W_OK | os.X_OK):
        problem, code = f"cannot be written: no permission in {str(existing)!r}", ExitCode.INVALID
    else:
        return
    raise LoyaltyError(
        Diagnostic(
            code="D608",
            path=str(out),
            message=f"the --out folder {problem}",
            hint="Pass a folder the run may write to (--out DIR).",
        ),
        code,
    )


def _last_run_before(
    con: Connection,
    program: Program,
    state_path: str | Path | None,
    as_of: dt.date,
    hint: str,
) -> dt.date | None:
    """The state's last run day, after refusing another program (D609) or a day before that
    last run (D606, with `hint`)."""
    check_program(con, program, state_path)
    last = last_run_day(con)
    if last is not None and as_of < last:
        raise _refuse(
            f"the state was last run for {last}; a run for the earlier day {as_of} is refused",
            hint,
        )
    return last


def _refuse(message: str, hint: str) -> LoyaltyError:
    return LoyaltyError(Diagnostic(code="D606", message=message, hint=hint), ExitCode.REFUSED)


def run(
    program: Program | str | Path,
    data_dir: str | Path,
    as_of: dt.date | None = None,
    state_path: str | Path | None = "loyalty.duckdb",
    out_dir: str | Path | None = "out",
    *,
    catch_up: bool = True,
    progress: Progress | None = None,
    planned: Callable[[list[dt.date]], None] | None = None,
) -> list[RunResult]:
    """Run day `as_of` (catching up missed days first); returns one result per day run.

    `planned` gets the days about to be run; `progress` gets (day, stage) as each stage of
    each day starts (`STAGES`), then (day, "done").
    """
    if not isinstance(program, Program):
        program = load_program(program)
    data = data_folder(data_dir)
    as_of = as_of or default_as_of(program)
    _check_out_folder(out_dir)
    with _state_for_runs(state_path, program, as_of, out_dir) as con:
        last = _last_run_before(
            con,
            program,
            state_path,
            as_of,
            "Runs go forward in time. To replay history, use `loyalty backfill` on a fresh "
            "state file.",
        )
        days = [as_of]
        if last is not None and catch_up and (as_of - last).days > 1:
            days = [last + dt.timedelta(days=i) for i in range(1, (as_of - last).days + 1)]
        days = _files_missing(con, last, out_dir, days) + days
        return _run_days(con, program, data, days, out_dir, progress, planned)


@contextlib.contextmanager
def _state_for_runs(
    state_path: str | Path | None, program: Program, as_of: dt.date, out_dir: str | Path | None
) -> Iterator[Connection]:
    """The state for `run` and `backfill` (see _connect_for_run), closed afterwards.

    A state file that did not exist before is removed again when no run was committed to
    it: a first run that stops at a bad export or is refused leaves no file behind, as it
    found none."""
    fresh = state_path is not None and not Path(state_path).exists()
    con = _connect_for_run(state_path, program, as_of, out_dir)
    try:
        yield con
    finally:
        try:
            empty = fresh and not state.value(con, "SELECT count(*) FROM runs")
        except Exception:  # noqa: BLE001 - unsure what the file holds: it stays
            empty = False
        con.close()
        if empty:
            assert state_path is not None
            for leftover in (Path(state_path), Path(f"{state_path}.wal")):
                leftover.unlink(missing_ok=True)


def _connect_for_run(
    state_path: str | Path | None, program: Program, as_of: dt.date, out_dir: str | Path | None
) -> Connection:
    """The state, for a run of `as_of`. A state another run holds refuses the run (D604,
    exit 3); its `run.json` (status `refused`, the reason) is then written to the day's
    folder (SPEC 2), unless that folder holds the files of a run of the day already, which
    still describe the state."""
    try:
        return state.connect(state_path)
    except LoyaltyError as err:
        day = Path(out_dir) / as_of.isoformat() if out_dir is not None else None
        if err.exit_code == ExitCode.REFUSED and day is not None:
            if not (day / "balances.csv").exists():
                try:
                    day.mkdir(parents=True, exist_ok=True)
                    refused = RunResult(as_of, "refused", reason=err.diagnostics[0].message)
                    outputs.write_run_json(day, refused, program.id)
                except OSError:
                    pass  # the refusal itself is what the user is told
        raise


def data_folder(data_dir: str | Path) -> Path:
    """The --data folder; a usage error (exit 2) when it is missing or a file."""
    data = Path(data_dir)
    if not data.is_dir():
        raise LoyaltyError(
            Diagnostic(
                code="D601",
                path=str(data),
                message="the --data folder is a file, not a folder"
                if data.exists()
                else "the --data folder does not exist",
                hint="Pass the folder holding the night's exports.",
            ),
            ExitCode.USAGE,
        )
    return data


def _run_days(
    con: Connection,
    program: Program,
    data: Path,
    days: list[dt.date],
    out_dir: str | Path | None,
    progress: Progress | None,
    planned: Callable[[list[dt.date]], None] | None,
) -> list[RunResult]:
    """Run the days in order, stopping at the first that is not ok."""
    if planned:
        planned(days)
    results = []
    for day in days:
        on_stage = functools.partial(progress, day) if progress else None
        results.append(run_day(con, program, data, day, out_dir, on_stage=on_stage))
        if progress:
            progress(day, "done")
        if results[-1].status != "ok":
            break
    return results


def backfill(
    program: Program | str | Path,
    data_dir: str | Path,
    first_day: dt.date,
    last_day: dt.date,
    state_path: str | Path | None = "loyalty.duckdb",
    out_dir: str | Path | None = "out",
    *,
    progress: Progress | None = None,
    planned: Callable[[list[dt.date]], None] | None = None,
) -> list[RunResult]:
    """One run per day from `first_day` to `last_day`, in order (the way to import history).

    On a fresh state the first day's run covers all history up to that day. On a state
    last run before the day before `first_day`, the days in between are run first, as
    `run` catches up missed days. `planned` and `progress` as for `run`.
    """
    if not isinstance(program, Program):
        program = load_program(program)
    data = data_folder(data_dir)
    _check_out_folder(out_dir)
    with _state_for_runs(state_path, program, first_day, out_dir) as con:
        check_program(con, program, state_path)
        last = last_run_day(con)
        if last is not None and first_day < last:
            raise _refuse(
                f"the state was last run for {last}; backfill from {first_day} would go back "
                "in time",
                "Backfill onto a fresh state file (--state new.duckdb), or start after the "
                "last run.",
            )
        if last is not None and first_day > last + dt.timedelta(days=1):
            first_day = last + dt.timedelta(days=1)  # the missed days first
        days = [first_day + dt.timedelta(days=i) for i in range((last_day - first_day).days + 1)]
        days = _files_missing(con, last, out_dir, days) + days
        return _run_days(con, program, data, days, out_dir, progress, planned)


def _files_missing(
    con: Connection,
    last: dt.date | None,
    out_dir: str | Path | None,
    days: list[dt.date],
) -> list[dt.date]:
    """[last] when the last run was committed but its files did not get into place (killed,
    or a full disk, between the commit and moving them there; see run_day): running that
    day again, which changes nothing in the state, writes them before the days asked for."""
    if last is None or out_dir is None or not days or days[0] <= last:
        return []
    if state.get_meta(con, state.FILES_PENDING_KEY) != last.isoformat():
        return []
    return [last]


def plan(
    program: Program | str | Path,
    data_dir: str | Path,
    as_of: dt.date | None = None,
    state_path: str | Path | None = "loyalty.duckdb",
    *,
    progress: Progress | None = None,
) -> RunResult:
    """What `run` would do for one day, on a throw-away copy of the state; writes nothing.

    `progress` as for `run` (all stages but `commit`, then "done")."""
    if not isinstance(program, Program):
        program = load_program(program)
    data = data_folder(data_dir)
    as_of = as_of or default_as_of(program)
    with _state_copy(state_path) as copy:
        con = state.connect(copy)  # a fresh state in memory when there is none yet
        try:
            _last_run_before(con, program, state_path, as_of, "Runs go forward in time.")
            on_stage = functools.partial(progress, as_of) if progress else None
            result = run_day(con, program, data, as_of, None, dry_run=True, on_stage=on_stage)
            if progress:
                progress(as_of, "done")
            return result
        finally:
            con.close()


@contextlib.contextmanager
def _state_copy(state_path: str | Path | None) -> Iterator[Path | None]:
    """A private copy of the state file (and its write-ahead log) for a plan to run on and
    throw away; None when there is no state yet.

    The bytes are copied, which costs a fraction of loading the tables into memory and
    needs no more memory than a run. The copy is taken while a read-only connection holds
    the state: a run in progress makes that fail (exit 3, as for a second run), and no run
    can start while the bytes are read.
    """
    if state_path is None or str(state_path) == ":memory:" or not Path(state_path).exists():
        yield None
        return
    src = Path(state_path)
    with tempfile.TemporaryDirectory(prefix="loyalty-plan-") as tmp:
        copy = Path(tmp) / src.name
        guard = state.connect(src, read_only=True, upgradable=True)
        try:
            shutil.copyfile(src, copy)
            wal = src.with_name(src.name + ".wal")
            if wal.exists():
                shutil.copyfile(wal, copy.with_name(copy.name + ".wal"))
        except OSError as exc:
            raise state.state_error(
                src,
                f"cannot copy the state for the plan: {exc}",
                "A plan works on a copy of the state file in the temporary folder: set "
                "TMPDIR to a folder with room for it.",
            ) from None
        finally:
            guard.close()
        yield copy


def run_day(
    con: Connection,
    program: Program,
    data_dir: Path,
    as_of: dt.date,
    out_dir: str | Path | None,
    *,
    dry_run: bool = False,
    on_stage: Callable[[str], None] | None = None,
) -> RunResult:
    """One day's run in one transaction; outputs swapped in after the commit.

    `on_stage` gets the name of each stage (`STAGES`) as it starts.
    """
    from loyalty_cli.engine import sources as source_loader

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    last = last_run_day(con)
    window_start = last if last is not None and last < as_of else None
    if last == as_of:
        # A rerun of the last day: same window as that run had.
        window_start = state.value(
            con,
            "SELECT window_start FROM runs WHERE status = 'ok' AND as_of = ? "
            "ORDER BY run_id LIMIT 1",
            [as_of],
        )
    ctx = RunContext(con, program, as_of, window_start, data_dir=data_dir, dry_run=dry_run)
    final_dir = Path(out_dir) / as_of.isoformat() if out_dir is not None else None
    tmp_dir = None
    if final_dir is not None:
        final_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = final_dir.parent / f".{as_of.isoformat()}.tmp-{os.getpid()}"
        # Leftovers of a killed run for this day (the state lock keeps runs apart).
        for stale in (
            *final_dir.parent.glob(f".{as_of.isoformat()}.tmp-*"),
            *final_dir.parent.glob(f".{as_of.isoformat()}.old-*"),
        ):
            shutil.rmtree(stale, ignore_errors=True)
        tmp_dir.mkdir()

    stage = ["load"]  # the stage under way, for messages

    def lap(name: str, start: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - start, 4)
        _fault_point(name)
        stage[0] = STAGES[STAGES.index(name) + 1]
        if on_stage:
            on_stage(stage[0])
        return now

    con.execute("BEGIN TRANSACTION")
    try:
        if on_stage:
            on_stage("load")
        t = time.perf_counter()
        loaded = source_loader.load_sources(
            con,
            program.data["sources"],
            data_dir,
            as_of,
            program.timezone,
            program.currency,
            max_reject_rate=float(program.data["data"].get("max_reject_rate", 0.01)),
            known_customer_ids_table="customers",
            status_map=(program.data["sources"].get("orders") or {}).get("status_map"),
        )
        ctx.warnings.extend(loaded.warnings)
        for src, c in loaded.counts.items():
            for k, v in c.items():
                ctx.count("sources", f"{src}.{k}", v)
        t = lap("load", t)
        _prepare(ctx, loaded)
        loaded.refused = _reject_rate_verdict(ctx, loaded)
        if loaded.refused:
            refused = _write_refused(ctx, loaded, tmp_dir, final_dir, timings, t0)
            con.execute("ROLLBACK")
            return refused
        first_entry = ledger.last_entry_id(ctx)
        t = lap("prepare", t)
        ledger.release_due(ctx, created_before_run=True)
        earning.apply_earning(ctx)
        t = lap("earning", t)
        returns.apply_returns(ctx)
        t = lap("returns", t)
        bonuses.apply_bonuses(ctx)
        bonuses.apply_adjustments(ctx)
        t = lap("bonuses", t)
        redemptions.apply_redemptions(ctx)
        t = lap("redemptions", t)
        n = ledger.expire(ctx)
        ctx.count("expiry", "entries", n)
        t = lap("expiry", t)
        # order_days first: the tier step reads a spend basis from it.
        segments.refresh_order_days(ctx)
        if program.tiers:
            tiers.apply_tiers(ctx)
        t = lap("tiers", t)
        # Also without segments: the members of segments taken out of the program go.
        segments.apply_segments(ctx)
        t = lap("segments", t)
        try:
            workflows.apply_workflows(ctx)
        except workflows.Refused as exc:
            loaded.refused = exc.reason
            refused = _write_refused(ctx, loaded, tmp_dir, final_dir, timings, t0)
            con.execute("ROLLBACK")
            return refused
        t = lap("workflows", t)
        _mark_processed(ctx)
        outputs.update_totals(ctx, first_entry)
        outputs.build_balances(ctx)
        # Messages are rendered with the balances at the end of the run, before the counts
        # are taken: one whose template fails for its member is recorded as not sent.
        workflows.render_messages(ctx)
        state.set_meta(con, state.PROGRAM_KEY, _program_meta(program))
        counts, warnings = json.loads(json.dumps(ctx.counts)), list(ctx.warnings)
        if last != as_of:
            run_id = int(state.value(con, "SELECT coalesce(max(run_id), 0) + 1 FROM runs"))
            con.execute(
                "INSERT INTO runs VALUES (?, ?, ?, 'ok', ?, ?, ?, ?, ?)",
                [
                    run_id,
                    as_of,
                    window_start,
                    dt.datetime.now(),
                    dt.datetime.now(),
                    program.id,
                    json.dumps(counts, sort_keys=True),
                    json.dumps(warnings),
                ],
            )
        else:
            counts, warnings = _day_totals(con, as_of, counts, warnings)
        result = RunResult(
            as_of=as_of,
            status="planned" if dry_run else "ok",
            counts=counts,
            warnings=warnings,
            models=ctx.models,
        )
        result.rejects = int(state.value(con, f"SELECT count(*) FROM {loaded.rejects_table}"))
        result.summary = outputs.summary(ctx)
        if tmp_dir is not None and not dry_run:
            with _files_of(as_of, tmp_dir, final_dir, committed=False):
                outputs.write_all(ctx, tmp_dir, loaded.rejects_table)
            t = lap("outputs", t)
            # Cleared once the files are in place; a kill between the commit and then leaves
            # it for the next run, which writes this day's files first (_files_missing).
            state.set_meta(con, state.FILES_PENDING_KEY, as_of.isoformat())
        _fault_point("commit")
        if dry_run:
            con.execute("ROLLBACK")
        else:
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
    except BaseException as exc:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)
        doing = f"running the {stage[0]} step for {as_of}"
        if isinstance(exc, duckdb.OutOfMemoryException):
            raise state.out_of_memory(exc, doing) from None
        if isinstance(exc, duckdb.IOException):
            # The exports' and out/ files have their own messages (D603, D608): this is the
            # state file or DuckDB's spill folder next to it.
            raise LoyaltyError(
                Diagnostic(
                    code="D612",
                    message=f"the disk failed while {doing}; the state is unchanged: "
                    f"{first_line(str(exc))}",
                    hint="Check the free space and permissions of the state file's folder, "
                    "where DuckDB also spills what does not fit in memory, then run again.",
                ),
                ExitCode.INVALID,
            ) from None
        if value_error(exc):
            # In the workflows step the expression is an audience, `if` or `exit_when` of
            # one of the workflow files, or an award's points.
            whose = (
                "of a workflow (audience, if, exit_when, award)"
                if stage[0] == "workflows"
                else "of the program"
            )
            raise LoyaltyError(
                Diagnostic(
                    code="D613",
                    message=f"a value does not fit an expression {whose} while {doing}; the "
                    f"state is unchanged: {first_line(str(exc))}",
                    path=str(program.path),
                    hint="Where a value may not convert, use try_cast(...), which gives a "
                    "missing value instead; write nullif(x, 0) for a divisor that can be 0.",
                ),
                ExitCode.INVALID,
            ) from None
        raise
    _fault_point("committed")
    timings["total"] = round(time.perf_counter() - t0, 4)
    result.timings = timings
    if tmp_dir is not None and final_dir is not None:
        with _files_of(as_of, tmp_dir, final_dir, committed=True):
            outputs.write_run_json(tmp_dir, result, program.id, ctx.window_start)
            _swap_in(tmp_dir, final_dir)
        result.out_dir = final_dir
        if not dry_run:
            try:
                state.delete_meta(con, state.FILES_PENDING_KEY)
            except duckdb.Error:  # the files are in place: at worst the next run rewrites them
                pass
    if not dry_run:
        _tidy_ledger(con, first_entry)
    return result


@contextlib.contextmanager
def _files_of(
    as_of: dt.date, tmp_dir: Path, final_dir: Path | None, *, committed: bool
) -> Iterator[None]:
    """Writing a run's files: a failure removes the half-written folder and, when it is the
    disk's or the folder's (no space, no permission), says so as D608. Before the commit the
    run is then rolled back; after it, the next run writes the files (_files_missing)."""
    try:
        yield
    except BaseException as exc:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        if isinstance(exc, (OSError, duckdb.IOException)):
            if committed:
                what = f"the run for {as_of} is saved in the state, but its files"
                hint = (
                    "Make room or fix the folder's permissions, then run again: the next run "
                    "first writes this day's files, and changes nothing else for it."
                )
            else:
                what = f"the state is unchanged: the files of the run for {as_of}"
                hint = "Make room or fix the folder's permissions, then run the day again."
            raise LoyaltyError(
                Diagnostic(
                    code="D608",
                    path=str(final_dir or tmp_dir),
                    message=f"{what} could not be written: {first_line(str(exc))}",
                    hint=hint,
                ),
                ExitCode.INVALID,
            ) from None
        raise


def _tidy_ledger(con: Connection, first_entry: int) -> None:
    """After a run that made many entries, pack the ledger's last row groups (see
    ledger.compact_tail). The run is committed and its files are in place: this only
    spares the next run some work, so a failure here is not the run's."""
    try:
        made = state.value(con, f"SELECT count(*) FROM ledger WHERE entry_id > {int(first_entry)}")
        if made > ledger.TAIL_CHECK_ENTRIES:
            ledger.compact_tail(con)
    except duckdb.Error:
        pass


def _program_meta(program: Program) -> str:
    """What `loyalty report` reads of the program from the state (state.PROGRAM_KEY)."""
    section = program.data["program"]
    return json.dumps(
        {
            "id": program.id,
            "name": section.get("name") or program.id,
            "currency": program.currency,
            "point_value": str(section.get("point_value") or 0),
            "tiers": [
                {"id": lvl["id"], "name": lvl.get("name") or lvl["id"]}
                for lvl in program.levels
                if lvl.get("id") is not None
            ],
        },
        sort_keys=True,
    )


def _fault_point(stage: str) -> None:
    """Recovery testing: LOYALTY_KILL_AT=<stage> kills the process right after that stage."""
    if os.environ.get("LOYALTY_KILL_AT") == stage:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _swap_in(tmp_dir: Path, final_dir: Path) -> None:
    old = None
    if final_dir.exists():
        old = final_dir.parent / f".{final_dir.name}.old-{os.getpid()}"
        final_dir.rename(old)
    tmp_dir.rename(final_dir)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:  # a file (or a link) where the day's folder goes
            old.unlink(missing_ok=True)


# Each source's rows new to the state, by the name _prepare counts them under (`rows`).
_NEW_ROWS = {
    "orders": "orders",
    "order_items": "items",
    "returns": "returns",
    "events": "events",
    "redemptions": "redemptions",
    "adjustments": "adjustments",
}


def _reject_rate_verdict(ctx: RunContext, loaded) -> str | None:
    """The refusal when a source's rejected share of its new rows exceeds
    `data.max_reject_rate` (SPEC 3). New rows are the rows of the window not processed
    before, rejected ones included (a rejected row is never remembered); for customers,
    whose export is upserted whole, every row of the window. Rows a run processed earlier
    do not dilute a bad night's share."""
    from loyalty_cli.engine import sources as source_loader

    max_rate = float(ctx.program.data["data"].get("max_reject_rate", 0.01))
    rejected = dict(
        ctx.q(f"SELECT source, count(*) FROM {loaded.rejects_table} GROUP BY source").fetchall()
    )
    new_rows = ctx.counts.get("rows", {})
    cancelled = int(ctx.scalar("SELECT count(*) FROM new_returns WHERE _file IS NULL"))
    shares = []
    for name, counts in loaded.counts.items():
        bad = int(rejected.get(name, 0))
        if name in _NEW_ROWS:
            good = int(new_rows.get(_NEW_ROWS[name], 0)) - (cancelled if name == "returns" else 0)
            shares.append((name, bad, bad + good))
        else:
            shares.append((name, bad, int(counts["rows_new_window"])))
    return source_loader.reject_rate_verdict(shares, max_rate, rows="new rows")


def _write_refused(ctx, loaded, tmp_dir, final_dir, timings, t0) -> RunResult:
    result = RunResult(
        as_of=ctx.as_of,
        status="refused",
        counts=json.loads(json.dumps(ctx.counts)),
        warnings=ctx.warnings,
        reason=loaded.refused,
    )
    result.rejects = int(ctx.scalar(f"SELECT count(*) FROM {loaded.rejects_table}"))
    timings["total"] = round(time.perf_counter() - t0, 4)
    result.timings = timings
    if tmp_dir is not None and final_dir is not None:
        final_dir.mkdir(parents=True, exist_ok=True)
        outputs.write_rejects(ctx, final_dir / "rejects.csv", loaded.rejects_table)
        outputs.write_run_json(final_dir, result, ctx.program.id, ctx.window_start)
        shutil.rmtree(tmp_dir, ignore_errors=True)
        result.out_dir = final_dir
    return result


def _first_rowid(con: Connection, table: str) -> int:
    """The smallest rowid of a loaded table. `_pos` = rowid minus this is a row's place in
    its export (rowids of rows added in an open transaction start very high)."""
    row = con.execute(f"SELECT min(rowid) FROM {table}").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _expression_text(program: Program) -> str:
    """Every expression evaluated against the member view as at the start of the run, as
    one text: rule points and conditions, bonus conditions and goals. (Segments and
    workflows take the view again when they need it: memberview.py.)"""
    parts: list[str] = []
    for rule in (program.data.get("earning") or {}).get("rules") or []:
        parts += [str(rule.get("points", "")), str(rule.get("when", ""))]
    for bonus in program.data.get("bonuses") or []:
        parts += [str(bonus.get("when", "")), str((bonus.get("goal") or {}).get("sum", ""))]
    return "\n".join(parts)


def _extra_columns(program: Program, source: str) -> dict[str, str]:
    extra = ((program.data.get("sources") or {}).get(source) or {}).get("extra") or {}
    return {k: v for k, v in extra.items() if _IDENT.match(k)}


def _prepare(ctx: RunContext, loaded) -> None:
    """Upsert customers, build the member view, and pick this run's new rows."""
    from loyalty_cli.columns import DUCKDB_TYPES, MEMBER_COLUMNS, SOURCE_COLUMNS

    con, d = ctx.con, ctx.sql_date()
    t = loaded.tables
    cust_extra = _extra_columns(ctx.program, "customers")
    extra_json = (
        "json_object(" + ", ".join(f"'{k}', \"{k}\"" for k in cust_extra) + ")"
        if cust_extra
        else "CAST(NULL AS JSON)"
    )
    # Only new and changed customers are written: the export is usually the full list.
    changed = " OR ".join(
        f"s.{col} IS DISTINCT FROM c.{col}"
        for col in SOURCE_COLUMNS["customers"]
        if col != "customer_id"
    )
    con.execute(
        f"""INSERT OR REPLACE INTO customers
        SELECT * EXCLUDE (_write) FROM (
            SELECT s.customer_id, s.email, s.phone, s.first_name, s.last_name, s.birth_date,
                   s.joined_at, CAST(s.joined_at AS DATE), s.email_consent, s.sms_consent,
                   s.referred_by, s.locale, {extra_json} AS extra,
                   coalesce(c.first_seen_on, {d}),
                   c.customer_id IS NULL OR {changed}
                       OR CAST({extra_json} AS VARCHAR) IS DISTINCT FROM CAST(c.extra AS VARCHAR)
                       AS _write
            FROM {t["customers"]} s LEFT JOIN customers c USING (customer_id)) x
        WHERE _write"""
    )
    extra_cols = "".join(
        f", CAST(json_extract{'_string' if typ != 'list' else ''}(extra, '$.{k}') AS "
        f'{DUCKDB_TYPES[typ]}) AS "{k}"'
        for k, typ in cust_extra.items()
    )
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW cust_view AS SELECT c.* EXCLUDE (extra){extra_cols} "
        "FROM customers c"
    )
    # Member-view columns that need a pass over all lots or all orders are computed only
    # when an expression of the program names them (they are NULL/0 otherwise, unused).
    names = set(re.findall(r"[A-Za-z_]+", _expression_text(ctx.program)))
    # The view is a table, fixed as at the start of the run, when a rule or bonus
    # expression can read it (a member column or `member.`); otherwise a plain view, which
    # no stage reads (redemptions read the stored tiers), spares a pass over every member.
    reads_view = bool(names & {*MEMBER_COLUMNS, "member"})
    for kind in con.execute(
        "SELECT 'VIEW' FROM duckdb_views() WHERE view_name = 'member_view' AND temporary "
        "UNION ALL SELECT 'TABLE' FROM duckdb_tables() WHERE table_name = 'member_view'"
    ).fetchall():
        con.execute(f"DROP {kind[0]} member_view")
    con.execute(
        f"""CREATE TEMP {"TABLE" if reads_view else "VIEW"} member_view AS
        {memberview.member_view_sql(ctx, names=names, start_of_day=True)}"""
    )

    # The stored orders this export names (its orders, items and returns): every check
    # below needs only those, which spares hashing all stored orders for each of them.
    refs = " UNION ".join(
        f"SELECT order_id FROM {t[src]}"
        for src in ("orders", "order_items", "returns")
        if t.get(src)
    )
    # (A first run has no stored order to look for among millions of exported ids.)
    none_stored = not state.value(con, "SELECT count(*) FROM (SELECT 1 FROM orders LIMIT 1) o")
    named = f"{id_range('order_id', 'refs')} AND order_id IN (SELECT order_id FROM refs)"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _stored_orders AS
        WITH refs AS MATERIALIZED ({refs})
        SELECT order_id, status, processed_on FROM orders
        WHERE {"FALSE" if none_stored else named}"""
    )
    # Orders first processed in this run; re-exported orders that turned cancelled. When
    # the export names no stored order (a first run), every loaded order is new: new_orders
    # and new_items are then views over the loaded rows instead of copies of millions.
    stored_any = not none_stored and bool(state.value(con, "SELECT count(*) FROM _stored_orders"))
    for table in ("_new_orders", "_new_items"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    loaded_orders = f"""SELECT s.*, s.rowid - {_first_rowid(con, t["orders"])} AS _pos
        FROM {t["orders"]} s"""
    if stored_any:
        con.execute(
            f"""CREATE TEMP TABLE _new_orders AS {loaded_orders}
            WHERE NOT EXISTS (SELECT 1 FROM _stored_orders o WHERE o.order_id = s.order_id)"""
        )
        con.execute("CREATE OR REPLACE TEMP VIEW new_orders AS SELECT * FROM _new_orders")
    else:
        con.execute(f"CREATE OR REPLACE TEMP VIEW new_orders AS {loaded_orders}")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE cancelled_now AS
        SELECT o.order_id FROM {t["orders"]} s JOIN _stored_orders o USING (order_id)
        WHERE o.status = 'completed' AND s.status = 'cancelled'"""
    )
    con.execute(
        "CREATE OR REPLACE TEMP VIEW known_orders AS SELECT order_id FROM _stored_orders "
        "UNION ALL SELECT order_id FROM new_orders"
    )
    # Item rows go with their order, from the export in which it is first processed.
    items = t.get("order_items")
    all_new = bool(items) and not stored_any
    if all_new:  # are all items' orders in the export? (else rejects and held-back orders)
        all_new = not state.value(
            con,
            f"""SELECT count(*) FROM (SELECT 1 FROM {items} i
            WHERE NOT EXISTS (SELECT 1 FROM {t["orders"]} o WHERE o.order_id = i.order_id)
            LIMIT 1) x""",
        )
    if all_new:
        con.execute(
            f"CREATE OR REPLACE TEMP VIEW new_items AS "
            f"SELECT i.*, i.rowid - {_first_rowid(con, items)} AS _pos FROM {items} i"
        )
    elif items:
        con.execute(
            f"CREATE TEMP TABLE _new_items AS "
            f"SELECT i.*, i.rowid - {_first_rowid(con, items)} AS _pos FROM {items} i "
            "WHERE i.order_id IN (SELECT order_id FROM new_orders)"
        )
        con.execute("CREATE OR REPLACE TEMP VIEW new_items AS SELECT * FROM _new_items")
        ignored = state.value(
            con,
            f"""SELECT count(*) FROM {items} i
            WHERE i.order_id NOT IN (SELECT order_id FROM new_orders)
              AND i.order_id IN (SELECT order_id FROM _stored_orders
                                 WHERE processed_on < {ctx.sql_date()})""",
        )
        if ignored:
            ctx.warnings.append(
                f"{ignored} item row(s) of orders processed in an earlier run were ignored"
            )
            ctx.count("warnings", "items_of_processed_orders", ignored)
        held = _held_back_orders(loaded)
        con.execute(
            f"""INSERT INTO {loaded.rejects_table} (source, file, line, "column", reason)
            SELECT 'order_items', i._file, i._line, 'order_id', 'unknown_order' FROM {items} i
            WHERE i.order_id NOT IN (SELECT order_id FROM known_orders) {held}"""
        )
    if not items:
        con.execute(
            "CREATE OR REPLACE TEMP VIEW new_items AS SELECT NULL::VARCHAR AS order_id, "
            "0::BIGINT AS item_seq, 0::BIGINT AS _pos WHERE FALSE"
        )

    # new_events is a view: over the loaded rows themselves when no processed key can be
    # among them (a first run, or exports of days not seen yet), else over those left after
    # the processed keys of the export's days are taken out.
    events = t.get("events")
    con.execute("DROP TABLE IF EXISTS _new_events")
    if events:
        first_event = _first_rowid(con, events)
        overlap = state.value(
            con,
            f"""SELECT count(*) FROM (SELECT 1 FROM events_seen
            WHERE day >= (SELECT min(day) FROM {events}) LIMIT 1) s""",
        )
        if overlap:
            con.execute(
                f"""CREATE TEMP TABLE _new_events AS
                SELECT e.*, e.rowid - {first_event} AS _pos FROM {events} e
                WHERE NOT EXISTS (
                    SELECT 1 FROM events_seen s
                    WHERE s.event_key = e.event_key
                      AND s.day >= (SELECT min(day) FROM {events}))"""
            )
            con.execute("CREATE OR REPLACE TEMP VIEW new_events AS SELECT * FROM _new_events")
        else:
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW new_events AS "
                f"SELECT e.*, e.rowid - {first_event} AS _pos FROM {events} e"
            )
    else:
        con.execute(
            "CREATE OR REPLACE TEMP VIEW new_events AS SELECT NULL::VARCHAR AS event_key, "
            "NULL::VARCHAR AS customer_id, NULL::DATE AS day, 0::BIGINT AS _pos WHERE FALSE"
        )

    rets = t.get("returns")
    ret_select = (
        f"""SELECT r.order_id, r.returned_at, r.amount, r.day,
                   r.order_id || '|' || strftime(r.returned_at, '%Y-%m-%dT%H:%M:%S') || '|'
                       || CAST(r.amount AS VARCHAR) AS return_key, r._file, r._line
            FROM {rets} r
            WHERE NOT EXISTS (SELECT 1 FROM returns p WHERE p.order_id = r.order_id
                              AND p.returned_at = r.returned_at AND p.amount = r.amount)"""
        if rets
        else None
    )
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE new_returns AS
        SELECT * FROM ({ret_select or _NO_RETURNS})
        WHERE order_id IN (SELECT order_id FROM known_orders)"""
    )
    if rets:
        held = _held_back_orders(loaded, alias="r")
        con.execute(
            f"""INSERT INTO {loaded.rejects_table} (source, file, line, "column", reason)
            SELECT 'returns', r._file, r._line, 'order_id', 'unknown_order' FROM {rets} r
            WHERE r.order_id NOT IN (SELECT order_id FROM known_orders) {held}"""
        )
    # 9.2: an order re-exported as cancelled returns its whole remaining amount, dated D.
    con.execute(
        f"""INSERT INTO new_returns
        SELECT o.order_id, CAST({d} AS TIMESTAMP) + INTERVAL 1 DAY - INTERVAL 1 MICROSECOND,
               o.total - o.returned, {d}, o.order_id || '|cancelled', NULL, NULL
        FROM orders o JOIN cancelled_now c USING (order_id) WHERE o.total - o.returned > 0"""
    )

    for src, key in (("redemptions", "redemption_id"), ("adjustments", "adjustment_id")):
        tbl = t.get(src)
        if tbl:
            con.execute(
                f"""CREATE OR REPLACE TEMP TABLE new_{src} AS SELECT s.* FROM {tbl} s
                WHERE NOT EXISTS (SELECT 1 FROM {src} p WHERE p.{key} = s.{key})"""
            )
        else:
            cols = {
                "redemptions": "NULL::VARCHAR redemption_id, NULL::VARCHAR customer_id, "
                "NULL::VARCHAR reward_id, NULL::TIMESTAMP requested_at, NULL::DATE AS day",
                "adjustments": "NULL::VARCHAR adjustment_id, NULL::VARCHAR customer_id, "
                "NULL::BIGINT points, NULL::VARCHAR reason, NULL::TIMESTAMP created_at, "
                "NULL::DATE AS day",
            }[src]
            con.execute(f"CREATE OR REPLACE TEMP TABLE new_{src} AS SELECT {cols} WHERE FALSE")
    for name in (
        "new_orders",
        "new_items",
        "new_events",
        "new_returns",
        "new_redemptions",
        "new_adjustments",
    ):
        ctx.count("rows", name.removeprefix("new_"), ctx.scalar(f"SELECT count(*) FROM {name}"))


_NO_RETURNS = (
    "SELECT NULL::VARCHAR AS order_id, NULL::TIMESTAMP AS returned_at, "
    "NULL::DECIMAL(18,2) AS amount, NULL::DATE AS day, NULL::VARCHAR AS return_key, "
    "NULL::VARCHAR AS _file, NULL::BIGINT AS _line WHERE FALSE"
)


# Counts that describe the state or the exports as the run found them, not what it did:
# a rerun of a day reports its own (the same, when the data is), not a sum.
LEVEL_COUNTS = frozenset({"sources", "segments", "warnings"})


def _day_totals(con, day: dt.date, counts: dict, warnings: list[str]) -> tuple[dict, list]:
    """What all the runs for `day` did, after a rerun of it that did `counts`: the step
    counts added to those of the day's earlier runs, the levels (LEVEL_COUNTS, the codes
    left in a pool) as this run found them, and the earlier runs' warnings followed by this
    run's new ones. Stored with the day's run, so that every rerun adds to all before it:
    rerun with the same exports, a day reports (and writes in run.json) what its first run
    did."""
    row = con.execute(
        "SELECT run_id, counts, warnings FROM runs WHERE status = 'ok' AND as_of = ? "
        "ORDER BY run_id LIMIT 1",
        [day],
    ).fetchone()
    if row is None:
        return counts, warnings
    run_id, before, said = row[0], json.loads(row[1] or "{}"), json.loads(row[2] or "[]")
    total: dict[str, dict] = {}
    for step in sorted(set(before) | set(counts)):
        old, new = before.get(step) or {}, counts.get(step) or {}
        if step in LEVEL_COUNTS:
            total[step] = dict(new)
            continue
        total[step] = {
            key: new.get(key, 0) if key.endswith(".left") else old.get(key, 0) + new.get(key, 0)
            for key in sorted(set(old) | set(new))
            if not key.endswith(".left") or key in new
        }
    total = {step: items for step, items in total.items() if items}
    merged = said + [w for w in warnings if w not in said]
    con.execute(
        "UPDATE runs SET counts = ?, warnings = ?, finished_at = ? WHERE run_id = ?",
        [json.dumps(total, sort_keys=True), json.dumps(merged), dt.datetime.now(), run_id],
    )
    return total, merged


def order_extra_json(ctx: RunContext) -> str:
    """SQL packing an order row's declared extra columns into JSON (or NULL)."""
    order_extra = _extra_columns(ctx.program, "orders")
    if not order_extra:
        return "CAST(NULL AS JSON)"
    return "json_object(" + ", ".join(f"'{k}', o.\"{k}\"" for k in order_extra) + ")"


def _held_back_orders(loaded, alias: str = "i") -> str:
    """SQL excluding rows whose order is in the export but after the run's day."""
    held = loaded.held_back_orders_table
    if not held:
        return ""
    return f"AND {alias}.order_id NOT IN (SELECT order_id FROM {held})"


def _mark_processed(ctx: RunContext) -> None:
    d = ctx.sql_date()
    ctx.q(f"INSERT INTO events_seen SELECT event_key, day, {d} FROM new_events")
    ctx.q(
        f"UPDATE orders SET status = 'cancelled', cancelled_on = {d} "
        "WHERE order_id IN (SELECT order_id FROM cancelled_now)"
    )
