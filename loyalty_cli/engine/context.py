"""What every stage of a run shares: the connection, the program, the day and the counts."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field

from loyalty_cli.config.durations import Duration
from loyalty_cli.config.model import Program
from loyalty_cli.state import Connection


@dataclass
class RunContext:
    """One run for day `as_of` over the rows after `window_start` (exclusive; None = all)."""

    con: Connection
    program: Program
    as_of: dt.date
    window_start: dt.date | None = None
    data_dir: object = None
    counts: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    warnings: list[str] = field(default_factory=list)
    models: dict[str, dict] = field(default_factory=dict)
    dry_run: bool = False
    # Last entry_id / lot_id used, read once and then counted (ledger.py owns them).
    last_ids: dict[str, int] = field(default_factory=dict)
    # The day's rendered messages per (workflow id, step id) and channel, for the batches
    # (workflows.render_messages, then write_outputs).
    messages: dict[tuple[str, str], dict[str, list[dict]]] = field(default_factory=dict)

    @property
    def first_run(self) -> bool:
        return self.window_start is None

    @property
    def multi_day(self) -> bool:
        return self.window_start is None or (self.as_of - self.window_start).days > 1

    def count(self, step: str, key: str, n: int) -> None:
        if n:
            self.counts[step][key] = self.counts[step].get(key, 0) + int(n)

    def q(self, sql: str, params: list | dict | None = None):
        """Execute SQL on the run's connection (parameters by position or by $name)."""
        return self.con.execute(sql, params or [])

    def scalar(self, sql: str, params: list | dict | None = None):
        row = self.con.execute(sql, params or []).fetchone()
        return row[0] if row else None

    def has_table(self, name: str) -> bool:
        """Whether the run's connection has a table (or temp table) of this name."""
        return bool(
            self.scalar("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name])
        )

    def not_cancelled_now(self, column: str) -> str:
        """SQL: `AND column NOT IN` the orders re-exported as cancelled in this run, which are
        still `completed` in `orders` until the run's end (empty without `cancelled_now`)."""
        if not self.has_table("cancelled_now"):
            return ""
        return f"AND {column} NOT IN (SELECT order_id FROM cancelled_now)"

    def expiry_after(self) -> Duration | None:
        return self.program.duration("expiry", "after")

    def sql_date(self, d: dt.date | None = None) -> str:
        """A DATE literal (built from a date object, never from user text)."""
        d = d or self.as_of
        return f"DATE '{d.isoformat()}'"


def id_range(column: str, ids: str) -> str:
    """SQL: `column` lies between the least and greatest of the `order_id`s of `ids`.

    Redundant next to an IN over the same ids, but a plain range lets DuckDB skip the row
    groups of a big table whose ids all fall outside it (their min/max statistics): shops'
    order ids mostly grow with time, and a night names recent orders.
    """
    return (
        f"{column} BETWEEN (SELECT min(order_id) FROM {ids}) AND (SELECT max(order_id) FROM {ids})"
    )
