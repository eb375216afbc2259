"""Build a shop from a few literal rows, run it, and read back the state and files."""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings

from loyalty_cli import state
from loyalty_cli.columns import SOURCE_COLUMNS
from loyalty_cli.engine.run import RunResult, backfill, run
from loyalty_cli.engine.sources import SOURCE_ORDER

# The export files' columns: the data contract's canonical columns, in its order.
HEADERS = {source: list(SOURCE_COLUMNS[source]) for source in SOURCE_ORDER}

BASE = """\
version: 1
program:
  id: test-club
  name: Test Club
  currency: PLN
  timezone: Europe/Warsaw
  point_value: 0.01
sources:
  customers: {path: customers.csv}
  orders: {path: orders.csv}
  order_items: {path: order_items.csv}
  returns: {path: returns.csv}
  events: {path: events.csv}
  redemptions: {path: redemptions.csv}
  adjustments: {path: adjustments.csv}
"""


def customer(cid: str, joined: str = "2025-01-01 10:00:00", **kw) -> dict:
    row = {"customer_id": cid, "joined_at": joined, "email": f"{cid.lower()}@example.com"}
    row.update(kw)
    return row


def order(oid: str, cid: str, at: str, total: str, **kw) -> dict:
    """An orders export row; other columns (currency, status, ...) as keywords."""
    return {"order_id": oid, "customer_id": cid, "ordered_at": at, "total": total, **kw}


def item(oid: str, sku: str, quantity: str, unit_price: str, **kw) -> dict:
    """An order_items export row; other columns (category, tags, ...) as keywords."""
    return {"order_id": oid, "sku": sku, "quantity": quantity, "unit_price": unit_price, **kw}


def event(eid: str, cid: str, at: str, kind: str = "page_view", **kw) -> dict:
    """An events export row of type `kind`."""
    return {"event_id": eid, "customer_id": cid, "type": kind, "occurred_at": at, **kw}


class Shop:
    """A program plus an export folder in a temporary directory."""

    def __init__(self, root: Path, program_body: str, state_name: str = "state.duckdb"):
        self.root = root
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.out = root / "out"
        self.state = root / state_name
        self.program = root / "program.yaml"
        self.program.write_text(BASE + textwrap.dedent(program_body))
        self.rows: dict[str, list[dict]] = {k: [] for k in HEADERS}
        self.export()

    def add(self, source: str, *rows: dict) -> Shop:
        self.rows[source].extend(rows)
        self.export()
        return self

    def export(self) -> None:
        for source, header in HEADERS.items():
            with (self.data / f"{source}.csv").open("w", newline="") as fh:
                w = csv.DictWriter(fh, fieldnames=header, lineterminator="\n")
                w.writeheader()
                for row in self.rows[source]:
                    w.writerow({k: row.get(k, "") for k in header})

    def run(self, day: str, **kw) -> RunResult:
        results = run(
            self.program, self.data, dt.date.fromisoformat(day), self.state, self.out, **kw
        )
        if self.state.exists() or results[-1].status == "ok":  # a refused first run makes none
            check_invariants(self.state)
        return results[-1]

    def run_cli(
        self, day: str, env: dict | None = None, timeout: int = 300
    ) -> subprocess.CompletedProcess:
        """`loyalty run` for day in a process of its own (exit code, stdout, stderr)."""
        cmd = [
            sys.executable,
            "-m",
            "loyalty_cli.cli",
            "run",
            str(self.program),
            "--data",
            str(self.data),
            "--as-of",
            day,
            "--state",
            str(self.state),
            "--out",
            str(self.out),
        ]
        return subprocess.run(
            cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=timeout
        )

    def backfill(self, first: str, last: str) -> list[RunResult]:
        results = backfill(
            self.program,
            self.data,
            dt.date.fromisoformat(first),
            dt.date.fromisoformat(last),
            self.state,
            self.out,
        )
        check_invariants(self.state)
        return results

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        con = state.connect(self.state, read_only=True)
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    def balance(self, cid: str) -> tuple[int, int]:
        """(available, pending) of a member from the lots."""
        row = self.query(
            """SELECT coalesce(sum(CASE WHEN status = 'available' THEN remaining END), 0),
                      coalesce(sum(CASE WHEN status = 'pending' THEN remaining END), 0)
               FROM lots WHERE customer_id = ?""",
            [cid],
        )[0]
        return int(row[0]), int(row[1])

    def lots(self, cid: str) -> list[tuple]:
        """(earned_on, amount, remaining, status) per lot, oldest first."""
        return [
            (str(r[0]), r[1], r[2], r[3])
            for r in self.query(
                "SELECT earned_on, amount, remaining, status FROM lots WHERE customer_id = ? "
                "ORDER BY earned_on, lot_id",
                [cid],
            )
        ]

    def ledger(self, cid: str, day: str | None = None) -> list[tuple]:
        """(kind, points, pending, rule_id, shortfall) per entry, in order."""
        sql = (
            "SELECT kind, points, pending, rule_id, shortfall FROM ledger WHERE customer_id = ?"
            + (" AND run_on = ?" if day else "")
            + " ORDER BY entry_id"
        )
        return self.query(sql, [cid, dt.date.fromisoformat(day)] if day else [cid])

    def csv(self, day: str, name: str) -> list[dict]:
        with (self.out / day / name).open(newline="") as fh:
            return list(csv.DictReader(fh))


def check_invariants(state_path: Path) -> None:
    """Available = sum of available lot remainders = sum of ledger points; no lot below 0."""
    con = state.connect(state_path, read_only=True)
    try:
        bad = con.execute(
            """WITH l AS (
                   SELECT customer_id,
                          sum(CASE WHEN status = 'available' THEN remaining ELSE 0 END) AS avail,
                          sum(CASE WHEN status = 'pending' THEN remaining ELSE 0 END) AS pend
                   FROM lots GROUP BY customer_id),
               g AS (SELECT customer_id, sum(points) AS avail, sum(pending) AS pend
                     FROM ledger GROUP BY customer_id)
               SELECT coalesce(l.customer_id, g.customer_id), l.avail, g.avail, l.pend, g.pend
               FROM l FULL JOIN g USING (customer_id)
               WHERE coalesce(l.avail, 0) <> coalesce(g.avail, 0)
                  OR coalesce(l.pend, 0) <> coalesce(g.pend, 0)"""
        ).fetchall()
        assert not bad, f"balance invariant broken: {bad[:5]}"
        negative = con.execute("SELECT count(*) FROM lots WHERE remaining < 0").fetchone()[0]
        assert negative == 0, "a lot went below zero"
        over = con.execute("SELECT count(*) FROM lots WHERE remaining > amount").fetchone()[0]
        assert over == 0, "a lot holds more than it was credited"
    finally:
        con.close()


SKIP_TABLES = {"meta"}


def dump_state(path: Path) -> dict[str, list[tuple]]:
    """Every table of a state file, rows sorted, run timestamps left out."""
    con = state.connect(path, read_only=True)
    try:
        tables = [
            r[0]
            for r in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
                "ORDER BY table_name"
            ).fetchall()
        ]
        out = {}
        for t in tables:
            if t in SKIP_TABLES:
                continue
            cols = [
                r[0]
                for r in con.execute(
                    f"SELECT column_name FROM information_schema.columns WHERE table_name = '{t}' "
                    "ORDER BY ordinal_position"
                ).fetchall()
            ]
            keep = [c for c in cols if c not in ("started_at", "finished_at")]
            rows = con.execute(f"SELECT {', '.join(keep)} FROM {t}").fetchall()
            out[t] = sorted(rows, key=repr)
        return out
    finally:
        con.close()


@contextlib.contextmanager
def state_held(path: Path) -> Iterator[None]:
    """Another process holds the state file open (as a run does) until the block ends."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; con = duckdb.connect({str(path)!r}); "
            "print('locked', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()
        holder.wait()
        for stream in (holder.stdin, holder.stdout):
            if stream is not None:
                stream.close()


def dump_outputs(out: Path) -> dict[str, bytes]:
    """Every output file's bytes; run.json's without its timings (SPEC 5)."""
    files = {}
    for p in sorted(out.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "run.json":
                payload = json.loads(data)
                payload.pop("timings")
                data = json.dumps(payload, sort_keys=True).encode()
            files[str(p.relative_to(out))] = data
    return files


def hunt_settings(fixed: int) -> settings:
    """Hypothesis settings of the property and fuzz tests: `fixed` examples drawn the same
    way every run, or LOYALTY_PROPERTY_EXAMPLES=N new ones each run (a random hunt).

    Shrinking a failing example takes minutes of runs: the example as drawn is shown instead.
    """
    hunt = int(os.environ.get("LOYALTY_PROPERTY_EXAMPLES", "0"))
    return settings(
        max_examples=hunt or fixed,
        deadline=None,
        derandomize=not hunt,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
