"""`loyalty report`: the program's figures from the state as of a day (SPEC 2, 8).

Everything is read from the state file; the program's name, currency, point value and
tier levels are those the last run stored (meta `program`). The figures, as of day D (the
last run's day unless asked otherwise):

- members, available points and liability per tier (points from the ledger entries of runs
  up to D, the tier from the tier changes up to D);
- the tier movement matrix: each member's tier a year before D against their tier on D
  (members who joined since are `new`);
- points earned, returned, redeemed and expired per month, the twelve months up to D (by
  the day of each ledger entry);
- the redemption rate: points redeemed over points earned, up to D, and the redemptions
  accepted and rejected;
- members and revenue (orders net of returns, the year up to D) per segment group, as
  of the last segment step;
- the share of that year's revenue from the top 10% of the members who ordered in it;
- leaderboards: the members who earned most points in the month of D and in the year up
  to D.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from decimal import Decimal

from loyalty_cli import state
from loyalty_cli.diagnostics import Diagnostic, ExitCode, LoyaltyError
from loyalty_cli.state import Connection

# The tier column of a program without tiers (report and simulate).
NO_TIERS = "(no tiers)"

LEADERS = 10
# Ledger kinds, as `loyalty report` counts them.
EARNED = """CASE WHEN kind = 'pending' THEN pending
                 WHEN kind IN ('earn', 'bonus', 'award') THEN points
                 WHEN kind = 'adjust' AND points > 0 THEN points ELSE 0 END"""
RETURNED = "CASE WHEN kind = 'cancel' THEN -pending WHEN kind = 'clawback' THEN -points ELSE 0 END"
REDEEMED = "CASE WHEN kind = 'redeem' THEN -points ELSE 0 END"
EXPIRED = "CASE WHEN kind = 'expire' THEN -points ELSE 0 END"


def report(con: Connection, as_of: dt.date | None = None) -> dict:
    """The report's figures as plain data (see the module's docstring)."""
    from loyalty_cli.engine.outputs import liability

    last = state.value(con, "SELECT max(as_of) FROM runs WHERE status = 'ok'")
    if last is None:
        raise LoyaltyError(
            Diagnostic(
                code="D614",
                message="the state holds no run yet",
                hint="Run `loyalty run` first; the report reads what runs stored.",
            ),
            ExitCode.INVALID,
        )
    d = as_of or last
    meta = json.loads(state.get_meta(con, state.PROGRAM_KEY) or "{}")
    levels = [t["id"] for t in meta.get("tiers") or []]
    lowest = levels[0] if levels else None
    currency = meta.get("currency", "")
    point_value = meta.get("point_value")
    year_ago = d - dt.timedelta(days=365)
    months = d.year * 12 + d.month - 1 - 11  # the first of the twelve months up to D
    first_month = dt.date(months // 12, months % 12 + 1, 1)
    p = {"d": d, "year_ago": year_ago, "lowest": lowest}

    # Each member's points and tier as of D (and tier a year before), once.
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _report_members AS
        WITH bal AS (
            SELECT customer_id, sum(points) AS available, sum(pending) AS pending
            FROM ledger WHERE run_on <= $d GROUP BY customer_id),
        tier_now AS (
            SELECT customer_id, arg_max(to_tier, effective_on) AS tier FROM tier_changes
            WHERE effective_on <= $d GROUP BY customer_id),
        tier_then AS (
            SELECT customer_id, arg_max(to_tier, effective_on) AS tier FROM tier_changes
            WHERE effective_on <= $year_ago GROUP BY customer_id)
        SELECT c.customer_id, c.join_day,
               coalesce(n.tier, $lowest) AS tier,
               CASE WHEN c.join_day <= $year_ago THEN coalesce(t.tier, $lowest) END AS tier_then,
               coalesce(b.available, 0) AS available, coalesce(b.pending, 0) AS pending
        FROM customers c
        LEFT JOIN bal b USING (customer_id)
        LEFT JOIN tier_now n USING (customer_id)
        LEFT JOIN tier_then t USING (customer_id)
        WHERE c.join_day <= $d""",
        p,
    )
    try:
        tiers = state.rows(
            con,
            """SELECT tier, count(*) AS members, CAST(sum(available) AS BIGINT) AS points,
                      CAST(sum(pending) AS BIGINT) AS pending
               FROM _report_members GROUP BY tier""",
        )
        # Every level, also one nobody is on (0 members), in the program's order.
        held = {r["tier"] for r in tiers}
        tiers += [
            {"tier": t, "members": 0, "points": 0, "pending": 0} for t in levels if t not in held
        ]
        rank = {t: i for i, t in enumerate(levels)}
        tiers.sort(key=lambda r: (rank.get(r["tier"], len(rank)), str(r["tier"])))
        for row in tiers:
            row["liability"] = str(liability(int(row["points"]), point_value, currency))
        movement = state.rows(
            con,
            """SELECT coalesce(tier_then, 'new') AS "from", tier AS "to", count(*) AS members
               FROM _report_members GROUP BY ALL ORDER BY ALL""",
        )
        monthly = state.rows(
            con,
            f"""SELECT strftime(occurred_on, '%Y-%m') AS month,
                       CAST(sum({EARNED}) AS BIGINT) AS earned,
                       CAST(sum({RETURNED}) AS BIGINT) AS returned,
                       CAST(sum({REDEEMED}) AS BIGINT) AS redeemed,
                       CAST(sum({EXPIRED}) AS BIGINT) AS expired
                FROM ledger
                WHERE run_on <= $d AND occurred_on <= $d AND occurred_on >= $first_month
                GROUP BY month ORDER BY month""",
            {"d": d, "first_month": first_month},
        )
        totals = state.rows(
            con,
            f"""SELECT CAST(coalesce(sum({EARNED}), 0) AS BIGINT) AS earned,
                       CAST(coalesce(sum({REDEEMED}), 0) AS BIGINT) AS redeemed
                FROM ledger WHERE run_on <= $d""",
            {"d": d},
        )[0]
        requests = dict(
            con.execute(
                "SELECT status, count(*) FROM redemptions WHERE processed_on <= $d GROUP BY 1",
                {"d": d},
            ).fetchall()
        )
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _report_revenue AS
            SELECT customer_id, sum(greatest(total - returned, 0)) AS revenue FROM orders
            WHERE status = 'completed' AND day > $year_ago AND day <= $d GROUP BY customer_id""",
            {"d": d, "year_ago": year_ago},
        )
        segments = state.rows(
            con,
            """SELECT s.segment_id, s.grp AS "group", max(s.as_of) AS as_of,
                      count(*) AS members,
                      CAST(coalesce(sum(r.revenue), 0) AS DECIMAL(18,2)) AS revenue
               FROM segment_members s LEFT JOIN _report_revenue r USING (customer_id)
               GROUP BY ALL ORDER BY s.segment_id, "group" NULLS LAST""",
        )
        buyers = int(state.value(con, "SELECT count(*) FROM _report_revenue WHERE revenue > 0"))
        top_n = math.ceil(buyers * 0.10)
        share = con.execute(
            """SELECT coalesce(sum(revenue) FILTER (WHERE k <= $n), 0), coalesce(sum(revenue), 0)
               FROM (SELECT revenue, row_number() OVER (ORDER BY revenue DESC, customer_id) AS k
                     FROM _report_revenue WHERE revenue > 0)""",
            {"n": top_n},
        ).fetchone()
        leaders = {
            period: state.rows(
                con,
                f"""SELECT customer_id, CAST(sum({EARNED}) AS BIGINT) AS earned FROM ledger
                    WHERE run_on <= $d AND occurred_on <= $d AND occurred_on >= $since
                    GROUP BY customer_id HAVING sum({EARNED}) > 0
                    ORDER BY earned DESC, customer_id LIMIT {LEADERS}""",
                {"d": d, "since": since},
            )
            for period, since in (
                (d.strftime("%Y-%m"), d.replace(day=1)),
                ("year", year_ago + dt.timedelta(days=1)),
            )
        }
    finally:
        con.execute("DROP TABLE IF EXISTS _report_members")
        con.execute("DROP TABLE IF EXISTS _report_revenue")
    top, total = (Decimal(share[0]), Decimal(share[1])) if share else (Decimal(0), Decimal(0))
    members = sum(int(t["members"]) for t in tiers)
    points = sum(int(t["points"]) for t in tiers)
    return {
        "as_of": d.isoformat(),
        "last_run": last.isoformat(),
        "program": {k: meta.get(k) for k in ("id", "name", "currency", "point_value")},
        "members": members,
        "available": points,
        "liability": str(liability(points, point_value, currency)),
        "tiers": tiers,
        "tier_movement": {"since": year_ago.isoformat(), "rows": movement},
        "monthly": monthly,
        "redemption": {
            "earned": int(totals["earned"]),
            "redeemed": int(totals["redeemed"]),
            "rate": _ratio(Decimal(totals["redeemed"]), Decimal(totals["earned"])),
            "accepted": int(requests.get("accepted", 0)),
            "rejected": int(requests.get("rejected", 0)),
        },
        "segments": segments,
        "top_share": {
            "buyers": buyers,
            "top": top_n,
            "revenue": str(total),
            "top_revenue": str(top),
            "share": _ratio(top, total),
        },
        "leaderboards": leaders,
    }


def _ratio(part: Decimal, whole: Decimal) -> str | None:
    """part / whole to four places, as text (None when whole is 0)."""
    if not whole:
        return None
    return str((part / whole).quantize(Decimal("0.0001")))
