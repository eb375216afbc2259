"""Durations such as `365 days` or `3 months` (calendar months and years)."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

_RE = re.compile(r"^\s*(\d{1,4})\s+(day|days|week|weeks|month|months|year|years)\s*$")


@dataclass(frozen=True)
class Duration:
    n: int
    unit: str  # day | week | month | year

    def __str__(self) -> str:
        return f"{self.n} {self.unit}{'' if self.n == 1 else 's'}"

    def add_to(self, day: dt.date) -> dt.date:
        """`day` + this duration; month arithmetic clamps to the month's last day."""
        if self.unit == "day":
            return day + dt.timedelta(days=self.n)
        if self.unit == "week":
            return day + dt.timedelta(weeks=self.n)
        months = self.n if self.unit == "month" else 12 * self.n
        y, m = divmod(day.month - 1 + months, 12)
        year, month = day.year + y, m + 1
        last = calendar.monthrange(year, month)[1]
        return dt.date(year, month, min(day.day, last))

    def subtract_from(self, day: dt.date) -> dt.date:
        """`day` - this duration (calendar-aware like `add_to`)."""
        if self.unit in ("day", "week"):
            return day - dt.timedelta(days=self.n * (7 if self.unit == "week" else 1))
        months = self.n if self.unit == "month" else 12 * self.n
        y, m = divmod(day.month - 1 - months, 12)
        year, month = day.year + y, m + 1
        last = calendar.monthrange(year, month)[1]
        return dt.date(year, month, min(day.day, last))

    def sql_interval(self) -> str:
        """DuckDB INTERVAL literal text (safe: built from an int and a fixed unit)."""
        return f"INTERVAL {int(self.n)} {self.unit.upper()}"

    def approx_days(self) -> int:
        return {"day": 1, "week": 7, "month": 30, "year": 365}[self.unit] * self.n


def parse_duration(text: object) -> Duration | None:
    """Parse `N day(s)|week(s)|month(s)|year(s)`; None when malformed."""
    if not isinstance(text, str):
        return None
    m = _RE.match(text)
    if not m:
        return None
    unit = m.group(2).rstrip("s")
    return Duration(int(m.group(1)), unit)


# The longest duration of each unit: 100 years. Date arithmetic over longer spans leaves
# the calendar a run can compute in (year 9999), and no loyalty rule needs them.
MAX_DURATION = {"day": 36_500, "week": 5_200, "month": 1_200, "year": 100}
MAX_DURATION_TEXT = "100 years: 9999 days, 5200 weeks, 1200 months or 100 years"


def too_long(duration: Duration) -> bool:
    """Whether the duration is longer than the longest allowed (about 100 years)."""
    return duration.n > MAX_DURATION[duration.unit]


DURATION_HINT = "Write a duration as 'N days', 'N weeks', 'N months' or 'N years', e.g. '365 days'."
