"""`loyalty simulate NEW --baseline OLD`: both programs over the same history, compared.

Each program is backfilled from D1 to D2 on a state of its own in a temporary folder (the
first day's run covers all history before it, as on a fresh state), writing no files;
then the same figures are read from both states as of D2. The states are deleted at the
end. A program change is thereby judged by what it would have done on the shop's real
history: the points it would have cost, the liability left, the tier mix, the redemptions
and the workflows' audiences.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable
from pathlib import Path

from loyalty_cli import state
from loyalty_cli.config.model import Program, load_program
from loyalty_cli.diagnostics import Diagnostic, ExitCode, LoyaltyError
from loyalty_cli.state import Connection


def simulate(
    new: Program | str | Path,
    baseline: Program | str | Path,
    data_dir: str | Path,
    first_day: dt.date,
    last_day: dt.date,
    *,
    progress: Callable[[str, dt.date, str], None] | None = None,
    planned: Callable[[str, list[dt.date]], None] | None = None,
) -> dict:
    """{"from", "to", "baseline": figures, "new": figures} (see `figures`).

    `planned(label, days)` and `progress(label, day, stage)` follow each backfill, the
    label being "baseline" or "new"."""
    from loyalty_cli.engine.run import backfill

    programs = {
        "baseline": baseline if isinstance(baseline, Program) else load_program(baseline),
        "new": new if isinstance(new, Program) else load_program(new),
    }
    out: dict = {"from": first_day.isoformat(), "to": last_day.isoformat()}
    with tempfile.TemporaryDirectory(prefix="loyalty-simulate-") as tmp:
        for label, program in programs.items():
            path = Path(tmp) / f"{label}.duckdb"
            results = backfill(
                program,
                data_dir,
                first_day,
                last_day,
                path,
                None,
                progress=_labelled(progress, label),
                planned=_labelled(planned, label),
            )
            refused = next((r for r in results if r.status == "refused"), None)
            if refused is not None:
                reason = str(refused.reason).removesuffix(" (see rejects.csv)")
                rejected = _rejected_rows(program, data_dir, refused.as_of, path, Path(tmp))
                raise LoyaltyError(
                    Diagnostic(
                        code="D606",
                        path=str(program.path),
                        message=f"the {label} program's run for {refused.as_of} was refused: "
                        f"{reason}" + (f"; rejected: {rejected}" if rejected else ""),
                        hint=f"`loyalty run` for {refused.as_of} on a copy of the state writes "
                        "every rejected row to rejects.csv; fix the exports or the program, "
                        "then simulate again.",
                    ),
                    ExitCode.REFUSED,
                )
            con = state.connect(path, read_only=True)
            try:
                out[label] = figures(con, program, last_day)
            finally:
                con.close()
    return out


# How many rejected rows a refused simulation names.
REJECTS_SHOWN = 3


def _rejected_rows(
    program: Program, data_dir: str | Path, day: dt.date, state_path: Path, tmp: Path
) -> str:
    """The first rejected rows of a refused day, as `file:line column: reason` (simulate
    writes no files, so the rejects.csv a refused run writes cannot be pointed at): the
    day is run again, still refused, with its files in the throw-away folder."""
    import csv

    from loyalty_cli.engine.run import run

    out = tmp / f"refused-{program.id}"
    try:
        run(program, data_dir, day, state_path, out, catch_up=False)
        with open(out / day.isoformat() / "rejects.csv", encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
    except (LoyaltyError, OSError):
        return ""
    shown = [
        f"{r['file']}:{r['line']}"
        + (f" {r['column']}" if r.get("column") else "")
        + f": {r['reason']}"
        for r in rows[:REJECTS_SHOWN]
    ]
    more = len(rows) - len(shown)
    return "; ".join(shown) + (f" and {more:,} more row(s)" if more > 0 else "")


def _labelled(callback: Callable | None, label: str) -> Callable | None:
    """The engine's callback with the program's label put first."""
    if callback is None:
        return None
    return lambda *args: callback(label, *args)


def figures(con: Connection, program: Program, as_of: dt.date) -> dict:
    """What a simulation compares, from one state as of its last day: the report's
    headline, tiers and redemption figures, points by ledger kind and by rule, redemption
    requests by outcome, and each workflow's entries and messages."""
    from loyalty_cli.engine.report import EARNED, EXPIRED, REDEEMED, RETURNED, report

    r = report(con, as_of)
    kinds = con.execute(
        f"""SELECT CAST(coalesce(sum({EARNED}), 0) AS BIGINT),
                   CAST(coalesce(sum({RETURNED}), 0) AS BIGINT),
                   CAST(coalesce(sum({REDEEMED}), 0) AS BIGINT),
                   CAST(coalesce(sum({EXPIRED}), 0) AS BIGINT)
            FROM ledger WHERE run_on <= $d""",
        {"d": as_of},
    ).fetchone()
    assert kinds is not None
    by_rule = con.execute(
        f"""SELECT rule_id, CAST(sum({EARNED}) AS BIGINT) FROM ledger
            WHERE run_on <= $d AND rule_id IS NOT NULL GROUP BY rule_id
            HAVING sum({EARNED}) <> 0 ORDER BY rule_id""",
        {"d": as_of},
    ).fetchall()
    requests = con.execute(
        """SELECT CASE WHEN status = 'accepted' THEN 'accepted' ELSE 'rejected: ' || reason END,
                  count(*)
           FROM redemptions WHERE processed_on <= $d GROUP BY 1 ORDER BY 1""",
        {"d": as_of},
    ).fetchall()
    workflows = con.execute(
        """SELECT workflow_id, count(*) FILTER (WHERE action = 'entered'),
                  count(*) FILTER (WHERE action = 'sent')
           FROM wf_log WHERE run_on <= $d GROUP BY 1 ORDER BY 1""",
        {"d": as_of},
    ).fetchall()
    return {
        "program": program.id,
        "currency": r["program"]["currency"],
        "members": r["members"],
        "available": r["available"],
        "liability": r["liability"],
        "points": dict(zip(("earned", "returned", "redeemed", "expired"), kinds, strict=True)),
        # Every rule and bonus of the program, 0 where it earned nothing: "only in" is for
        # a rule only one of the programs has.
        "earned_by_rule": {
            **{str(x["id"]): 0 for x in [*program.rules, *(program.data.get("bonuses") or [])]},
            **{str(k): int(v) for k, v in by_rule},
        },
        # A program without tiers has none to count: null (the text says "(no tiers)").
        "tiers": None
        if all(t["tier"] is None for t in r["tiers"])
        else {str(t["tier"]): int(t["members"]) for t in r["tiers"]},
        "redemptions": {str(k): int(v) for k, v in requests},
        "workflows": {str(w): {"entered": int(e), "sent": int(s)} for w, e, s in workflows},
    }


def _counts(figures: dict, key: str) -> dict:
    """A section's figures by name; a program without tiers has one row, "(no tiers)",
    with all its members (as `loyalty report` shows it)."""
    from loyalty_cli.engine.report import NO_TIERS

    if key == "tiers" and figures["tiers"] is None:
        return {NO_TIERS: figures["members"]}
    return figures[key]


def comparison(result: dict) -> list[tuple[str, str, object, object]]:
    """The rows of the side-by-side table: (section, what, baseline, new); a figure one of
    the programs does not have is None."""
    base, new = result["baseline"], result["new"]
    rows: list[tuple[str, str, object, object]] = [
        ("cost", f"points {k}", base["points"][k], new["points"][k])
        for k in ("earned", "returned", "redeemed", "expired")
    ]
    rows.append(("cost", "points available", base["available"], new["available"]))
    rows.append(("cost", f"liability ({new['currency']})", base["liability"], new["liability"]))

    def merged(
        section: str, key: str, label: Callable[[str], str] = str, zero: bool = False
    ) -> None:
        """`zero`: a name one side lacks is 0 there (redemption outcomes any program can
        have), not a figure that program does not have."""
        b, n = _counts(base, key), _counts(new, key)
        names = [*b, *(x for x in n if x not in b)]
        missing = 0 if zero else None
        rows.extend((section, label(x), b.get(x, missing), n.get(x, missing)) for x in names)

    merged("rules", "earned_by_rule", lambda n: f"{n} earned")
    merged("tiers", "tiers", lambda n: f"{n} members")
    merged("redemptions", "redemptions", zero=True)
    for w in sorted(set(base["workflows"]) | set(new["workflows"])):
        for what in ("entered", "sent"):
            rows.append(
                (
                    "audiences",
                    f"{w} {what}",
                    (base["workflows"].get(w) or {}).get(what),
                    (new["workflows"].get(w) or {}).get(what),
                )
            )
    return rows
