"""Stage 1 of a run: load the shop's exports into DuckDB and check them.

SPEC 3 (data contract), 5 step 1, 9.1-9.4 and 9.19-9.22.

Each export file is read once: one INSERT per file reads every value as text, converts it
to the canonical typed columns and finds the row's first failing check (in the order of
``_check_list``) and whether it waits for a later run, appending the rows to the source's
typed table in file order. That table then becomes ``src_<name>`` in place: line numbers come
from rowids, unknown customers and line numbers are updated, rejects are copied out, bad,
held-back and repeated rows are deleted and the bookkeeping columns dropped, so the rows are
never copied or sorted again. No Python code ever looks at a single row, so tens of millions
of rows cost little more than what DuckDB's CSV reader costs.

Problems with a file as a whole (nothing matched, a required column missing, a file that
cannot be parsed) are collected for all sources and raised together as one ``LoyaltyError``
(D601, D602, D603, R306); problems with rows become rejects.
"""

from __future__ import annotations

import csv
import difflib
import gzip
import hashlib
import json
import os
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from loyalty_cli import state
from loyalty_cli.columns import DUCKDB_TYPES, REQUIRED_SOURCES, SOURCE_COLUMNS
from loyalty_cli.diagnostics import Diagnostic, LoyaltyError, first_line
from loyalty_cli.engine.timeutil import (
    check_timezone,
    end_of_day_sql,
    instant_sql,
    local_timestamp_sql,
    naive_timestamp_sql,
    sql_ident,
    sql_literal,
)
from loyalty_cli.state import Connection

# Sources in load order: customers first, the others check their customer against it.
SOURCE_ORDER = (
    "customers",
    "orders",
    "order_items",
    "returns",
    "events",
    "redemptions",
    "adjustments",
)

# The timestamp that gives a row its day and decides whether it waits for a later run.
TIME_COLUMN = {
    "customers": "joined_at",
    "orders": "ordered_at",
    "returns": "returned_at",
    "events": "occurred_at",
    "redemptions": "requested_at",
    "adjustments": "created_at",
}

# Rows of these sources must belong to a customer of the export or of the state (9.4).
CUSTOMER_SOURCES = ("orders", "events", "redemptions", "adjustments")

# The column shown as ``key`` in rejects; also the dedupe key where it is a single column.
KEY_COLUMN = {
    "customers": "customer_id",
    "orders": "order_id",
    "order_items": "order_id",
    "returns": "order_id",
    "events": "event_id",
    "redemptions": "redemption_id",
    "adjustments": "adjustment_id",
}

# File name endings and how they are read; JSON files are JSON lines (one object a line).
FORMATS = (
    (".csv.gz", "csv"),
    (".csv", "csv"),
    (".parquet", "parquet"),
    (".jsonl.gz", "json"),
    (".ndjson.gz", "json"),
    (".json.gz", "json"),
    (".jsonl", "json"),
    (".ndjson", "json"),
    (".json", "json"),
)

# Stable reject reasons (docs/data.md lists them with examples).
REASONS = (
    "missing_value",
    "bad_number",
    "bad_date",
    "bad_timestamp",
    "bad_boolean",
    "bad_json",
    "negative_total",
    "negative_quantity",
    "negative_amount",
    "unknown_currency",
    "unknown_status",
    "unknown_customer",
)
PARSE_REASON = {
    "integer": "bad_number",
    "decimal": "bad_number",
    "date": "bad_date",
    "timestamp": "bad_timestamp",
    "boolean": "bad_boolean",
    "json": "bad_json",
}
ORDER_STATUSES = ("completed", "cancelled")
BOOLEAN_TRUE = ("true", "t", "1", "yes", "y")
BOOLEAN_FALSE = ("false", "f", "0", "no", "n")
HELD_ORDERS = "src_orders_held"
RESERVED_COLUMNS = ("day", "event_key", "item_seq")  # added to the loaded tables
HEADER_PEEK = 1 << 20  # bytes read to find a CSV header line
# DuckDB's CSV reader hands each buffer of text to the insert as one batch of rows; with its
# default buffer a 10M-row export costs ~30% more CPU (more, smaller batches to put in order),
# with 32 MB ~15% more once the tables loaded before it fill the memory limit.
# Its line limit (DuckDB's default, 2 MB) must then be given too, or it grows with the buffer.
CSV_BUFFER_SIZE = 64 << 20
MAX_LINE_SIZE = 2_000_000
# A file smaller than two large buffers would be read by one thread: a nightly's 10 MB
# customers file converts in 0.10 s with 8 MB buffers against 0.15 s with one 64 MB buffer.
SMALL_CSV_BUFFER_SIZE = 8 << 20


def csv_buffer_size(path: str | os.PathLike) -> int:
    """DuckDB's read buffer for one CSV file: large for files from 32 MB (and compressed
    ones, read by one thread anyway), smaller for the rest."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return CSV_BUFFER_SIZE
    if str(path).lower().endswith(".gz") or size >= 4 * SMALL_CSV_BUFFER_SIZE:
        return CSV_BUFFER_SIZE
    return SMALL_CSV_BUFFER_SIZE


@dataclass
class LoadResult:
    """What stage 1 hands to the rest of the run."""

    tables: dict[str, str]  # source -> temp table with the good rows in the window
    counts: dict[str, dict]  # source -> rows_read, rows_new_window, held_back, rejected, ...
    rejects_table: str  # source, file, line, "column", reason, key
    refused: str | None  # why the run must stop for its data (reject rate), else None
    warnings: list[str] = field(default_factory=list)
    held_back_orders_table: str | None = None  # order_id of orders dated after the day


@dataclass
class _Column:
    """One column a source is read into: canonical or declared extra."""

    name: str
    kind: str  # a columns.TYPES name, or "json"
    required: bool
    export: str  # the export's column (or JSON key) it is read from


@dataclass
class _Part:
    """One export file loaded as text into a temp table."""

    fileno: int
    rel: str  # path relative to the data folder, shown in rejects
    shown: str  # path as the user gave it, shown in diagnostics
    fmt: str  # csv | json | parquet
    table: str = ""
    select: str = ""  # SELECT producing the source's raw columns with _file/_line
    columns: dict[str, str | None] = field(default_factory=dict)  # canonical -> file column


@dataclass
class _Source:
    name: str
    spec: dict
    columns: list[_Column]
    parts: list[_Part] = field(default_factory=list)
    work: str = ""  # the typed table every file's rows are converted into, in file order
    ordered: bool = True  # the typed table's rowid order is (file, line) order


class _Loader:
    """Holds the run's settings and the diagnostics and warnings collected on the way."""

    def __init__(
        self,
        con: Connection,
        data_dir: Path,
        as_of: date,
        timezone: str,
        currency: str,
        status_map: dict,
        known_table: str | None,
    ):
        self.con = con
        self.data_dir = Path(data_dir)
        self.root = self.data_dir.resolve()
        self.as_of = as_of
        self.timezone = timezone
        self.currency = currency.strip().upper()
        self.status_map = status_map
        self.known_table = known_table
        self.diagnostics: list[Diagnostic] = []
        self.warnings: list[str] = []
        self.check_warnings: list[str] = []  # about rows; they follow those about files
        self.temp: list[tuple[str, str]] = []  # (kind, name) to drop at the end
        self.check_only = False  # read headers only: the load already failed
        self.db_failed = False  # a statement failed: DuckDB may refuse any further one
        self.plans: dict[str, str] | None = None  # remembered plan facts, see plan_fact()
        self.new_plans: dict[str, str] = {}
        self.keeps_plans = False  # the connection has a state's `meta` to keep them in
        self.used_plans: set[str] = set()

    # -- plumbing ---------------------------------------------------------------------------

    def plan_fact(self, kind: str, sql: str, compute: Callable[[], str | None]) -> str | None:
        """A fact about how DuckDB plans `sql` (its result columns, whether an insert keeps
        the rows' order), remembered in the state's `meta` across runs.

        Such a fact depends only on the SQL text and the DuckDB version, and planning the
        loader's conversions (hundreds of expressions) costs milliseconds per statement:
        a nightly run would plan them three times per file. `compute` returns None for a
        fact not worth remembering. Without a `meta` table (no state), nothing is kept.
        """
        if self.plans is None:
            self.plans = {}
            has_meta = state.value(
                self.con,
                "SELECT count(*) FROM duckdb_tables() "
                "WHERE table_name = 'meta' AND database_name = current_database() "
                "AND schema_name = current_schema() AND NOT temporary",
            )
            self.keeps_plans = bool(has_meta)
            if has_meta:
                self.plans = dict(
                    self.con.execute(
                        "SELECT key, value FROM meta WHERE key LIKE 'plan:%'"
                    ).fetchall()
                )
        # The day's end (the rows held back) is the only literal that changes every night.
        shape = sql.replace(end_of_day_sql(self.as_of), "<end of the run's day>")
        digest = hashlib.sha256(f"{duckdb.__version__}\n{kind}\n{shape}".encode()).hexdigest()
        key = f"plan:{kind}:{digest[:32]}"
        self.used_plans.add(key)
        value = self.plans.get(key)
        if value is None:
            value = compute()
            if value is not None:
                self.plans[key] = value
                if self.keeps_plans:
                    self.new_plans[key] = value
        return value

    def remember_plans(self) -> None:
        """Store the plan facts learnt by this load (in the caller's transaction); those
        this load did not use go, so the set stays that of the shop's current exports."""
        if self.new_plans:
            self.con.execute(
                "DELETE FROM meta WHERE key LIKE 'plan:%' AND NOT list_contains(?, key)",
                [sorted(self.used_plans)],
            )
            self.con.executemany(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", list(self.new_plans.items())
            )
            self.new_plans = {}

    def fail_if_any(self) -> None:
        if self.diagnostics:
            raise LoyaltyError(self.diagnostics)

    def temp_table(self, name: str, select: str, part: _Part | None = None, source=None) -> str:
        self.temp.append(("TABLE", name))
        self.run(f"CREATE OR REPLACE TEMP TABLE {name} AS {select}", part, source)
        return name

    def run(self, sql: str, part: _Part | None = None, source: _Source | None = None):
        """Execute SQL; a DuckDB error becomes D603 naming the file (and line if known)."""
        try:
            return self.con.execute(sql)
        except duckdb.OutOfMemoryException as exc:
            self.db_failed = True
            what = part.shown if part is not None else source.name if source else "the exports"
            raise state.out_of_memory(exc, f"loading {what}") from None
        except duckdb.Error as exc:
            # In the caller's transaction the error aborts it: no more SQL after this one.
            self.db_failed = True
            if part is not None:
                raise LoyaltyError(_parse_error(part, source, exc)) from None
            shown = ", ".join(p.shown for p in source.parts) if source else "exports"
            raise LoyaltyError(
                Diagnostic(
                    "D603",
                    f"{source.name if source else 'exports'}: cannot be processed: "
                    f"{first_line(str(exc))}",
                    path=shown,
                )
            ) from None

    def scalar(self, sql: str, part: _Part | None = None, source: _Source | None = None):
        """The single value a query returns."""
        row = self.run(sql, part, source).fetchone()
        assert row is not None  # aggregates always return a row
        return row[0]

    def drop_temp(self) -> None:
        for kind, name in reversed(self.temp):
            try:
                self.con.execute(f"DROP {kind} IF EXISTS {name}")
            except duckdb.Error:  # an aborted transaction: the caller rolls back anyway
                pass
        self.temp.clear()


def load_sources(
    con: Connection,
    sources: dict,
    data_dir: Path,
    as_of: date,
    timezone: str,
    currency: str,
    max_reject_rate: float = 0.01,
    known_customer_ids_table: str | None = None,
    status_map: dict | None = None,
) -> LoadResult:
    """Load and check every source for the run of day ``as_of`` (SPEC 5 step 1).

    ``sources`` is the program's validated ``sources`` mapping. Good rows go to temp tables
    ``src_<source>``, rejects to ``src_rejects``; ``refused`` is set when a source's rejected
    share of the rows in the window exceeds ``max_reject_rate``. Raises ``LoyaltyError``
    (R306, D601, D602, D603) for problems with whole files.
    """
    check_timezone(con, timezone)
    merged_map = dict((sources.get("orders") or {}).get("status_map") or {})
    merged_map.update(status_map or {})
    loader = _Loader(con, data_dir, as_of, timezone, currency, merged_map, known_customer_ids_table)
    plans = [_plan_source(name, sources.get(name), loader.warnings) for name in SOURCE_ORDER]
    # Outside a transaction DuckDB checkpoints after every 16 MiB written, temp tables included,
    # and each checkpoint re-compresses the tables just loaded: seconds per million rows, again
    # and again. Inside the caller's transaction it checkpoints only at commit.
    threshold = None
    if not _in_transaction(con):
        threshold = loader.scalar("SELECT current_setting('checkpoint_threshold')")
        con.execute("SET checkpoint_threshold = '1TB'")
    rejects = "src_rejects"
    tables: dict[str, str] = {}
    counts: dict[str, dict] = {}
    try:
        for plan in plans:
            _find_files(loader, plan)
        for plan in plans:
            for part in plan.parts:
                _read_part(loader, plan, part)
            # Each source is checked as soon as its files are read, while its rows are still
            # in memory; once any file has a problem the load fails and nothing is checked.
            if loader.diagnostics or loader.db_failed:
                continue
            if not tables:
                loader.run(
                    f"CREATE OR REPLACE TEMP TABLE {rejects} (source VARCHAR, file VARCHAR, "
                    'line BIGINT, "column" VARCHAR, reason VARCHAR, key VARCHAR)'
                )
            tables[plan.name], counts[plan.name] = _check_source(loader, plan, rejects)
        loader.fail_if_any()
        loader.warnings += loader.check_warnings
        loader.remember_plans()
    except BaseException:
        # A failed load leaves no result tables behind, however far it got.
        if tables:
            loader.temp += [("TABLE", t) for t in (rejects, HELD_ORDERS, *tables.values())]
        raise
    finally:
        loader.drop_temp()
        if threshold is not None:
            con.execute(f"SET checkpoint_threshold = {sql_literal(threshold)}")
    refused = _reject_rate_verdict(counts, max_reject_rate)
    held = HELD_ORDERS if "orders" in tables else None
    return LoadResult(tables, counts, rejects, refused, loader.warnings, held)


# -- planning and files -------------------------------------------------------------------------


def _in_transaction(con: Connection) -> bool:
    """Whether the caller opened a transaction (then every statement shares one id)."""
    first = con.execute("SELECT current_transaction_id()").fetchone()
    second = con.execute("SELECT current_transaction_id()").fetchone()
    return first == second


def _plan_source(name: str, spec: dict | None, warnings: list[str]) -> _Source:
    """The columns a source is read into: canonical ones, then the declared extras."""
    spec = dict(spec or {})
    mapping = spec.get("columns") or {}
    cols = [
        _Column(canon, kind, required, str(mapping.get(canon, canon)))
        for canon, (kind, required) in SOURCE_COLUMNS[name].items()
    ]
    for extra, kind in (spec.get("extra") or {}).items():
        if extra in SOURCE_COLUMNS[name]:
            continue
        if extra in RESERVED_COLUMNS or extra.startswith(("_", "r__")):
            warnings.append(f"sources.{name}.extra.{extra}: the name is reserved; ignored")
            continue
        cols.append(_Column(extra, kind, False, str(mapping.get(extra, extra))))
    return _Source(name, spec, cols)


def _find_files(loader: _Loader, src: _Source) -> None:
    """Resolve the source's path or glob under the data folder (sorted), or report why not."""
    pattern = src.spec.get("path")
    where = f"sources.{src.name}.path"
    if not pattern:
        if src.name in REQUIRED_SOURCES:
            loader.diagnostics.append(
                Diagnostic(
                    "D601",
                    f"source {src.name!r} is required but has no path",
                    where=where,
                    hint=f"add sources.{src.name}: {{path: {src.name}.csv}} to the program",
                )
            )
        return
    pattern = str(pattern)
    pure = Path(pattern)
    if pure.is_absolute() or ".." in pure.parts:
        loader.diagnostics.append(
            Diagnostic(
                "R306",
                f"{where} {pattern!r} leaves the data folder",
                where=where,
                hint="paths are relative to --data and may not use '..' or start with '/'",
            )
        )
        return
    try:
        matches = sorted(
            (p for p in loader.data_dir.glob(pattern) if p.is_file()),
            key=lambda p: p.relative_to(loader.data_dir).as_posix(),
        )
    except (ValueError, OSError) as exc:
        loader.diagnostics.append(
            Diagnostic("R306", f"{where} {pattern!r} is not a usable pattern: {exc}", where=where)
        )
        return
    for path in matches:
        real = path.resolve()
        if real != loader.root and loader.root not in real.parents:
            loader.diagnostics.append(
                Diagnostic(
                    "R306",
                    f"{path} points outside the data folder (to {real})",
                    path=str(path),
                    where=where,
                    hint="copy the export into the data folder instead of linking to it",
                )
            )
            return
    if not matches:
        if src.name in REQUIRED_SOURCES:
            loader.diagnostics.append(_missing_source(loader, src.name, pattern, where))
        return
    for number, path in enumerate(matches):
        rel = path.relative_to(loader.data_dir).as_posix()
        fmt = _format_of(rel)
        if fmt is None:
            loader.diagnostics.append(
                Diagnostic(
                    "D603",
                    f"{rel}: unsupported file type for source {src.name!r}",
                    path=str(path),
                    hint="exports are .csv, .csv.gz, .parquet, or JSON lines "
                    "(.jsonl, .ndjson, .json)",
                )
            )
            continue
        src.parts.append(_Part(number, rel, str(path), fmt))


def _missing_source(loader: _Loader, name: str, pattern: str, where: str) -> Diagnostic:
    present = []
    if loader.data_dir.is_dir():
        present = sorted(p.name for p in loader.data_dir.iterdir() if p.is_file())
    close = difflib.get_close_matches(pattern, present, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}? " if close else ""
    hint += f"set {where} to the export's file name (globs such as 'orders-*.csv' are allowed)"
    return Diagnostic(
        "D601",
        f"no file matches {pattern!r} for required source {name!r} in {loader.data_dir}",
        path=str(loader.data_dir / pattern),
        where=where,
        hint=hint,
    )


def _format_of(rel: str) -> str | None:
    lower = rel.lower()
    for suffix, fmt in FORMATS:
        if lower.endswith(suffix):
            return fmt
    return None


# -- reading files as text ----------------------------------------------------------------------


def _read_part(loader: _Loader, src: _Source, part: _Part) -> None:
    """Load one file into a temp table of text columns; record D602/D603 and go on.

    Once some problem is known the run cannot go ahead, so the remaining files only get the
    cheap checks of their columns (no data is loaded) to report everything in one go.
    """
    part.table = f"__ls_{src.name}_{part.fileno}"
    loader.check_only = bool(loader.diagnostics)
    if loader.db_failed and part.fmt != "csv":  # only a CSV header can be checked without SQL
        return
    try:
        if part.fmt == "csv":
            _read_csv(loader, src, part)
        elif part.fmt == "json":
            _read_json(loader, src, part)
        else:
            _read_parquet(loader, src, part)
        if part.select and not loader.check_only:
            _convert_part(loader, src, part)
    except LoyaltyError as err:
        loader.diagnostics.extend(err.diagnostics)


def _work_table(loader: _Loader, src: _Source) -> str:
    """The source's typed table (created empty on first use): the columns of ``src_<name>``
    in their final order, then the bookkeeping columns ``_fileno, _err, _held, _nl``."""
    if not src.work:
        # CREATE TABLE with the columns' types, not CREATE TABLE AS of no rows: DuckDB 2.0
        # loses track of the rows appended in the same transaction to a table created that
        # way (scans of rowid or an all-NULL column then see no rows).
        typed = _typed_sql(loader, src, _empty_select(src))

        def describe() -> str:
            described = loader.run(f"DESCRIBE {typed}", source=src).fetchall()
            return ", ".join(f"{sql_ident(row[0])} {row[1]}" for row in described)

        columns = loader.plan_fact("columns", typed, describe)
        assert columns is not None  # describe() always has an answer
        src.work = f"__lt_{src.name}"
        loader.temp.append(("TABLE", src.work))
        loader.run(f"CREATE OR REPLACE TEMP TABLE {src.work} ({columns})", source=src)
    return src.work


def _convert_part(loader: _Loader, src: _Source, part: _Part) -> None:
    """Read one file's rows, convert and check them, and append them to the typed table.

    Files are appended in path order and each file's rows in file order, so the typed
    table's rowid order is (file, line) order: the loaded tables keep it without sorting.
    """
    work = _work_table(loader, src)
    insert = f"INSERT INTO {work} {_typed_sql(loader, src, part.select)}"
    if not _keeps_order(loader, insert, part, src):
        # DuckDB would append the rows out of file order: give each row its line number
        # first (CSV: from a table of the file's text), and sort the loaded table at the end.
        src.ordered = False
        if part.fmt == "csv":
            part.select = _staged_csv(loader, src, part)
            insert = f"INSERT INTO {work} {_typed_sql(loader, src, part.select)}"
    loader.run(insert, part, src)
    if part.fmt != "parquet":  # the text of the lines is no longer needed
        loader.run(f"DROP TABLE IF EXISTS {part.table}", part, src)


def _keeps_order(loader: _Loader, insert: str, part: _Part, src: _Source) -> bool:
    """Whether DuckDB appends the rows of ``insert`` in the order its source reads them.

    It does (a batch insert) unless an operator of the plan may reorder rows, e.g. a join,
    or ``preserve_insertion_order`` is off. The conversions avoid such operators; this check
    keeps the line numbers right should one ever slip in.
    """

    def explained() -> str | None:
        plan = loader.run(f"EXPLAIN (FORMAT json) {insert}", part, src).fetchall()
        try:
            top = json.loads(plan[0][1])[0]["name"]
        except (ValueError, LookupError, TypeError):
            return None
        return "yes" if str(top).strip().upper() == "BATCH_INSERT" else None

    if part.fmt != "csv":  # other readers' plans may depend on the file itself
        return explained() == "yes"
    # The plan of a CSV part does not depend on which file it reads: the fact is kept per
    # SQL with the file's names and buffer size left out (its kind of compression kept in).
    shape = insert.replace(sql_literal(str(part.shown)), "'<file>'").replace(
        sql_literal(part.rel), "'<name>'"
    )
    shape += "\n" + "".join(Path(part.shown).suffixes[-2:]).lower()
    shape = re.sub(r"buffer_size=\d+", "buffer_size=?", shape)  # chosen by the file's size
    return loader.plan_fact("keeps_order", shape, explained) == "yes"


def _staged_csv(loader: _Loader, src: _Source, part: _Part) -> str:
    """The CSV part's select over a table of its text whose rowids give the line numbers."""
    loader.temp_table(part.table, part.select, part, src)
    first = loader.scalar(f"SELECT min(rowid) FROM {part.table}", part, src)
    first_row_line = 2 if _csv_settings(src)["header"] else 1
    line = f"rowid - {int(first or 0)} + {first_row_line}"
    if loader.scalar(f"SELECT max(_nl) FROM {part.table}", part, src):
        line += (
            " + coalesce(sum(_nl) OVER (ORDER BY rowid ROWS BETWEEN UNBOUNDED PRECEDING "
            "AND 1 PRECEDING), 0)"
        )
    names = ", ".join(sql_ident(c.name) for c in src.columns)
    return (
        f"SELECT _fileno, _file, CAST({line} AS BIGINT) AS _line, _nl, _comma, _bad_json, "
        f"{names} FROM {part.table}"
    )


def _csv_settings(src: _Source) -> dict:
    opts = dict(src.spec.get("csv") or {})
    quote = opts.get("quote", '"')
    return {
        "delimiter": str(opts.get("delimiter", ",")),
        "quote": "" if quote is None else str(quote),
        "header": bool(opts.get("header", True)),
        "decimal": str(opts.get("decimal", ".")),
    }


def _read_csv(loader: _Loader, src: _Source, part: _Part) -> None:
    opts = _csv_settings(src)
    first = _csv_first_record(part, opts)
    if first is None:
        loader.warnings.append(f"{part.rel}: the file is empty; read as no rows")
        part.select = ""
        return
    if opts["header"]:
        names = _unique_names(first)
        # Names equal but for case and surrounding spaces are one column said twice (they
        # match the same expected name); _match_columns takes the first.
        spelt: dict[str, list[str]] = {}
        for n in first:
            if n.strip() and n not in spelt.setdefault(n.strip().casefold(), []):
                spelt[n.strip().casefold()].append(n)
        repeated = sorted(
            "/".join(map(repr, ways))
            for key, ways in spelt.items()
            if sum(n.strip().casefold() == key for n in first) > 1
        )
        if repeated:
            loader.warnings.append(
                f"{part.rel}: the header repeats {', '.join(repeated)}; the first of each is used"
            )
    else:
        names = [f"column{i}" for i in range(1, len(first) + 1)]
    part.columns = _match_columns(loader, src, part, names, positional=not opts["header"])
    if loader.check_only or _lacks_required(src, part):
        return
    struct = "{" + ", ".join(f"{sql_literal(n)}: 'VARCHAR'" for n in names) + "}"
    quote = opts["quote"]
    read = (
        f"read_csv({sql_literal(str(part.shown))}, columns={struct}, auto_detect=false, "
        f"header={str(opts['header']).lower()}, delim={sql_literal(opts['delimiter'])}, "
        f"quote={sql_literal(quote)}, escape={sql_literal(quote)}, skip=0, comment='', "
        f"strict_mode=true, null_padding=false, buffer_size={csv_buffer_size(part.shown)}, "
        f"max_line_size={MAX_LINE_SIZE})"
    )
    cols = _select_columns(src, part.columns)
    nl = "0"
    if quote:  # a quoted value may span lines: count them to keep physical line numbers
        has_nl = " OR ".join(f"contains({sql_ident(n)}, chr(10))" for n in names)
        text = "concat(" + ", ".join(sql_ident(n) for n in names) + ")"
        nl = f"CASE WHEN {has_nl} THEN strlen({text}) - strlen(replace({text}, chr(10), '')) END"
    # The line is set once the rows are in the typed table, from their rowid (_set_lines).
    comma = str(opts["decimal"] == ",").lower()
    part.select = (
        f"SELECT {part.fileno} AS _fileno, {sql_literal(part.rel)} AS _file, "
        f"NULL::BIGINT AS _line, CAST(coalesce({nl}, 0) AS INTEGER) AS _nl, {comma} AS _comma, "
        f"false AS _bad_json, {cols} FROM {read}"
    )


def _csv_first_record(part: _Part, opts: dict) -> list[str] | None:
    """The first record of a CSV file (its header), read by Python: None if the file is empty.

    Reading it here rather than letting DuckDB sniff gives exact column names, a clear D603 for
    files that are not text, and no guessing of delimiters or comment lines.
    """
    path = Path(part.shown)
    try:
        if part.rel.lower().endswith(".gz"):
            with gzip.open(path, "rb") as gz:
                chunk = gz.read(HEADER_PEEK)
        else:
            with open(path, "rb") as fh:
                chunk = fh.read(HEADER_PEEK)
    except (OSError, EOFError, zlib.error) as exc:
        raise LoyaltyError(
            _file_error(part, f"cannot be read: {exc}", "re-create the export; is it complete?")
        ) from None
    chunk = chunk.removeprefix(b"\xef\xbb\xbf")
    if not chunk.strip():
        return None
    end = chunk.find(b"\n")
    if end < 0 and len(chunk) >= HEADER_PEEK - 3:
        raise LoyaltyError(
            _file_error(part, "no line break in the first MiB: not a CSV file?", line=1)
        )
    if not chunk[: end if end >= 0 else len(chunk)].strip():
        raise LoyaltyError(
            _file_error(part, "the first line is empty; expected the header", line=1)
        )

    def lines():
        """The chunk's lines as text, with their line ends: a quoted value of the first
        record may span several (a headerless file's first row with a note or an address)."""
        start, number = 0, 1
        while start < len(chunk):
            stop = chunk.find(b"\n", start)
            stop = len(chunk) if stop < 0 else stop + 1
            line = chunk[start:stop]
            if b"\x00" in line:
                raise LoyaltyError(_file_error(part, "binary data, not CSV text", line=number))
            try:
                yield line.decode("utf-8")
            except UnicodeDecodeError:
                raise LoyaltyError(
                    _file_error(part, "the file is not UTF-8 text", "export it as UTF-8", number)
                ) from None
            start, number = stop, number + 1

    quote = opts["quote"]
    reader = csv.reader(
        lines(),
        delimiter=opts["delimiter"][:1] or ",",
        quotechar=quote or None,
        quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE,
    )
    try:
        return next(reader, [])
    except csv.Error as exc:
        what = f"the first record cannot be read: {exc}"
        if "new-line character" in str(exc):
            what = (
                "the first line holds a carriage return outside quotes: lines must end in "
                "LF or CRLF, not in a carriage return alone"
            )
        raise LoyaltyError(_file_error(part, what, line=1)) from None


JSON_LINE_DELIMITER = "chr(30) || chr(31) || chr(30) || chr(31)"


def _read_json(loader: _Loader, src: _Source, part: _Part) -> None:
    """JSON lines: read each physical line as text, so line numbers are exact."""
    if loader.check_only:  # JSON lines have no header: their keys need the data
        return
    # The delimiter is one no JSON text holds (JSON escapes control characters): a NUL byte
    # or any other byte of a damaged line stays in its line, which is then a bad_json reject.
    read = (
        f"read_csv({sql_literal(part.shown)}, columns={{'line': 'VARCHAR'}}, auto_detect=false, "
        f"header=false, delim={JSON_LINE_DELIMITER}, quote='', escape='', skip=0, comment='', "
        "strict_mode=true, "
        f"null_padding=false, buffer_size={csv_buffer_size(part.shown)}, "
        f"max_line_size={MAX_LINE_SIZE})"
    )
    loader.temp_table(part.table, f"SELECT line FROM {read}", part, src)
    # The keys of every line: an export may leave out the keys of empty values (a column
    # first seen on line 5,000 is still a column) and spell a key otherwise on some lines.
    keys = loader.run(
        f"SELECT DISTINCT unnest(json_keys(line)) FROM {part.table} WHERE {_is_object('line')}",
        part,
        src,
    ).fetchall()
    names = sorted(k for (k,) in keys)
    if names:
        part.columns = _match_columns(loader, src, part, names, positional=False, json_keys=True)
    else:  # no valid object line: every line becomes a bad_json reject
        part.columns = {c.name: c.export for c in src.columns}
    present = [c for c in src.columns if part.columns[c.name]]
    # Each column's keys: the matched one first, then those equal to it but for case and
    # spaces; a line takes the first of them it holds.
    spellings = {c.name: _spellings(part.columns[c.name] or "", names) for c in present}
    paths = ", ".join(_json_path(k) for c in present for k in spellings[c.name])
    lines = (
        f"SELECT rowid - {_first_rowid(loader, src, part)} AS _pos, line, "
        f"{_is_object('line')} AS _ok "
        f"FROM {part.table} WHERE trim(line, ' ' || chr(9) || chr(13)) <> ''"
    )
    inner = (
        f"SELECT _pos, _ok, CASE WHEN _ok THEN json_extract_string(line, [{paths}]) END AS _v "
        f"FROM ({lines})"
        if present
        else f"SELECT _pos, _ok FROM ({lines})"
    )
    position: dict[str, list[int]] = {}
    for c in present:
        start = sum(len(v) for v in position.values()) + 1
        position[c.name] = list(range(start, start + len(spellings[c.name])))
    values = ", ".join(
        f"{_first_of([f'_v[{i}]' for i in position[c.name]])} AS {sql_ident(c.name)}"
        if c.name in position
        else f"NULL::VARCHAR AS {sql_ident(c.name)}"
        for c in src.columns
    )
    part.select = (
        f"SELECT {part.fileno} AS _fileno, {sql_literal(part.rel)} AS _file, _pos + 1 AS _line, "
        f"0 AS _nl, false AS _comma, NOT coalesce(_ok, false) AS _bad_json, {values} "
        f"FROM ({inner})"
    )


def _spellings(key: str, names: list[str]) -> list[str]:
    """``key`` and the other keys of ``names`` equal to it but for case and spaces."""
    folded = key.strip().casefold()
    return [key] + [n for n in names if n != key and n.strip().casefold() == folded]


def _first_of(values: list[str]) -> str:
    return values[0] if len(values) == 1 else f"coalesce({', '.join(values)})"


def _first_rowid(loader: _Loader, src: _Source, part: _Part) -> int:
    """The rowid of the file's first row: 0, but a large number inside a transaction.

    Rows of a table created by one statement get consecutive rowids in insertion order, so
    ``rowid - first`` is the row's position in the file.
    """
    first = loader.scalar(f"SELECT min(rowid) FROM {part.table}", part, src)
    return int(first or 0)


def _read_parquet(loader: _Loader, src: _Source, part: _Part) -> None:
    read = f"read_parquet({sql_literal(part.shown)}, file_row_number=true)"
    described = loader.run(
        f"DESCRIBE SELECT * FROM read_parquet({sql_literal(part.shown)})", part, src
    ).fetchall()
    types = {row[0]: str(row[1]) for row in described}
    part.columns = _match_columns(loader, src, part, list(types), positional=False)
    if loader.check_only or _lacks_required(src, part):
        return
    exprs = []
    for c in src.columns:
        col = part.columns[c.name]
        if col is None:
            exprs.append(f"NULL::VARCHAR AS {sql_ident(c.name)}")
        elif types[col].endswith("]") or types[col].startswith(("STRUCT", "MAP", "UNION")):
            exprs.append(f"CAST(to_json({sql_ident(col)}) AS VARCHAR) AS {sql_ident(c.name)}")
        elif c.kind == "varchar" and types[col] in ("FLOAT", "DOUBLE"):
            # Text (ids above all) stored as floating point, as pandas stores an integer
            # column with a missing value: 1001.0 is the id 1001 of the other exports.
            x = sql_ident(col)
            exprs.append(
                f"CASE WHEN isfinite({x}) AND {x} = trunc({x}) AND abs({x}) < 1e15 "
                f"THEN CAST(CAST({x} AS BIGINT) AS VARCHAR) ELSE CAST({x} AS VARCHAR) END "
                f"AS {sql_ident(c.name)}"
            )
        else:
            exprs.append(f"CAST({sql_ident(col)} AS VARCHAR) AS {sql_ident(c.name)}")
    part.select = (
        f"SELECT {part.fileno} AS _fileno, {sql_literal(part.rel)} AS _file, "
        "file_row_number + 1 AS _line, 0 AS _nl, false AS _comma, false AS _bad_json, "
        f"{', '.join(exprs)} FROM {read}"
    )


def _lacks_required(src: _Source, part: _Part) -> bool:
    """A required column is missing (the D602 is already recorded)."""
    return any(part.columns[c.name] is None and c.required for c in src.columns)


def _select_columns(src: _Source, found: dict[str, str | None]) -> str:
    """The file's columns renamed to the source's, NULL for those the file lacks."""
    out = []
    for c in src.columns:
        column = found[c.name]
        out.append(f"{sql_ident(column) if column else 'NULL::VARCHAR'} AS {sql_ident(c.name)}")
    return ", ".join(out)


def _match_columns(
    loader: _Loader,
    src: _Source,
    part: _Part,
    names: list[str],
    positional: bool,
    json_keys: bool = False,
) -> dict[str, str | None]:
    """Canonical column -> the file's column (exact name, else the one matching but for case
    and spaces); one D602 for the required ones missing, a warning for a missing extra.

    Header columns equal but for case and spaces are a repeat: the first in the header is
    taken (`_read_csv` warns). Keys of JSON lines may be spelt two ways on different lines:
    the exact name, else the first of them, is taken (`_read_json` reads them all).
    """
    found: dict[str, str | None] = {}
    missing: list[tuple[_Column, str]] = []
    by_folded: dict[str, list[str]] = {}
    for n in names:
        by_folded.setdefault(n.strip().casefold(), []).append(n)
    for index, col in enumerate(src.columns, start=1):
        wanted = col.export
        if positional:  # no header: columns by position, canonical order unless mapped
            mapped = (src.spec.get("columns") or {}).get(col.name)
            if mapped is not None and str(mapped).isdigit():
                wanted = f"column{int(mapped)}"
            elif mapped is None:
                wanted = f"column{index}"
        match = wanted if wanted in names else None
        folded = by_folded.get(wanted.strip().casefold(), [])
        if folded and (match is None or (len(folded) > 1 and not json_keys)):
            match = folded[0]
        found[col.name] = match
        if match is not None:
            continue
        if col.required:
            missing.append((col, wanted))
        elif col.name not in SOURCE_COLUMNS[src.name]:
            loader.warnings.append(
                f"{part.rel}: column {wanted!r} declared in sources.{src.name}.extra is "
                "missing; its values are empty"
            )
    if missing:
        if positional:
            loader.diagnostics.append(_missing_positions(src, part, missing, len(names)))
        else:
            loader.diagnostics.append(_missing_columns(src, part, missing, names, json_keys))
    return found


def _missing_positions(
    src: _Source, part: _Part, missing: list[tuple[_Column, str]], width: int
) -> Diagnostic:
    """D602 for a file without a header: the required columns by name and field number
    (`column9` is only DuckDB's name for the 9th field)."""
    listed = ", ".join(
        f"{col.name!r} (field {wanted.removeprefix('column')})"
        if re.fullmatch(r"column[0-9]+", wanted)
        else f"{col.name!r} (mapped to {wanted!r}, not a field number)"
        for col, wanted in missing
    )
    plural = "s" if len(missing) > 1 else ""
    verb = "are" if len(missing) > 1 else "is"
    fields = "field" if width == 1 else "fields"
    return Diagnostic(
        "D602",
        f"{part.rel}: required column{plural} {listed} {verb} missing: the first row has "
        f"{width} {fields}",
        path=part.shown,
        line=1,
        hint=(
            f"without a header the columns are taken by position (docs/data.md); give "
            f"sources.{src.name}.columns the 1-based field of each, e.g. "
            f'{{{missing[0][0].name}: "1"}}, or check sources.{src.name}.csv.delimiter'
        ),
    )


def _missing_columns(
    src: _Source, part: _Part, missing: list[tuple[_Column, str]], names: list[str], json_keys: bool
) -> Diagnostic:
    """D602 naming the missing columns, what the file has, and the likely intended column."""
    listed = ", ".join(repr(wanted) for _, wanted in missing)
    plural = "s" if len(missing) > 1 else ""
    verb = "are" if len(missing) > 1 else "is"
    message = f"{part.rel}: required column{plural} {listed} {verb} missing"
    one_column = len(names) == 1 and any(d in names[0] for d in ";,\t|")
    guesses = []
    for col, wanted in [] if one_column else missing:
        close = difflib.get_close_matches(wanted, names, n=1, cutoff=0.6)
        close = close or difflib.get_close_matches(col.name, names, n=1, cutoff=0.6)
        if close:
            guesses.append(f"{col.name}: {close[0]}")
    if guesses:
        message += f"; did you mean {{{', '.join(guesses)}}} in sources.{src.name}.columns?"
    shown = ", ".join(names[:40]) + (", ..." if len(names) > 40 else "")
    where = "among the keys of its lines" if json_keys else "in its header"
    if one_column:
        hint = (
            f"the header is the single column {names[0]!r}: set sources.{src.name}.csv.delimiter "
            "to the export's delimiter"
        )
    else:
        hint = (
            f"the file has {shown} {where}; map export columns to canonical names with "
            f"sources.{src.name}.columns: {{canonical: export_column}}"
        )
    return Diagnostic("D602", message, path=part.shown, line=1, hint=hint)


def _unique_names(header: list[str]) -> list[str]:
    """Header names as DuckDB columns: blanks named by position, repeats suffixed _2, _3.

    DuckDB's names ignore case, so `email` and `EMAIL` are a repeat too."""
    used: set[str] = set()
    out = []
    for i, raw in enumerate(header, start=1):
        base = raw if raw.strip() else f"column{i}"
        name, n = base, 1
        while name.lower() in used:
            n += 1
            name = f"{base}_{n}"
        used.add(name.lower())
        out.append(name)
    return out


# -- checking and converting --------------------------------------------------------------------


def _check_source(loader: _Loader, src: _Source, rejects: str) -> tuple[str, dict]:
    """Finish one source's typed table: unknown customers, line numbers, rejects, held-back
    rows and repeated keys go; what remains becomes ``src_<name>``, still in export order.

    The typed table was filled file by file in export order (``_convert_part``), so no step
    sorts it: rows are deleted or updated in place and the bookkeeping columns dropped.
    """
    work = _work_table(loader, src)
    checks = _check_list(src, loader.currency)
    if src.name in CUSTOMER_SOURCES:
        # The last check: the customers are only known once their export is loaded.
        # A join rather than NOT IN: it hashes the (few) rows to check, not every customer.
        loader.run(
            f"""UPDATE {work} SET _err = {len(checks)} WHERE rowid IN (
                SELECT w.rowid FROM {work} w LEFT JOIN {_KNOWN} k USING (customer_id)
                WHERE w._err IS NULL AND k.customer_id IS NULL)""",
            source=src,
        )
    # One pass for the counts and for what the line numbers need (rows without a line yet).
    files = loader.run(
        "SELECT _fileno, count(*), count(*) FILTER (_held), "
        "count(*) FILTER (_err IS NOT NULL AND NOT _held), "
        "count(*) FILTER (_err IS NULL AND NOT _held), count(*) FILTER (_line IS NULL), "
        "min(rowid) FILTER (_line IS NULL), max(_nl) FILTER (_line IS NULL) "
        f"FROM {work} GROUP BY _fileno ORDER BY _fileno",
        source=src,
    ).fetchall()
    read, held, rejected, window_good = (sum(f[i] for f in files) for i in range(1, 5))
    _set_lines(loader, src, work, [(f[0], f[6], f[7]) for f in files if f[5]])
    if rejected:
        columns = "[" + ", ".join(sql_literal(c) for c, _, _ in checks) + "]"
        reasons = "[" + ", ".join(sql_literal(r) for _, r, _ in checks) + "]"
        key = sql_ident(KEY_COLUMN[src.name])  # a text column: the trimmed text of the export
        loader.run(
            f"INSERT INTO {rejects} SELECT {sql_literal(src.name)}, _file, _line, "
            f"list_extract({columns}, _err), list_extract({reasons}, _err), {key} FROM {work} "
            "WHERE _err IS NOT NULL AND NOT _held ORDER BY _fileno, _line",
            source=src,
        )
    if src.name == "customers":
        _known_customers(loader, work)
    if src.name == "orders":
        # Orders after the run's day wait; so do their items and returns (not rejects).
        loader.run(
            f"CREATE OR REPLACE TEMP TABLE {HELD_ORDERS} AS SELECT DISTINCT order_id "
            f"FROM {work} WHERE _held AND order_id IS NOT NULL",
            source=src,
        )
    if window_good != read:
        loader.run(f"DELETE FROM {work} WHERE _err IS NOT NULL OR _held", source=src)
    duplicates = _drop_repeats(loader, src, work, window_good)
    if src.name == "order_items":
        _rank_items(loader, src, work)
    table = f"src_{src.name}"
    if src.ordered:
        for column in BOOKKEEPING:
            loader.run(f"ALTER TABLE {work} DROP COLUMN {column}", source=src)
        loader.run(f"DROP TABLE IF EXISTS {table}", source=src)
        loader.run(f"ALTER TABLE {work} RENAME TO {table}", source=src)
    else:
        loader.run(
            f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * EXCLUDE "
            f"({', '.join(BOOKKEEPING)}) FROM {work} ORDER BY _fileno, _line",
            source=src,
        )
    src.work = ""
    if duplicates:  # after the warnings of all the files, as when sources were checked last
        loader.check_warnings.append(_duplicates_warning(src.name, duplicates))
    counts = {
        "files": len(src.parts),
        "rows_read": read,
        "rows_new_window": read - held,
        "held_back": held,
        "rejected": rejected,
        "duplicates_in_export": duplicates,
        "loaded": window_good - duplicates,
    }
    return table, counts


# Columns of the typed table that only the checks use, dropped before it becomes src_<name>.
BOOKKEEPING = ("_fileno", "_err", "_held", "_nl")


def _set_lines(loader: _Loader, src: _Source, work: str, parts: list[tuple]) -> None:
    """Line numbers of CSV rows from their rowid (JSON lines and Parquet rows have theirs).

    One INSERT appends a file's rows with consecutive rowids in file order, so a row's line is
    its rowid minus the file's first rowid plus the header line; a quoted value spanning
    several lines adds its extra lines to the rows below it. ``parts`` are the files with rows
    still without a line: (fileno, first rowid of those rows, most lines a row spans beyond one).
    """
    if not parts:
        return
    first_row_line = 2 if _csv_settings(src)["header"] else 1
    plain = [(fileno, first) for fileno, first, spans in parts if not spans]
    if plain:
        whens = " ".join(f"WHEN {fileno} THEN {first}" for fileno, first in plain)
        where = f" WHERE _line IS NULL AND _fileno IN ({', '.join(str(f) for f, _ in plain)})"
        if len(plain) == len(parts) and all(p.fmt == "csv" for p in src.parts if p.select):
            where = ""  # every row: an update without a filter is a lot cheaper
        offset = f"(CASE _fileno {whens} END)" if len(plain) > 1 else str(plain[0][1])
        loader.run(
            f"UPDATE {work} SET _line = rowid - {offset} + {first_row_line}" + where, source=src
        )
    for fileno, first, spans in parts:
        if not spans:
            continue
        line = (
            f"rowid - {first} + {first_row_line} + coalesce(sum(_nl) OVER (ORDER BY rowid "
            "ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)"
        )
        loader.run(
            f"UPDATE {work} SET _line = s.line FROM (SELECT rowid AS rid, {line} AS line "
            f"FROM {work} WHERE _fileno = {fileno} ORDER BY rid) s WHERE {work}.rowid = s.rid",
            source=src,
        )


def _rank_items(loader: _Loader, src: _Source, work: str) -> None:
    """``item_seq``: an item's rank within its order in export order (9.19).

    Every row was appended with 1: only the later items of an order change. Exports list an
    order's items one after the other, so in a table in export order the items of most orders
    are rows with consecutive rowids (no row between them, none deleted): their rank is the
    distance from the order's first rowid, found by one aggregation. The orders whose items
    are scattered (or a table not in export order) are ranked by a window over their rows.
    """
    scattered = f"SELECT rowid AS rid, order_id, _fileno, _line FROM {work}"
    if src.ordered:
        orders = loader.temp_table(
            "__ls_item_orders",
            f"SELECT order_id, min(rowid) AS first, max(rowid) - min(rowid) + 1 = count(*) "
            f"AS consecutive FROM {work} GROUP BY order_id HAVING count(*) > 1",
            source=src,
        )
        loader.run(
            f"UPDATE {work} SET item_seq = {work}.rowid - g.first + 1 FROM {orders} g "
            f"WHERE {work}.order_id = g.order_id AND g.consecutive AND {work}.rowid > g.first",
            source=src,
        )
        if loader.scalar(f"SELECT bool_or(NOT consecutive) FROM {orders}", source=src):
            scattered += f" WHERE order_id IN (SELECT order_id FROM {orders} WHERE NOT consecutive)"
            _rank_by_window(loader, src, work, scattered)
        loader.run(f"DROP TABLE {orders}", source=src)  # its memory is wanted by what follows
    else:
        _rank_by_window(loader, src, work, scattered)


def _rank_by_window(loader: _Loader, src: _Source, work: str, rows: str) -> None:
    """``item_seq`` of the ``rows`` (rid, order_id, _fileno, _line) by a window per order."""
    # The subquery is sorted by rowid so that the update walks the table in order.
    loader.run(
        f"UPDATE {work} SET item_seq = s.seq FROM (SELECT rid, seq FROM (SELECT rid, "
        "row_number() OVER (PARTITION BY order_id ORDER BY _fileno, _line) AS seq "
        f"FROM ({rows})) WHERE seq > 1 ORDER BY rid) s WHERE {work}.rowid = s.rid",
        source=src,
    )


def _drop_repeats(loader: _Loader, src: _Source, work: str, rows: int) -> int:
    """Delete the rows whose key repeats (the first row of a key is kept, the last one for
    customers, whose export is upserted; items of an order are taken from the first file
    listing it). Returns how many rows went. ``work`` holds the good rows of the window.
    """
    if src.name == "order_items":
        if len(src.parts) < 2:
            return 0
        return _delete_rows(
            loader,
            src,
            work,
            "SELECT rowid AS rid, _fileno <> min(_fileno) OVER (PARTITION BY order_id) AS gone "
            f"FROM {work}",
        )
    key = _dedupe_key(src)
    if key is None or rows < 2 or not _may_repeat(loader, src, work, key):
        return 0
    latest = " DESC" if src.name == "customers" else ""
    return _delete_rows(
        loader,
        src,
        work,
        f"SELECT rowid AS rid, row_number() OVER (PARTITION BY {key} "
        f"ORDER BY _fileno{latest}, _line{latest}) > 1 AS gone FROM {work}",
    )


def _delete_rows(loader: _Loader, src: _Source, work: str, flagged: str) -> int:
    """Delete the rows that ``flagged`` (rid, gone) marks; the number deleted."""
    row = loader.run(
        f"DELETE FROM {work} WHERE rowid IN (SELECT rid FROM ({flagged}) WHERE gone)",
        source=src,
    ).fetchone()
    return int(row[0]) if row else 0


def _may_repeat(loader: _Loader, src: _Source, work: str, key: str) -> bool:
    """False when no key of ``work`` repeats; True when one may (then the rows are ranked).

    Keys that rise strictly from row to row (ids exported in order) cannot repeat: one
    streaming pass shows it. Otherwise distinct hashes prove distinct keys; a collision
    only costs the exact ranking.
    """
    if "," not in key:
        rising = loader.scalar(
            f"SELECT bool_and(k IS NOT NULL AND (p IS NULL OR k > p)) "
            f"FROM (SELECT {key} AS k, lag({key}) OVER () AS p FROM {work})",
            source=src,
        )
        if rising:
            return False
    return bool(
        loader.scalar(f"SELECT count(*) > count(DISTINCT hash({key})) FROM {work}", source=src)
    )


def _duplicates_warning(name: str, n: int) -> str:
    if name == "customers":
        return f"customers: {n} rows repeat a customer_id; the last row of each customer was used"
    if name == "order_items":
        return (
            f"order_items: {n} item rows belong to an order already listed in an earlier "
            "file; the first file's items were used"
        )
    return f"{name}: {n} rows repeat a key already in the export; the first was kept"


def _empty_select(src: _Source) -> str:
    """A part's select without rows: the columns of every part's select, typed."""
    nulls = ", ".join(f"NULL::VARCHAR AS {sql_ident(c.name)}" for c in src.columns)
    return (
        "SELECT NULL::INTEGER AS _fileno, NULL::VARCHAR AS _file, NULL::BIGINT AS _line, "
        f"0 AS _nl, false AS _comma, false AS _bad_json, {nulls} WHERE false"
    )


def _typed_sql(loader: _Loader, src: _Source, raw: str) -> str:
    """One pass: trimmed text -> typed values -> the first failing check, the hold-back flag.

    The unknown customer check, the last one, is left to ``_check_source``: the customers are
    only known once their export is loaded.
    """
    trimmed = ", ".join(
        f"{_trim_sql(sql_ident(c.name))} AS {sql_ident('r__' + c.name)}" for c in src.columns
    )
    level_a = f"SELECT _fileno, _file, _line, _nl, _comma, _bad_json, {trimmed} FROM ({raw})"
    stamps = [c for c in src.columns if c.kind == "timestamp"]
    if stamps:  # the plain reading of a timestamp, computed once
        naive = ", ".join(
            f"{naive_timestamp_sql(sql_ident('r__' + c.name))} AS {sql_ident('_t__' + c.name)}"
            for c in stamps
        )
        level_a = f"SELECT *, {naive} FROM ({level_a})"
    typed = [f"{_convert(loader, src, c)} AS {sql_ident(c.name)}" for c in src.columns]
    level_b = f"SELECT *, {', '.join(typed)} FROM ({level_a})"
    conditions = [cond for _, _, cond in _check_list(src, loader.currency)]
    if src.name in CUSTOMER_SOURCES:
        conditions = conditions[:-1]  # unknown customer: set by _check_source
    err = "CASE " + " ".join(f"WHEN {c} THEN {i}" for i, c in enumerate(conditions, 1)) + " END"
    time_col = TIME_COLUMN.get(src.name)
    held = (
        f"coalesce({sql_ident(time_col)} >= {end_of_day_sql(loader.as_of)}, false)"
        if time_col
        else "false"
    )
    out = [sql_ident(c.name) for c in src.columns]
    if time_col:
        out.append(f"CAST({sql_ident(time_col)} AS DATE) AS day")
    if src.name == "events":
        out.append(f"{_event_key_sql(loader.timezone)} AS event_key")
    if src.name == "order_items":
        out.append("1::BIGINT AS item_seq")  # the rank in the order: _check_source
    # The bookkeeping columns as narrow as they can be: they take memory on every row.
    fileno = "UTINYINT" if len(src.parts) <= 256 else "UINTEGER"
    err_type = "UTINYINT" if len(conditions) < 255 else "USMALLINT"
    out += [
        "_file",
        "_line",
        f"CAST(_fileno AS {fileno}) AS _fileno",
        f"CAST({err} AS {err_type}) AS _err",
        f"{held} AS _held",
        "_nl",
    ]
    return f"SELECT {', '.join(out)} FROM ({level_b})"


def _trim_sql(text: str) -> str:
    """SQL: the text without surrounding spaces, NULL when empty (docs/data.md, Values).

    ``trim`` removes Unicode space separators and walks every character to find them. Text
    that is all ASCII and neither starts nor ends with a space (almost every value) has none
    to remove: it is taken as it is. ``>= '!'`` (one comparison: not empty, first byte not a
    space; a control character, which ``trim`` keeps, only takes the slow way) and a byte scan
    for ASCII come first; ``suffix`` costs several times more than a byte search, so text with
    no space at all (ids, codes, numbers) is let through by ``contains`` before it.
    """
    plain = (
        f"{text} >= '!' AND strlen({text}) = length({text}) "
        f"AND (NOT contains({text}, ' ') OR NOT suffix({text}, ' '))"
    )
    return f"CASE WHEN {plain} THEN {text} ELSE NULLIF(trim({text}), '') END"


_KNOWN = "__ls_known_customers"


def _known_customers(loader: _Loader, typed: str) -> None:
    """Customers of the export with a valid row (dated in the window or later) or of the state."""
    union = f"SELECT customer_id FROM {typed} WHERE _err IS NULL"
    if loader.known_table:
        union += f" UNION ALL SELECT CAST(customer_id AS VARCHAR) FROM {loader.known_table}"
    # Not made distinct: the check joins to it only to find rows with no match.
    loader.temp_table(_KNOWN, union)


def _convert(loader: _Loader, src: _Source, col: _Column) -> str:
    """SQL from the trimmed text ``r__<col>`` to the column's type; NULL when unreadable."""
    r = sql_ident("r__" + col.name)
    kind = col.kind
    if src.name == "orders" and col.name == "currency":
        return f"coalesce(upper({r}), {sql_literal(loader.currency)})"
    if src.name == "orders" and col.name == "status":
        return _status_sql(loader, r)
    if kind == "varchar":
        return r
    if kind == "integer":
        whole = f"regexp_full_match({r}, '[+-]?[0-9]+(\\.0*)?')"
        return f"CASE WHEN {whole} THEN TRY_CAST({r} AS BIGINT) END"
    if kind == "decimal":
        return _decimal_sql(r, comma=_csv_settings(src)["decimal"] == ",")
    if kind == "boolean":
        # CASE, not IN: DuckDB plans an IN list of five values as a join, which would
        # give up the file order of the rows (see _keeps_order).
        words = [(w, "true") for w in BOOLEAN_TRUE] + [(w, "false") for w in BOOLEAN_FALSE]
        whens = " ".join(f"WHEN {sql_literal(w)} THEN {v}" for w, v in words)
        return f"CASE lower({r}) {whens} END"
    if kind == "date":
        return f"CASE WHEN {_year_first(r)} THEN TRY_CAST({r} AS DATE) END"
    if kind == "timestamp":
        ts = _timestamp_sql(r, loader.timezone, sql_ident("_t__" + col.name))
        return f"CASE WHEN {_year_first(r)} THEN {ts} END"
    if kind == "list":
        items = (
            f"CASE WHEN prefix({r}, '[') AND json_valid({r}) "
            f"THEN try(from_json({r}, '[\"VARCHAR\"]')) ELSE string_split_regex({r}, '[;,]') END"
        )
        # One tag (no separator, not a JSON array) is the trimmed text itself: no lambdas.
        single = f"NOT prefix({r}, '[') AND NOT contains({r}, ';') AND NOT contains({r}, ',')"
        return (
            f"CASE WHEN {r} IS NULL THEN []::VARCHAR[] WHEN {single} THEN [{r}] "
            f"ELSE list_filter(list_transform({items}, lambda t: trim(t)), "
            "lambda t: t IS NOT NULL AND t <> '') END"
        )
    if kind == "json":
        # An object (r is trimmed). The cast checks the text without writing it again
        # (json() would also minify it: a second pass over every value for nothing that
        # reads it, since json_extract and json_keys give the same either way).
        return f"CASE WHEN prefix({r}, '{{') THEN TRY_CAST({r} AS JSON) END"
    raise ValueError(f"unknown column type {kind!r}")  # the config schema prevents this


def _year_first(r: str) -> str:
    """SQL: the text begins with a year of four digits, 0001 to 9999, and a '-' (DuckDB's
    casts also read `-2026-03-01`, `0000-01-01` and `2026-05-01 (BC)` as dates before
    Christ, and a fifth digit of the year). Byte tests, cheap on every row."""
    return (
        f"substr({r}, 5, 1) = '-' AND substr({r}, 1, 1) BETWEEN '0' AND '9' "
        f"AND NOT prefix({r}, '0000') AND NOT contains({r}, '(')"
    )


def _timestamp_sql(r: str, timezone: str, naive: str) -> str:
    """Timestamp text -> local TIMESTAMP (``local_timestamp_sql``), with a cheaper first test.

    A zone designator (``ZONE_SUFFIX_RE``) always puts a '+', '/', 'Z', 'z', 'UTC', 'GMT' or a
    '-' after a ':' into the text. Text with none of them (local wall times, nearly every
    value) can only take the wall-time branch, which ``local_timestamp_sql`` gives alone when
    its text is NULL; six byte searches are much cheaper than its tests of the text's end.
    """
    zoned = (
        f"contains({r}, '+') OR contains({r}, '/') OR contains({r}, 'Z') "
        f"OR contains({r}, 'z') OR contains({r}, 'UTC') OR contains({r}, 'GMT') "
        f"OR {r} LIKE '%:%-%'"
    )
    local = local_timestamp_sql("NULL::VARCHAR", timezone, naive=naive)
    return (
        f"CASE WHEN {zoned} THEN {local_timestamp_sql(r, timezone, naive=naive)} ELSE {local} END"
    )


def _decimal_sql(r: str, comma: bool) -> str:
    """Money text -> DECIMAL(18,2): spaces as thousands separators allowed; ',' per csv.decimal.

    With ``decimal: ','`` (CSV files only) ``1 234,50`` and ``1.234,50`` read as 1234.50, and a
    value with a '.' that is not a thousands separator (``12.50``) is refused as ambiguous.
    ASCII text without a space (nearly every value) has no separator to remove: it skips the
    three replace() calls, each of which copies the text.
    """
    spaced = f"replace(replace(replace({r}, ' ', ''), chr(160), ''), chr(8239), '')"
    plain = (
        f"CASE WHEN NOT contains({r}, ' ') AND strlen({r}) = length({r}) THEN {r} ELSE {spaced} END"
    )
    text = plain
    if comma:
        text = (
            f"CASE WHEN NOT _comma THEN {plain} "
            f"WHEN regexp_full_match({plain}, '[+-]?[0-9]{{1,3}}(\\.[0-9]{{3}})+(,[0-9]*)?') "
            f"THEN replace(replace({plain}, '.', ''), ',', '.') "
            f"WHEN contains({plain}, '.') THEN NULL ELSE replace({plain}, ',', '.') END"
        )
    return (
        f"CASE WHEN NOT contains({r}, '_') THEN TRY_CAST({text} AS {DUCKDB_TYPES['decimal']}) END"
    )


def _status_sql(loader: _Loader, r: str) -> str:
    """Order status: case-insensitive, empty = completed, ``status_map`` first (9.2, 9.20)."""
    whens = " ".join(
        f"WHEN {sql_literal(str(k).strip().lower())} THEN {sql_literal(str(v).strip().lower())}"
        for k, v in loader.status_map.items()
    )
    mapped = f"CASE lower({r}) {whens} ELSE lower({r}) END" if whens else f"lower({r})"
    return f"coalesce({mapped}, 'completed')"


def _check_list(src: _Source, currency: str) -> list[tuple[str, str, str]]:
    """Every check of a row as (export column, reason, SQL condition), first failing one wins.

    Order: a line that is not a JSON object; then column by column in canonical order and then
    the declared extras: missing required value, unreadable value, value not allowed
    (negative total, quantity or amount; other currency; unknown status); last, an unknown
    customer, so a row that is broken is reported as broken before its customer is looked up.
    """
    out: list[tuple[str, str, str]] = [("", "bad_json", "_bad_json")]
    for col in src.columns:
        r, t = sql_ident("r__" + col.name), sql_ident(col.name)
        if col.required:
            out.append((col.export, "missing_value", f"{r} IS NULL"))
        if col.kind in PARSE_REASON:
            out.append((col.export, PARSE_REASON[col.kind], f"{r} IS NOT NULL AND {t} IS NULL"))
        rule = (src.name, col.name)
        if rule == ("orders", "total"):
            out.append((col.export, "negative_total", f"{t} < 0"))
        elif rule == ("order_items", "quantity"):
            out.append((col.export, "negative_quantity", f"{t} < 0"))
        elif rule == ("returns", "amount"):
            out.append((col.export, "negative_amount", f"{t} < 0"))
        elif rule == ("orders", "currency"):
            out.append(
                (
                    col.export,
                    "unknown_currency",
                    f"{r} IS NOT NULL AND {t} <> {sql_literal(currency)}",
                )
            )
        elif rule == ("orders", "status"):
            allowed = ", ".join(sql_literal(s) for s in ORDER_STATUSES)
            out.append((col.export, "unknown_status", f"{t} NOT IN ({allowed})"))
    if src.name in CUSTOMER_SOURCES:
        export = next(c.export for c in src.columns if c.name == "customer_id")
        out.append((export, "unknown_customer", "NOT _known"))
    return out


def _event_key_sql(timezone: str) -> str:
    """event_id, else ``md5:`` + md5 of customer_id, type, occurred_at and properties (9.21).

    Properties take part as JSON text with top-level keys sorted, so the same event exported
    with its keys in another order gets the same key. occurred_at is the local wall time, so
    the same event written with an offset one night and in local time the next gets the same
    key; a time given with an offset that falls in the second run of a repeated hour (DST
    fall-back: 01:30Z is 02:30 CET, after 02:30 CEST) is another instant than the local time
    it is stored as, and takes a mark in the key, so two events an hour apart stay two (the
    instant an hour earlier shows the same wall time only in that case).
    """
    path = "'$.\"' || replace(replace(k, '\\', '\\\\'), '\"', '\\\"') || '\"'"
    sorted_props = (
        "'{' || array_to_string(list_transform(list_sort(json_keys(properties)), "
        f"lambda k: to_json(k) || ':' || json_extract(properties, {path})), ',') || '}}'"
    )
    canon_props = f"coalesce(try({sorted_props}), CAST(properties AS VARCHAR), '')"
    stamp = "strftime(occurred_at, '%Y-%m-%dT%H:%M:%S.%f')"
    raw = sql_ident("r__occurred_at")
    tz = sql_literal(timezone)
    instant = instant_sql(raw)
    second = (
        f"CASE WHEN (contains({raw}, '+') OR suffix({raw}, 'Z') OR suffix({raw}, 'z') "
        f"OR {raw} LIKE '%:%-%') "
        f"AND timezone({tz}, {instant} - INTERVAL 1 HOUR) = occurred_at "
        "THEN '~second' ELSE '' END"
    )
    stamp = f"{stamp} || {second}"
    text = f"concat_ws(chr(31), customer_id, type, {stamp}, {canon_props})"
    # CASE, not coalesce: the hash is only computed for rows without an event_id.
    return f"CASE WHEN event_id IS NOT NULL THEN event_id ELSE 'md5:' || md5({text}) END"


def _dedupe_key(src: _Source) -> str | None:
    """The key whose repeats are dropped (9.21, SPEC 3); None for items, kept row by row."""
    if src.name == "order_items":
        return None
    if src.name == "returns":
        return "order_id, returned_at, amount"
    if src.name == "events":
        return "event_key"
    return sql_ident(KEY_COLUMN[src.name])


def _reject_rate_verdict(counts: dict[str, dict], max_rate: float) -> str | None:
    """The refusal message when a source's rejected share of its window exceeds the limit."""
    return reject_rate_verdict(
        [
            (name, counts[name]["rejected"], counts[name]["rows_new_window"])
            for name in SOURCE_ORDER
        ],
        max_rate,
    )


def reject_rate_verdict(
    shares: list[tuple[str, int, int]], max_rate: float, rows: str = "rows"
) -> str | None:
    """The refusal message for the sources whose (source, rejected, of) share exceeds
    `max_rate`; None when none does. `rows` names what the share is of."""
    over = [
        f"{name}: {bad} of {total} {rows} rejected ({bad / total:.2%}), above "
        f"data.max_reject_rate {max_rate:.2%}"
        for name, bad, total in shares
        if total and bad / total > max_rate
    ]
    if not over:
        return None
    return "; ".join(over) + " (see rejects.csv)"


# -- errors and names ---------------------------------------------------------------------------


def _is_object(text: str) -> str:
    """SQL: the text is one JSON object (valid JSON starting with '{'; one parse per row)."""
    return f"(prefix(ltrim({text}), '{{') AND json_valid({text}))"


def _json_path(key: str) -> str:
    """A JSON path literal for one top-level key, whatever characters it holds."""
    return sql_literal('$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"')


def _file_error(part: _Part, what: str, hint: str = "", line: int | None = None) -> Diagnostic:
    return Diagnostic("D603", f"{part.rel}: {what}", path=part.shown, line=line, hint=hint)


_LINE_RE = re.compile(r"\b[Ll]ine:? (\d+)")

# A line end unlike the file's first: any carriage return in a file of LF lines; a carriage
# return or a line feed alone in a file of CRLF lines.
_STRAY = {b"\n": re.compile(rb"\r"), b"\r\n": re.compile(rb"\r(?!\n)|(?<!\r)\n")}


def _stray_line_break(path: str, chunk: int = 1 << 22) -> int | None:
    """The line (1-based) of the first line end unlike the file's first, or None.

    Only read when DuckDB has refused the file, so a plain scan in chunks is fine; values in
    quotes are not told apart (a quoted carriage return is allowed, but rare)."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            line, block, stray, carried = 1, b"", None, False
            while data := fh.read(chunk):
                block += data
                if stray is None:
                    first = block.find(b"\n")
                    if first < 0:
                        continue
                    crlf = first > 0 and block[first - 1] == ord("\r")
                    stray = _STRAY[b"\r\n" if crlf else b"\n"]
                # A LF first in the block was checked with the byte before it, last time.
                m = stray.search(block, 1 if carried and block.startswith(b"\n") else 0)
                if m and not (m.start() == len(block) - 1 and block.endswith(b"\r")):
                    return line + block.count(b"\n", 0, m.start())
                # The last byte waits for the next block: a CR there may be followed by a LF.
                line += block.count(b"\n", 0, len(block) - 1)
                block, carried = block[-1:], True
            if stray is not None and block == b"\r":
                return line  # a CR alone at the very end
    except (OSError, EOFError, zlib.error, gzip.BadGzipFile):
        return None
    return None


def _parse_error(part: _Part, src: _Source | None, exc: duckdb.Error) -> Diagnostic:
    """A DuckDB read error as D603 with the file, the line DuckDB names and a likely fix."""
    text = str(exc)
    m = _LINE_RE.search(text)
    line = int(m.group(1)) if m else None
    name = src.name if src else "source"
    if "unterminated quote" in text:
        what = "a quoted value is never closed (unbalanced quote)"
        hint = f"quote characters inside values must be doubled; see sources.{name}.csv.quote"
    elif part.fmt == "json" and "Expected Number of Columns" in text:
        what = "the line holds control characters (bytes 30 and 31) that JSON text cannot hold"
        hint = "re-create the export; JSON escapes control characters inside strings"
    elif m2 := re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text):
        found = f"{m2.group(2)} field" + ("" if m2.group(2) == "1" else "s")
        first = "the header" if src is None or _csv_settings(src)["header"] else "the first row"
        what = f"the row has {found} where {first} has {m2.group(1)}"
        hint = (
            "a value contains the delimiter without quotes, or the delimiter is wrong "
            f"(sources.{name}.csv.delimiter)"
        )
    elif "state machine reached an invalid state" in text and part.fmt in ("csv", "json"):
        line = _stray_line_break(part.shown)
        if part.fmt == "csv":
            what = "a line break inside a value without quotes, or a line end unlike the first's"
            hint = "quote values that hold line breaks; end every line the same way (LF or CRLF)"
        else:
            what = "a carriage return inside a line, or a line end unlike the first line's"
            hint = "end every line the same way (LF or CRLF); inside JSON strings write \\r"
    elif "Invalid unicode" in text or "UTF-8" in text or "utf-8" in text:
        what = "the file is not UTF-8 text"
        hint = "export it as UTF-8"
    elif "Maximum line size" in text or "max_line_size" in text:
        what = "a line is longer than the 2 MB limit"
        hint = "check that this is really a line-per-row export"
    elif "GZIP" in text or "gzip" in text or "zlib" in text:
        what = "the compressed file is truncated or damaged"
        hint = "re-create the export; did the transfer finish?"
    elif "parquet" in text.lower() or "magic bytes" in text:
        what = "not a readable Parquet file: " + first_line(text)
        hint = "re-create the export"
    else:
        what = "cannot be parsed: " + first_line(text)
        hint = "check the file's format against docs/data.md"
    return _file_error(part, what, hint, line)
