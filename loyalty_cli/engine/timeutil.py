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
from loyalty_cli.state import Connection

# A zone designator after a clock time: Z, UTC/GMT, +02, +0200, +02:00 or an IANA name.
# The clock time in front keeps a plain date such as 2026-06-01 (which ends in "-01") out.
ZONE_SUFFIX_RE = (
    r"\d:\d\d(:\d\d([.,]\d+)?)?\s*"
    r"([zZ]|UTC|GMT|[+-]\d\d(:?\d\d)?|[A-Za-z]+/[A-Za-z0-9_/+-]+)$"
)


# An offset no zone has (over 18 hours, or 60 minutes and more): the text is not a time.
BAD_OFFSET_RE = r"[+-](19|2\d|[3-9]\d)(:?\d\d)?$|[+-]\d\d:?[6-9]\d$|[+-]18:?(0[1-9]|[1-5]\d)$"


def sql_literal(text: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + text.replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    """A quoted SQL identifier (double quotes doubled)."""
    return '"' + name.replace('"', '""') + '"'


def check_timezone(con: Connection, timezone: str) -> None:
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


# Gaps before this year are not looked at (exports hold recent data; older wall times in a
# historical gap are kept as written).
GAP_YEARS_FROM = 1980


def gap_hours(timezone: str) -> tuple[int, int] | None:
    """Local hours (first, last) touched by any spring-forward gap of the zone, or None.

    Only wall times in those hours can fall into a gap, so only they need the ICU round trip.
    """
    try:
        tz = pytz.timezone(timezone)
    except pytz.UnknownTimeZoneError:
        return None
    times = getattr(tz, "_utc_transition_times", None)
    infos = getattr(tz, "_transition_info", None)
    if not times or not infos:
        return None
    hours: set[int] = set()
    for i in range(1, len(times)):
        before, after = infos[i - 1][0], infos[i][0]
        if after <= before or times[i].year < GAP_YEARS_FROM:
            continue
        start = times[i] + before
        end = times[i] + after
        t = start.replace(minute=0, second=0, microsecond=0)
        while t < end:
            hours.add(t.hour)
            t += timedelta(hours=1)
    return (min(hours), max(hours)) if hours else None


MIN_TIMESTAMP = "TIMESTAMP '0001-01-01 00:00:00'"
MAX_TIMESTAMP = "TIMESTAMP '9999-12-31 23:59:59.999999'"


def naive_timestamp_sql(text_expr: str) -> str:
    """SQL: text without a zone read as a TIMESTAMP, NULL if unreadable.

    DuckDB's cast skips a word after the clock time (``2026-05-01 10:00 PM`` reads as 10:00,
    ``10:00:00 EST`` as 10:00 local): a space after the date's own separator makes the text
    unreadable here. Zones the contract accepts are read by ``local_timestamp_sql`` first.
    """
    return (
        f"CASE WHEN NOT contains(substr({text_expr}, 12), ' ') "
        f"THEN TRY_CAST({text_expr} AS TIMESTAMP) END"
    )


def instant_sql(text_expr: str) -> str:
    """SQL: text with a zone or offset read as a TIMESTAMPTZ, NULL if unreadable.

    `Z` after the clock time (not the last letter of a zone name: Europe/Vaduz) is +00:00,
    and spaces before an offset go (`10:00:00 +0200`): ICU reads neither.
    """
    text = f"regexp_replace({text_expr}, '([0-9])\\s*[zZ]$', '\\1+00:00')"
    text = f"regexp_replace({text}, '\\s+([+-][0-9]{{2}}(:?[0-9]{{2}})?)$', '\\1')"
    return f"TRY_CAST({text} AS TIMESTAMPTZ)"


def local_timestamp_sql(text_expr: str, timezone: str, naive: str | None = None) -> str:
    """SQL turning text into a local wall-clock TIMESTAMP in ``timezone``, NULL if unreadable.

    - With ``Z``, an offset or a zone name: the instant is converted to the program's zone.
    - Without a zone: the text is already local time. A time in the spring-forward gap is
      sent through ICU and back, which moves it ahead by the gap (02:30 -> 03:30 in Warsaw);
      every other wall time, including the repeated fall-back hour, stays as written. The
      stored wall time of a repeated hour stands for its first occurrence (9.1).
    - A bare date means 00:00 of that day.

    The zone pattern and ICU are only evaluated for the rows that may need them (a cheap
    test first), which keeps tens of millions of rows fast. ``naive``, when given, is SQL for
    ``naive_timestamp_sql(text_expr)`` already computed (it is used several times).
    """
    tz = sql_literal(timezone)
    converted = f"timezone({tz}, {instant_sql(text_expr)})"
    # The converted time keeps a year from 0001 to 9999, as written times must
    # (0001-01-01T00:00:00Z is a time before Christ in New York).
    zoned = (
        f"CASE WHEN {converted} BETWEEN {MIN_TIMESTAMP} AND {MAX_TIMESTAMP} THEN {converted} END"
    )
    naive = naive or naive_timestamp_sql(text_expr)
    if has_daylight_saving(timezone):
        hours = gap_hours(timezone)
        fixed = f"timezone({tz}, timezone({tz}, {naive}))"
        if hours is not None:
            fixed = (
                f"CASE WHEN hour({naive}) BETWEEN {hours[0]} AND {hours[1]} THEN {fixed} "
                f"ELSE {naive} END"
            )
        naive = fixed
    maybe_zoned = (
        f"(suffix({text_expr}, 'Z') OR suffix({text_expr}, 'z') "
        f"OR contains(substr({text_expr}, 11), '+') OR contains(substr({text_expr}, 12), '-') "
        f"OR regexp_matches(right({text_expr}, 1), '[A-Za-z]'))"
    )
    # Cheaper still, and true whenever the zone pattern and the test above both are: the text
    # ends in Z, z, UTC or GMT, or holds '+', '/' (a zone name) or a '-' after a ':' (an
    # offset after the clock time). Plain local times fail it at the cost of a few byte scans.
    quick = (
        f"(contains({text_expr}, '+') OR contains({text_expr}, '/') "
        f"OR suffix({text_expr}, 'Z') OR suffix({text_expr}, 'z') OR suffix({text_expr}, 'C') "
        f"OR suffix({text_expr}, 'T') OR {text_expr} LIKE '%:%-%')"
    )
    maybe_zoned = f"({quick} AND {maybe_zoned})"
    zoned = (
        f"CASE WHEN regexp_matches({text_expr}, {sql_literal(BAD_OFFSET_RE)}) THEN NULL "
        f"ELSE {zoned} END"
    )
    return (
        f"CASE WHEN {maybe_zoned} AND regexp_matches({text_expr}, {sql_literal(ZONE_SUFFIX_RE)}) "
        f"THEN {zoned} ELSE {naive} END"
    )


def end_of_day_sql(day: date) -> str:
    """SQL TIMESTAMP literal of the first instant after ``day`` (00:00 belongs to the new day)."""
    return f"TIMESTAMP '{(day + timedelta(days=1)).isoformat()} 00:00:00'"
