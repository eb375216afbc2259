"""Time in the program's timezone, as SQL over DuckDB's built-in ICU (SPEC 3, 9.1).

Every timestamp a run uses is a local wall-clock ``TIMESTAMP`` in the program's timezone, so a
row's *day* is simply ``CAST(ts AS DATE)`` and "the end of day D" is ``D + 1 day`` at 00:00.
These helpers build the SQL that gets text exports into that form; they never change the
connection's ``TimeZone`` setting, so they are safe inside somebody else's transaction.
"""

from __future__ import annotations

from datetime import date, timedelta

import duckdb
import pytz

from loyalty_cli.diagnostics import Diagnostic, LoyaltyError

# A zone designator after a clock time: Z, UTC/GMT, +02, +0200, +02:00 or an IANA name.
# The clock time in front keeps a plain date such as 2026-06-01 (which ends in "-01") out.
ZONE_SUFFIX_RE = (
    r"\d:\d\d(:\d\d([.,]\d+)?)?\s*"
    r"([zZ]|UTC|GMT|[+-]\d\d(:?\d\d)?|[A-Za-z]+/[A-Za-z0-9_/+-]+)$"
)


def sql_literal(text: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


def check_timezone(con: duckdb.DuckDBPyConnection, timezone: str) -> None:
    """Raise R307 when ICU does not know ``timezone`` (it would fail later, row by row)."""
    try:
        con.execute("SELECT timezone(?, TIMESTAMP '2000-01-01')", [timezone]).fetchone()
    except duckdb.Error as exc:
        raise LoyaltyError(
            Diagnostic(
                "R307",
                f"unknown timezone {timezone!r}",
                hint="use an IANA name such as Europe/Warsaw or America/New_York",
                extra={"detail": str(exc).splitlines()[0]},
            )
        ) from None


def has_daylight_saving(timezone: str) -> bool:
    """True unless the zone has one fixed offset (then local times need no DST repair)."""
    try:
        tz = pytz.timezone(timezone)
    except pytz.UnknownTimeZoneError:
        return True
    return not isinstance(tz, pytz.tzinfo.StaticTzInfo) and tz is not pytz.utc


def local_timestamp_sql(text_expr: str, timezone: str) -> str:
    """SQL turning text into a local wall-clock TIMESTAMP in ``timezone``, NULL if unreadable.

    - With ``Z``, an offset or a zone name: the instant is converted to the program's zone.
    - Without a zone: the text is already local time. It is sent through ICU and back, which
      moves a time in the spring-forward gap ahead by the gap (02:30 -> 03:30 in Warsaw) and
      leaves every other wall time, including the repeated fall-back hour, as written. The
      stored wall time of a repeated hour stands for its first occurrence (9.1).
    - A bare date means 00:00 of that day.
    """
    tz = sql_literal(timezone)
    zoned = (
        f"timezone({tz}, TRY_CAST(regexp_replace({text_expr}, '[zZ]$', '+00:00') AS TIMESTAMPTZ))"
    )
    naive = f"TRY_CAST({text_expr} AS TIMESTAMP)"
    if has_daylight_saving(timezone):
        naive = f"timezone({tz}, timezone({tz}, {naive}))"
    return (
        f"CASE WHEN regexp_matches({text_expr}, {sql_literal(ZONE_SUFFIX_RE)}) "
        f"THEN {zoned} ELSE {naive} END"
    )


def end_of_day_sql(day: date) -> str:
    """SQL TIMESTAMP literal of the first instant after ``day`` (00:00 belongs to the new day)."""
    return f"TIMESTAMP '{(day + timedelta(days=1)).isoformat()} 00:00:00'"
