"""Step 10: the files a run writes to `out/D/` (SPEC 8), all derived from the state.

Because every file is a query over the state for day D, running D again with the same
exports writes the same bytes (run.json timings aside). Text cells from the shop's data
that begin with = + - @ tab or CR are neutralised for spreadsheets.
"""

from __future__ import annotations

import json
import shutil
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from loyalty_cli.engine import workflows
from loyalty_cli.engine.context import RunContext
from loyalty_cli.engine.timeutil import sql_literal

# The first characters that make a spreadsheet read a cell as a formula.
FORMULA_START = "('=', '+', '-', '@', chr(9), chr(13))"
# The same test as ranges of text ("begins with c" is c <= text < the next character), which
# DuckDB checks against each row group's least and greatest value before reading it.
FORMULA_RANGES = " OR ".join(
    f"({{col}} >= {lo} AND {{col}} < {hi})"
    for lo, hi in (
        ("chr(9)", "chr(10)"),
        ("chr(13)", "chr(14)"),
        ("'+'", "','"),
        ("'-'", "'.'"),
        ("'='", "'>'"),
        ("'@'", "'A'"),
    )
)


def neutral(col: str) -> str:
    """SQL neutralising a text cell that a spreadsheet would read as a formula."""
    return f"CASE WHEN left({col}, 1) IN {FORMULA_START} THEN '''' || {col} ELSE {col} END"


def customer_cell(ctx: RunContext) -> str:
    """SQL of a customer_id cell: neutralised, unless no customer's id needs it (the usual
    case), which spares a test of every row of every file. Every id the files hold is one
    of `customers`."""
    risky = ctx.scalar(
        f"SELECT count(*) FROM customers WHERE {FORMULA_RANGES.format(col='customer_id')}"
    )
    return neutral("customer_id") if risky else "customer_id"


def copy_csv(ctx: RunContext, query: str, path: Path, *, header: bool = True) -> None:
    """COPY a query's rows to a CSV file (the folder made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    target = str(path).replace("'", "''")
    ctx.q(
        f"COPY ({query}) TO '{target}' (FORMAT csv, HEADER {str(header).lower()}, NEW_LINE '\\n')"
    )


# Rows per part when a run's ledger.csv is written in parts (see _write_ledger).
LEDGER_PART_ROWS = 1_500_000


def _write_ledger(ctx: RunContext, path: Path, customer: str) -> None:
    """ledger.csv: the entries of runs for D in entry order.

    A first run over years of history makes millions of entries; sorting them all at once
    would spill to disk under the memory cap. They are written in ranges of entry ids,
    each sorted on its own, and the parts joined: the same bytes, far less memory.
    """
    d = ctx.sql_date()
    # rule_id is always an id of the program (a rule, bonus or reward: they start with a
    # letter or digit) or a fixed word, so it needs no neutralising; the other text may
    # come from the shop's data.
    select = f"""SELECT {customer} AS customer_id, kind, points, pending,
                   rule_id, {neutral("source_id")} AS source_id,
                   occurred_on, {neutral("reason")} AS reason, shortfall
            FROM ledger WHERE run_on = {d}"""
    n, low, high = ctx.q(
        f"SELECT count(*), min(entry_id), max(entry_id) FROM ledger WHERE run_on = {d}"
    ).fetchone()
    parts = max(1, -(-int(n) // LEDGER_PART_ROWS))
    if parts == 1:
        copy_csv(ctx, f"{select} ORDER BY entry_id", path)
        return
    width = -(-(int(high) - int(low) + 1) // parts)
    pieces = []
    for i in range(parts):
        lo, hi = int(low) + i * width, int(low) + (i + 1) * width
        piece = path.with_name(f".{path.name}.{i}")
        copy_csv(
            ctx,
            f"{select} AND entry_id >= {lo} AND entry_id < {hi} ORDER BY entry_id",
            piece,
            header=i == 0,
        )
        pieces.append(piece)
    with path.open("wb") as out:
        for piece in pieces:
            with piece.open("rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 20)
            piece.unlink()


LIFETIME_SQL = """
    sum(CASE WHEN kind = 'pending' THEN pending
             WHEN kind IN ('earn', 'bonus', 'award') THEN points
             WHEN kind = 'adjust' AND points > 0 THEN points
             WHEN kind = 'cancel' THEN pending - shortfall
             WHEN kind = 'clawback' THEN points - shortfall
             ELSE 0 END)"""


def update_totals(ctx: RunContext, first_entry: int) -> None:
    """Add this run's new ledger entries (entry_id > first_entry) to the members' totals.

    lifetime_earned = points ever credited (pending included) minus points cancelled or
    reversed for returns, the full due even where a clawback fell short (SPEC 9.16).
    """
    ctx.q(
        f"""CREATE OR REPLACE TEMP TABLE _totals AS
        SELECT customer_id, {LIFETIME_SQL} AS add FROM ledger
        WHERE entry_id > {int(first_entry)} GROUP BY customer_id"""
    )
    ctx.q(
        """UPDATE member_totals SET lifetime_earned = lifetime_earned + t.add FROM _totals t
        WHERE member_totals.customer_id = t.customer_id AND t.add <> 0"""
    )
    ctx.q(
        """INSERT INTO member_totals SELECT customer_id, add FROM _totals t
        WHERE NOT EXISTS (SELECT 1 FROM member_totals m WHERE m.customer_id = t.customer_id)"""
    )


def build_balances(ctx: RunContext) -> None:
    """The temp table `balances_now`: balances.csv's rows (SPEC 8, 9.16), computed once."""
    d = ctx.sql_date()
    # A program without tiers leaves the tier cell empty.
    lowest = "NULL" if ctx.program.lowest_tier is None else sql_literal(ctx.program.lowest_tier)
    ctx.q(
        f"""CREATE OR REPLACE TEMP TABLE balances_now AS
        WITH g AS (
            SELECT customer_id, status, expires_on, sum(remaining) AS points
            FROM lots WHERE remaining > 0 GROUP BY ALL),
        lot AS (
            -- One pass over the lots, grouped by expiry day first: the next expiry's
            -- points are those of the earliest day among the available lots.
            SELECT customer_id,
                   sum(points) FILTER (status = 'available') AS available,
                   sum(points) FILTER (status = 'pending') AS pending,
                   min(expires_on) FILTER (status = 'available') AS next_expiry_on,
                   arg_min(points, expires_on)
                       FILTER (status = 'available' AND expires_on IS NOT NULL)
                       AS next_expiry_points
            FROM g GROUP BY customer_id)
        SELECT c.customer_id,
               coalesce(lot.available, 0) AS available, coalesce(lot.pending, 0) AS pending,
               coalesce(t.tier, {lowest}) AS tier,
               lot.next_expiry_on, lot.next_expiry_points,
               coalesce(m.lifetime_earned, 0) AS lifetime_earned
        FROM customers c
        LEFT JOIN lot USING (customer_id)
        LEFT JOIN member_totals m USING (customer_id) LEFT JOIN tiers t USING (customer_id)
        WHERE c.join_day <= {d}"""
    )


def write_all(ctx: RunContext, out: Path, rejects_table: str) -> None:
    d = ctx.sql_date()
    customer = customer_cell(ctx)
    copy_csv(
        ctx,
        f"""SELECT {customer} AS customer_id, available, pending, tier,
                   next_expiry_on, next_expiry_points, lifetime_earned
            FROM balances_now ORDER BY balances_now.customer_id""",
        out / "balances.csv",
    )
    _write_ledger(ctx, out / "ledger.csv", customer)
    copy_csv(
        ctx,
        f"""SELECT {customer} AS customer_id, from_tier, to_tier, change,
                   effective_on
            FROM tier_changes WHERE effective_on = {d} ORDER BY customer_id""",
        out / "tier_changes.csv",
    )
    copy_csv(
        ctx,
        f"""SELECT {customer} AS customer_id, segment_id, grp AS "group",
                   r, f, m, value
            FROM segment_members WHERE as_of = {d} ORDER BY customer_id, segment_id""",
        out / "segments.csv",
    )
    copy_csv(
        ctx,
        f"""SELECT {neutral("redemption_id")} AS redemption_id,
                   {customer} AS customer_id, {neutral("reward_id")} AS reward_id,
                   status, reason, {neutral("coupon_code")} AS coupon_code
            FROM redemptions WHERE processed_on = {d}
            ORDER BY customer_id, requested_at, redemption_id""",
        out / "redemptions.csv",
    )
    write_rejects(ctx, out / "rejects.csv", rejects_table)
    workflows.write_outputs(ctx, out, customer)


def write_rejects(ctx: RunContext, path: Path, rejects_table: str) -> None:
    copy_csv(
        ctx,
        f"""SELECT source, {neutral("file")} AS file, line, {neutral('"column"')} AS "column",
                   reason
            FROM {rejects_table} ORDER BY source, file, line, "column", reason""",
        path,
    )


def summary(ctx: RunContext) -> dict:
    """Headline figures of the state after the run, for the terminal summary."""
    row = ctx.q(
        "SELECT count(*), coalesce(sum(available), 0), coalesce(sum(pending), 0) FROM balances_now"
    ).fetchone()
    tiers = dict(
        ctx.q(
            "SELECT tier, count(*) FROM balances_now WHERE tier IS NOT NULL "
            "GROUP BY tier ORDER BY tier"
        ).fetchall()
    )
    program = ctx.program.data["program"]
    return {
        "members": int(row[0]),
        "available": int(row[1]),
        "pending": int(row[2]),
        "liability": str(liability(int(row[1]), program.get("point_value"), program["currency"])),
        "currency": program["currency"],
        "tiers": {str(k): int(v) for k, v in tiers.items()},
    }


def liability(points: int, point_value, currency: str) -> Decimal:
    """Money owed for `points`: points x point_value, exact, then rounded half up to the
    currency's minor unit (2 places for PLN or EUR, none for JPY). The point value is taken
    as written in the program (0.01, not the float nearest to it)."""
    from babel.numbers import get_currency_precision

    places = get_currency_precision(currency)
    exact = Decimal(points) * Decimal(str(point_value or 0))
    return exact.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def write_run_json(out: Path, result, program_id: str, window_start=None) -> None:
    """run.json of a run's result (status ok or refused), SPEC 8."""
    payload = {
        "as_of": result.as_of.isoformat(),
        "status": result.status,
        "program": program_id,
        "window_start": window_start.isoformat() if window_start else None,
        "reason": result.reason,
        "counts": result.counts,
        "rejects": result.rejects,
        "warnings": result.warnings,
        "models": result.models,
        "summary": result.summary,
        "timings": result.timings,
    }
    (out / "run.json").write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")
