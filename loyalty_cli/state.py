"""The state file: a DuckDB database holding the ledger, lots, tiers, segments and run log.

Schema changes go through numbered migrations; `meta.schema_version` records the last one
applied. Every run is one transaction (see engine/run.py), so a killed run leaves the
state as it was.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import duckdb

from loyalty_cli.diagnostics import Diagnostic, ExitCode, LoyaltyError, first_line

SCHEMA_VERSION = 8

# meta: the highest id of a deleted lot (released pending lots are deleted), so that lot
# ids are never given out twice (engine/ledger.py).
LOTS_REMOVED_KEY = "lots_removed_up_to"
# meta: the day of a committed run whose files are not in place yet (engine/run.py).
FILES_PENDING_KEY = "files_pending"
# meta: what `loyalty report` needs of the program of the last run (JSON: id, name,
# currency, point_value as text, the tier levels' ids and names in order).
PROGRAM_KEY = "program"

# Points are BIGINT, money DECIMAL(18,2), dates and timestamps local to the program's timezone.
MIGRATIONS: dict[int, list[str]] = {
    1: [
        """CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR)""",
        """CREATE TABLE runs (
            run_id BIGINT, as_of DATE, window_start DATE, status VARCHAR,
            started_at TIMESTAMP, finished_at TIMESTAMP, program_id VARCHAR, counts JSON)""",
        """CREATE TABLE customers (
            customer_id VARCHAR PRIMARY KEY, email VARCHAR, phone VARCHAR,
            first_name VARCHAR, last_name VARCHAR, birth_date DATE, joined_at TIMESTAMP,
            join_day DATE, email_consent BOOLEAN, sms_consent BOOLEAN, referred_by VARCHAR,
            locale VARCHAR, extra JSON, first_seen_on DATE)""",
        # Processed orders; also the basis for returns, tiers and segments.
        """CREATE TABLE orders (
            order_id VARCHAR, customer_id VARCHAR, ordered_at TIMESTAMP, day DATE,
            total DECIMAL(18,2), status VARCHAR, channel VARCHAR, extra JSON,
            release_on DATE, granted BIGINT, qualifying BIGINT,
            returned DECIMAL(18,2), reversed BIGINT, qualifying_reversed BIGINT,
            processed_on DATE)""",
        """CREATE TABLE returns (
            order_id VARCHAR, returned_at TIMESTAMP, amount DECIMAL(18,2), day DATE,
            processed_on DATE)""",
        # Processed event keys (event_id, or a hash of the row when it has none).
        """CREATE TABLE events_seen (event_key VARCHAR, day DATE, processed_on DATE)""",
        """CREATE TABLE adjustments (
            adjustment_id VARCHAR, customer_id VARCHAR, points BIGINT, reason VARCHAR,
            created_at TIMESTAMP, processed_on DATE)""",
        """CREATE TABLE redemptions (
            redemption_id VARCHAR, customer_id VARCHAR, reward_id VARCHAR,
            requested_at TIMESTAMP, status VARCHAR, reason VARCHAR, coupon_code VARCHAR,
            cost BIGINT, processed_on DATE)""",
        # The append-only ledger: one row per change of a member's balances.
        """CREATE TABLE ledger (
            entry_id BIGINT, run_on DATE, customer_id VARCHAR, kind VARCHAR,
            points BIGINT, pending BIGINT, rule_id VARCHAR, source_id VARCHAR,
            occurred_at TIMESTAMP, occurred_on DATE, reason VARCHAR, shortfall BIGINT,
            lot_id BIGINT)""",
        # Lots: what a credit left to spend; debits consume them first-in first-out.
        """CREATE TABLE lots (
            lot_id BIGINT, customer_id VARCHAR, earned_on DATE, available_on DATE,
            expires_on DATE, amount BIGINT, remaining BIGINT, status VARCHAR,
            order_id VARCHAR, kind VARCHAR, rule_id VARCHAR, created_on DATE)""",
        """CREATE TABLE cap_usage (
            customer_id VARCHAR, rule_id VARCHAR, period VARCHAR, used BIGINT)""",
        # Qualifying points of event rules per member and day (tier basis `points`).
        """CREATE TABLE qualifying_days (customer_id VARCHAR, day DATE, points BIGINT)""",
        """CREATE TABLE tiers (
            customer_id VARCHAR PRIMARY KEY, tier VARCHAR, renewed_on DATE, since DATE)""",
        """CREATE TABLE tier_changes (
            customer_id VARCHAR, from_tier VARCHAR, to_tier VARCHAR, change VARCHAR,
            effective_on DATE, basis DECIMAL(18,2))""",
        """CREATE TABLE bonus_grants (
            bonus_id VARCHAR, customer_id VARCHAR, period VARCHAR, granted_on DATE)""",
        """CREATE TABLE challenge_progress (
            bonus_id VARCHAR, customer_id VARCHAR, period VARCHAR, n BIGINT,
            total DECIMAL(18,2), achieved_on DATE)""",
        """CREATE TABLE badges (
            customer_id VARCHAR, badge VARCHAR, bonus_id VARCHAR, period VARCHAR,
            earned_on DATE)""",
        """CREATE TABLE segment_members (
            segment_id VARCHAR, customer_id VARCHAR, grp VARCHAR, r INTEGER, f INTEGER,
            m INTEGER, value DOUBLE, as_of DATE)""",
        """CREATE TABLE segment_changes (
            segment_id VARCHAR, customer_id VARCHAR, grp VARCHAR, change VARCHAR, on_day DATE)""",
        """CREATE TABLE model_fits (segment_id VARCHAR, as_of DATE, fit JSON)""",
        # Running totals per member, updated from each run's new ledger entries.
        """CREATE TABLE member_totals (customer_id VARCHAR PRIMARY KEY, lifetime_earned BIGINT)""",
        """CREATE TABLE coupon_codes (
            pool_id VARCHAR, code VARCHAR, valid_until DATE, seq BIGINT,
            assigned_to VARCHAR, assigned_for VARCHAR, assigned_on DATE)""",
    ],
    # Cap periods as numbers (engine/earning.py period_key_sql): cheaper to group and join.
    2: [
        """CREATE TABLE cap_usage_v2 (
            customer_id VARCHAR, rule_id VARCHAR, period BIGINT, used BIGINT)""",
        """INSERT INTO cap_usage_v2
        SELECT customer_id, rule_id,
               CASE WHEN period = 'ever' THEN 0
                    WHEN period LIKE '____-W__' THEN CAST(substr(period, 1, 4) AS BIGINT) * 100
                        + CAST(substr(period, 7, 2) AS BIGINT)
                    WHEN length(period) = 10
                        THEN CAST(TRY_CAST(period AS DATE) - DATE '1970-01-01' AS BIGINT)
                    WHEN length(period) = 7 THEN CAST(substr(period, 1, 4) AS BIGINT) * 100
                        + CAST(substr(period, 6, 2) AS BIGINT)
                    ELSE TRY_CAST(period AS BIGINT) END,
               used
        FROM cap_usage""",
        "DROP TABLE cap_usage",
        "ALTER TABLE cap_usage_v2 RENAME TO cap_usage",
    ],
    # Order days per member, kept up to date by each run (engine/segments.py
    # refresh_order_days) instead of regrouping all orders every night.
    3: [
        """CREATE TABLE order_days (
            customer_id VARCHAR, day DATE, spend DECIMAL(18,2), gap INTEGER)""",
        """INSERT INTO order_days
        SELECT customer_id, day, spend,
               CAST(day - lag(day) OVER (PARTITION BY customer_id ORDER BY day) AS INTEGER)
        FROM (SELECT customer_id, day, sum(greatest(total - returned, 0)) AS spend
              FROM orders WHERE status = 'completed' GROUP BY customer_id, day) x""",
    ],
    # The room a cap has used is read from the ledger's credits of the rule (engine/earning.py
    # _room_used_sql): the same numbers, without a table of millions of rows to keep.
    4: ["DROP TABLE cap_usage"],
    # Released pending lots are deleted (engine/ledger.py release_due); meta remembers the
    # highest id deleted so that lot ids are never given out twice.
    5: [
        f"""INSERT OR REPLACE INTO meta
        SELECT '{LOTS_REMOVED_KEY}', CAST(max(lot_id) AS VARCHAR) FROM lots
        WHERE status = 'released' HAVING count(*) > 0""",
        "DELETE FROM lots WHERE status = 'released'",
    ],
    # The run day on which an order processed as completed was re-exported cancelled: the
    # referral's first order is the first one completed when processed, whatever its total.
    # Earlier states knew such an order only by what was returned; the latest return's day
    # is the cancellation's (a return after it does nothing).
    6: [
        "ALTER TABLE orders ADD COLUMN cancelled_on DATE",
        """UPDATE orders SET cancelled_on = r.day
        FROM (SELECT order_id, max(day) AS day FROM returns GROUP BY order_id) r
        WHERE orders.order_id = r.order_id AND orders.status = 'cancelled'
          AND orders.returned > 0""",
    ],
    # Workflows (engine/workflows.py): one row per time a member enters a workflow, and a
    # log of what each run did with it (entered, sent, skipped, waiting, awarded, exited,
    # completed): the source of audiences/<workflow>.csv, the message batches and explain;
    # and the phone numbers already read for SMS.
    7: [
        """CREATE TABLE wf_instances (
            workflow_id VARCHAR, customer_id VARCHAR, entered_on DATE, trigger_ref VARCHAR,
            next_step INTEGER, resume_on DATE, status VARCHAR, ended_on DATE)""",
        """CREATE TABLE wf_log (
            workflow_id VARCHAR, customer_id VARCHAR, entered_on DATE, step INTEGER,
            step_id VARCHAR, run_on DATE, action VARCHAR, channel VARCHAR,
            message_id VARCHAR, detail VARCHAR, recipient VARCHAR)""",
        # Phone numbers as read for SMS (E.164, NULL when not valid), per default region.
        """CREATE TABLE phone_numbers (phone VARCHAR, region VARCHAR, e164 VARCHAR)""",
    ],
    # The warnings of a day's runs, kept with their counts: a rerun of the day reports
    # what all the day's runs did (engine/run.py _day_totals).
    8: ["ALTER TABLE runs ADD COLUMN warnings JSON"],
}


def _locked_error(path: Path, exc: Exception, *, read_only: bool) -> LoyaltyError:
    hint = (
        "Wait for the run to finish: while a run holds the state, no other process can "
        "open it, even to read."
        if read_only
        else "Wait for the other `loyalty run` to finish; two runs on one state are refused."
    )
    return LoyaltyError(
        Diagnostic(
            code="D604",
            path=str(path),
            message=f"the state file is in use by another run ({exc})",
            hint=hint,
        ),
        ExitCode.REFUSED,
    )


def state_error(
    path: str | Path | None,
    message: str,
    hint: str = "Pass the DuckDB file written by `loyalty run`.",
    exit_code: ExitCode = ExitCode.INVALID,
) -> LoyaltyError:
    """D605: the state file cannot be opened or read (exit 1; 2 for a path that is wrong)."""
    shown = "" if path is None else str(path)
    return LoyaltyError(Diagnostic(code="D605", path=shown, message=message, hint=hint), exit_code)


def connect(
    path: str | Path | None, *, read_only: bool = False, upgradable: bool = False
) -> StateConnection:
    """Open (creating if needed) the state file and bring its schema up to date.

    Read-only, the file must be a loyalty state of this schema version, or of an older one
    with `upgradable` (for a caller that upgrades a copy of it)."""
    if path is None or str(path) == ":memory:":
        con = duckdb.connect(":memory:")
    else:
        p = Path(path)
        if read_only and not p.exists():
            raise state_error(
                p,
                "no state file here",
                "Pass --state FILE, or run `loyalty run` first to create it.",
                ExitCode.USAGE,
            )
        if not p.parent.is_dir():
            raise state_error(
                p,
                f"the state file's folder {str(p.parent)!r} does not exist",
                "Create the folder, or pass another --state FILE.",
                ExitCode.USAGE,
            )
        try:
            con = duckdb.connect(str(p), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" in str(exc).lower():
                raise _locked_error(p, exc, read_only=read_only) from None
            if p.is_file() and p.stat().st_size == 0:
                raise state_error(
                    p,
                    "the state file is empty (0 bytes), not a state",
                    "Remove it: the next `loyalty run` creates a new state there.",
                ) from None
            raise state_error(
                p,
                f"cannot open the state file: {exc}",
                "Check the path; the state file is a DuckDB database.",
            ) from None
        except duckdb.Error as exc:
            raise state_error(p, f"not a valid state file: {exc}") from None
    configure(con)
    guarded = StateConnection(con)
    try:
        if read_only:
            check_state(guarded, path, upgradable=upgradable)
        else:
            migrate(guarded, path)
    except BaseException:
        guarded.close()  # the caller gets no connection: let go of the file and its lock
        raise
    return guarded


# The statements that add rows to a table, and the table: INSERT INTO t ..., and
# CREATE [OR REPLACE] [TEMP] TABLE t AS ... (not a CREATE TABLE t (columns), which adds none).
_APPEND = re.compile(
    r"""\s*(?:(INSERT)\s+(?:OR\s+\w+\s+)?INTO|CREATE\s+(?:OR\s+REPLACE\s+)?
        (?:TEMP\s+|TEMPORARY\s+)?TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?)
        \s*((?:"[^"]*"|[\w$]+)(?:\s*\.\s*(?:"[^"]*"|[\w$]+))*)(\s+AS\b)?""",
    re.IGNORECASE | re.VERBOSE,
)
_TRANSACTION_END = re.compile(r"\s*(?:COMMIT|ROLLBACK|ABORT|END)\b", re.IGNORECASE)


class StateConnection:
    """A DuckDB connection on a state, guarding against a defect of DuckDB 2.0.

    Within a transaction, a statement that adds no rows to a table (an INSERT whose SELECT
    is empty, a CREATE TABLE ... AS of nothing) leaves an empty row group at the end of
    the rows the transaction added. When the next statement adds many rows in parallel (a
    row group, 122,880, or more, in insertion order), DuckDB places them after that empty
    row group, and every parallel scan in the transaction stops at it: the rows are in the
    table (count(*) sees them, and they reach the file) but joins, sums and copies do not
    see them. A run that found nothing for one step and much for the next would book and
    report wrong numbers without an error (bench/check_shards.py shows it at scale).

    So the next statement that adds rows to such a table runs on one thread, which fills
    the empty row group first. Everything else goes straight to DuckDB; the statements
    that add rows return their count as DuckDB does.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._after_empty: set[str] = set()  # tables whose last append added no rows

    def execute(self, sql: str, parameters: object = None):
        m = _APPEND.match(sql)
        if m is None:
            if _TRANSACTION_END.match(sql):
                self._after_empty.clear()
            return self._con.execute(sql, parameters)
        inserts, name, as_select = m.groups()
        table = name.split(".")[-1].strip().strip('"').lower()
        if not inserts and as_select is None:  # CREATE TABLE t (columns): a new, empty table
            self._after_empty.discard(table)
            return self._con.execute(sql, parameters)
        if inserts and table in self._after_empty:
            rows = self._on_one_thread(sql, parameters)
        else:
            rows = self._con.execute(sql, parameters).fetchall()
        if rows and rows[0][0] == 0:
            self._after_empty.add(table)
        else:
            self._after_empty.discard(table)
        return _Rows(rows)

    def _on_one_thread(self, sql: str, parameters: object) -> list[tuple]:
        threads = value(self._con, "SELECT current_setting('threads')")
        self._con.execute("SET threads = 1")
        try:
            return self._con.execute(sql, parameters).fetchall()
        finally:
            self._con.execute(f"SET threads = {int(threads)}")

    def __getattr__(self, name: str):
        return getattr(self._con, name)


class _Rows:
    """The result of a statement that added rows: its count, fetched already."""

    def __init__(self, rows: list[tuple]) -> None:
        self._rows = rows

    def fetchone(self) -> tuple | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[tuple]:
        rows, self._rows = self._rows, []
        return rows


# What the engine's functions take: a state's guarded connection, or a plain DuckDB one.
Connection = duckdb.DuckDBPyConnection | StateConnection


def rows(con: Connection, sql: str, params: list | dict | None = None) -> list[dict]:
    """The rows `sql` gives, each a dict by column name."""
    cur = con.execute(sql, params or [])
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def value(con: Connection, sql: str, params: list | None = None) -> Any:
    """The first column of the row `sql` gives: an aggregate, or a lookup known to match."""
    row = con.execute(sql, params or []).fetchone()
    if row is None:
        raise LookupError(f"no row for: {sql}")
    return row[0]


def check_state(con: Connection, path: str | Path | None, *, upgradable: bool) -> int:
    """The state's schema version, after making sure it is one this loyalty can use (D605):
    a loyalty state file (or a database with no tables at all, when `upgradable`: a new
    state), not newer than this loyalty, and not older unless `upgradable`."""
    version = schema_version(con)
    if version == 0:
        others = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE NOT temporary "
                "AND database_name = current_database() ORDER BY table_name LIMIT 4"
            ).fetchall()
        ]
        if others:
            message = (
                "not a loyalty state file: it is a DuckDB database holding other tables "
                f"({', '.join(others)})"
            )
            hint = (
                "Pass the state file written by `loyalty run`, or a new file name to start "
                "one; loyalty does not add its tables to another database."
            )
        elif upgradable:
            return version
        else:
            message = "not a loyalty state file (it has no loyalty tables)"
            hint = "Pass the DuckDB file written by `loyalty run`."
    elif version > SCHEMA_VERSION:
        message = (
            f"the state file has schema version {version}; this loyalty knows up to "
            f"{SCHEMA_VERSION}"
        )
        hint = "Upgrade loyalty to read this state file."
    elif version < SCHEMA_VERSION and not upgradable:
        message = (
            f"the state file has schema version {version}; this loyalty reads version "
            f"{SCHEMA_VERSION}"
        )
        hint = "The next `loyalty run` on it upgrades it (keep a copy from before)."
    else:
        return version
    raise state_error(path, message, hint)


def configure(con: duckdb.DuckDBPyConnection) -> None:
    """Session settings of every connection on a state.

    Memory is capped (LOYALTY_MEMORY_LIMIT, default 1500MB) so a run over tens of millions of
    rows spills to disk instead of taking the machine's memory.
    """
    con.execute("SET TimeZone = 'UTC'")
    limit = memory_limit()
    try:
        con.execute("SET memory_limit = ?", [limit])
    except duckdb.Error:
        con.close()
        raise LoyaltyError(
            Diagnostic(
                code="D611",
                message=f"LOYALTY_MEMORY_LIMIT={limit!r} is not an amount of memory",
                hint="Write a number and a unit, such as 1500MB or 4GB, or unset it for the "
                "default (1500MB).",
            ),
            ExitCode.USAGE,
        ) from None


def memory_limit() -> str:
    """The memory cap of a state's connections: LOYALTY_MEMORY_LIMIT, else 1500MB."""
    return os.environ.get("LOYALTY_MEMORY_LIMIT") or "1500MB"


def out_of_memory(exc: duckdb.Error, doing: str) -> LoyaltyError:
    """D610: DuckDB could not get memory under the cap, nor room to spill to disk (exit 1).
    The run is rolled back: the state is as before."""
    return LoyaltyError(
        Diagnostic(
            code="D610",
            message=f"out of memory while {doing}, under the cap of {memory_limit()}; the "
            f"state is unchanged: {first_line(str(exc))}",
            hint="Raise LOYALTY_MEMORY_LIMIT (such as 4GB) if the machine has the memory, or "
            "free disk space next to the state file, where DuckDB spills what does not fit "
            "(a folder named after the state file, ending in .tmp).",
        ),
        ExitCode.INVALID,
    )


def schema_version(con: Connection) -> int:
    exists = value(con, "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'")
    if not exists:
        return 0
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(con: Connection, path: str | Path | None = None) -> int:
    """Apply pending migrations in one transaction; returns the resulting version."""
    current = check_state(con, path, upgradable=True)
    if current == SCHEMA_VERSION:
        return current
    con.execute("BEGIN TRANSACTION")
    try:
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for stmt in MIGRATIONS[version]:
                con.execute(stmt)
        con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)]
        )
        con.execute("COMMIT")
    except Exception as exc:
        con.execute("ROLLBACK")
        if isinstance(exc, duckdb.OutOfMemoryException):
            raise out_of_memory(exc, "creating or upgrading the state's tables") from None
        raise
    return SCHEMA_VERSION


def get_meta(con: Connection, key: str) -> str | None:
    row = con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
    return row[0] if row else None


def set_meta(con: Connection, key: str, value: str) -> None:
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])


def delete_meta(con: Connection, key: str) -> None:
    con.execute("DELETE FROM meta WHERE key = ?", [key])
