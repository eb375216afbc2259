"""Segments (SPEC 4 `segments`, 5 step 8, 8): rfm, rule, churn and clv on literal rows.

Each test inserts a few customers and orders into an in-memory state, makes the run's
`cust_view` and `member_view` itself, and runs `apply_segments` for a day D.
"""

from __future__ import annotations

import json
import math
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from enginekit import Shop, customer

from loyalty_cli import state
from loyalty_cli.config.model import Program, with_defaults
from loyalty_cli.engine.context import RunContext
from loyalty_cli.engine.memberview import member_view_sql
from loyalty_cli.engine.segments import apply_segments as _apply_segments
from loyalty_cli.engine.segments import refresh_order_days

CDNOW = Path(__file__).parent / "data" / "cdnow" / "CDNOW_sample.txt"
D = date(2026, 3, 31)


def make_program(*segments: dict) -> Program:
    data = {
        "version": 1,
        "program": {"id": "club", "name": "Club", "currency": "PLN", "timezone": "Europe/Warsaw"},
        "segments": list(segments),
    }
    return Program(Path("p.yaml"), with_defaults(data))


@pytest.fixture
def con():
    c = state.connect(None)
    yield c
    c.close()


def add_customer(con, customer_id: str, join_day: date = date(2024, 1, 1), locale=None) -> None:
    con.execute(
        "INSERT INTO customers (customer_id, joined_at, join_day, locale) VALUES (?, ?, ?, ?)",
        [customer_id, join_day, join_day, locale],
    )


_order_seq = iter(range(1, 10**6))


def add_order(
    con,
    customer_id: str,
    day: date,
    total: str = "10",
    *,
    returned: str = "0",
    status: str = "completed",
) -> None:
    con.execute(
        """INSERT INTO orders (order_id, customer_id, ordered_at, day, total, status, returned)
        VALUES (?, ?, ?, ?, ?, ?, ?)""",
        [f"o{next(_order_seq)}", customer_id, day, day, Decimal(total), status, Decimal(returned)],
    )


def make_views(con, as_of: date, tiers: dict[str, str] | None = None) -> None:
    """cust_view as a run makes it, and members' tiers in the state (the lowest, bronze,
    for the others): segments read the member view from the state (engine/memberview.py)."""
    con.execute("CREATE OR REPLACE TEMP VIEW cust_view AS SELECT * EXCLUDE (extra) FROM customers")
    for cid, tier in (tiers or {}).items():
        con.execute("INSERT OR REPLACE INTO tiers VALUES (?, ?, ?, ?)", [cid, tier, as_of, as_of])


def literal_member_view(con, as_of: date, rows: list[tuple]) -> None:
    """The state behind a member view of literal (customer_id, tier, days_since_last_order)
    rows as of `as_of`: the member's tier, and one order that many days before (none for
    None); earlier orders and tiers of these members are replaced."""
    con.execute("CREATE OR REPLACE TEMP VIEW cust_view AS SELECT * EXCLUDE (extra) FROM customers")
    for cid, tier, days in rows:
        con.execute("DELETE FROM orders WHERE customer_id = ?", [cid])
        con.execute("INSERT OR REPLACE INTO tiers VALUES (?, ?, ?, ?)", [cid, tier, as_of, as_of])
        if days is not None:
            add_order(con, cid, as_of - timedelta(days=days))


def apply_segments(ctx: RunContext) -> dict:
    """The segment step as a run makes it: order days brought up to date first."""
    refresh_order_days(ctx, everyone=True)
    return _apply_segments(ctx)


def run_segments(
    con, program: Program, as_of: date = D, tiers: dict[str, str] | None = None
) -> RunContext:
    """apply_segments for as_of, with the views made from the state as a run makes them."""
    ctx = RunContext(con, program, as_of)
    make_views(con, as_of, tiers)
    apply_segments(ctx)
    return ctx


def members(con, segment_id: str) -> dict[str, tuple]:
    rows = con.execute(
        "SELECT customer_id, grp, r, f, m, value, as_of FROM segment_members "
        "WHERE segment_id = ? ORDER BY customer_id",
        [segment_id],
    ).fetchall()
    return {r[0]: r[1:] for r in rows}


def changes(con, segment_id: str) -> list[tuple]:
    return [
        tuple(r)
        for r in con.execute(
            "SELECT customer_id, grp, change, on_day FROM segment_changes WHERE segment_id = ? "
            "ORDER BY on_day, customer_id, change, grp",
            [segment_id],
        ).fetchall()
    ]


# --------------------------------------------------------------------------- rfm

RFM = {
    "id": "rfm",
    "type": "rfm",
    "window": "730 days",
    "scores": 5,
    "groups": {
        "champions": "r >= 4 and f >= 4 and m >= 3",
        "vip": "m >= 5 and tier = 'gold'",
        "loyal": "f >= 4",
        "recent": "r >= 4",
    },
}


def rfm_shop(con) -> None:
    """Six scored members, and three who are not scored.

    Window (2024-03-31, 2026-03-31]. Per member: days since the last order day, order
    days in the window, spend in the window net of returns:
      A  1 day,   3 days, 100 + 50 + 50           = 200
      B  1 day,   1 day,  300                     = 300
      C  11 days, 1 day,  80 + 20 (same day)      = 100
      D  89 days, 2 days, (500 - 500) + 200       = 200
      E  303 days, 1 day, 1000 - 400              = 600
      F  729 days, 1 day, 10 (its 2024-03-31 order is outside the window)
    Not scored: G (cancelled order only), H (order before the window), I (no order).
    """
    for cid in "ABCDEFGHI":
        add_customer(con, cid)
    add_order(con, "A", date(2026, 3, 30), "100")
    add_order(con, "A", date(2026, 3, 1), "50")
    add_order(con, "A", date(2026, 2, 1), "50")
    add_order(con, "B", date(2026, 3, 30), "300")
    add_order(con, "C", date(2026, 3, 20), "80")
    add_order(con, "C", date(2026, 3, 20), "20")
    add_order(con, "D", date(2026, 1, 1), "500", returned="500")
    add_order(con, "D", date(2025, 12, 1), "200")
    add_order(con, "E", date(2025, 6, 1), "1000", returned="400")
    add_order(con, "F", date(2024, 3, 31), "999")
    add_order(con, "F", date(2024, 4, 1), "10")
    add_order(con, "G", date(2026, 3, 30), "700", status="cancelled")
    add_order(con, "H", date(2024, 1, 1), "50")


def test_rfm_scores_with_ties_and_first_matching_group(con):
    rfm_shop(con)
    # F was a champion in the last run: the groups must see this run's scores, not the
    # member view's (F leaves), and F's old row is replaced.
    con.execute(
        "INSERT INTO segment_members VALUES ('rfm', 'F', 'champions', 5, 5, 5, NULL, ?)",
        [date(2026, 3, 30)],
    )
    ctx = run_segments(con, make_program(RFM), tiers={"B": "gold", "E": "silver"})
    # n = 6, percent_rank = (rank - 1) / 5, score = min(5, 1 + floor(5 * percent_rank)).
    # R, by days since DESC: F 729 rank 1 (0 -> 1), E 303 rank 2 (0.2 -> 2),
    #   D 89 rank 3 (0.4 -> 3), C 11 rank 4 (0.6 -> 4), A and B 1 tie at rank 5 (0.8 -> 5).
    # F, by order days ASC: B, C, E, F 1 day tie at rank 1 (0 -> 1), D 2 rank 5 (0.8 -> 5),
    #   A 3 rank 6 (1.0 -> min(5, 6) = 5).
    # M, by spend ASC: F 10 rank 1 (0 -> 1), C 100 rank 2 (0.2 -> 2), A and D 200 tie at
    #   rank 3 (0.4 -> 3), B 300 rank 5 (0.8 -> 5), E 600 rank 6 (1.0 -> 5).
    # Groups, first match: A (5, 5, 3) champions (also loyal and recent); B (5, 1, 5) vip,
    # being gold; C (4, 1, 2) recent; D (3, 5, 3) loyal; E (2, 1, 5) silver, so not vip:
    # no group; F (1, 1, 1) no group.
    got = {cid: row[:4] for cid, row in members(con, "rfm").items()}
    assert got == {
        "A": ("champions", 5, 5, 3),
        "B": ("vip", 5, 1, 5),
        "C": ("recent", 4, 1, 2),
        "D": ("loyal", 3, 5, 3),
    }
    assert {row[5] for row in members(con, "rfm").values()} == {D}
    assert {row[4] for row in members(con, "rfm").values()} == {None}
    assert changes(con, "rfm") == [
        ("A", "champions", "enter", D),
        ("B", "vip", "enter", D),
        ("C", "recent", "enter", D),
        ("D", "loyal", "enter", D),
        ("F", "champions", "exit", D),
    ]
    assert ctx.counts["segments"] == {
        "rfm.champions": 1,
        "rfm.vip": 1,
        "rfm.recent": 1,
        "rfm.loyal": 1,
    }
    assert ctx.models == {}


def test_rfm_single_member_scores_one(con):
    # n = 1: percent_rank is 0, so every score is 1 + floor(5 * 0) = 1.
    add_customer(con, "solo")
    add_order(con, "solo", date(2026, 3, 31), "1000")
    add_order(con, "solo", date(2026, 3, 1), "1000")
    program = make_program({**RFM, "groups": {"best": "r = 5", "others": "true"}})
    run_segments(con, program)
    assert members(con, "rfm") == {"solo": ("others", 1, 1, 1, None, D)}


def test_rfm_ties_everywhere_share_the_lowest_score(con):
    # Three members with the same recency, order days and spend: all at rank 1 of 3,
    # percent_rank 0, score 1; with scores: 3 as well.
    for cid in ("x", "y", "z"):
        add_customer(con, cid)
        add_order(con, cid, date(2026, 3, 1), "40")
    program = make_program({**RFM, "scores": 3, "groups": {"all": "true"}})
    run_segments(con, program)
    assert {k: v[:4] for k, v in members(con, "rfm").items()} == {
        k: ("all", 1, 1, 1) for k in ("x", "y", "z")
    }


def test_rfm_groups_see_customer_columns(con):
    # Groups naming only r, f, m and customer columns: the scores are joined to the
    # customers without the member view.
    for cid, locale in (("A", "pl"), ("B", "de"), ("C", "pl")):
        add_customer(con, cid, locale=locale)
    add_order(con, "A", date(2026, 3, 30), "100")
    add_order(con, "B", date(2026, 3, 30), "100")
    add_order(con, "C", date(2025, 1, 1), "100")
    groups = {"polish-recent": "customer.locale = 'pl' and r >= 3", "others": "true"}
    run_segments(con, make_program({**RFM, "groups": groups}))
    # n = 3. R by days since DESC: C 454 days rank 1 (0 -> 1); A and B 1 day tie at rank 2
    # (1 + 5 * 1 // 2 = 3). F and M tie for all three at rank 1: score 1.
    assert {k: v[:4] for k, v in members(con, "rfm").items()} == {
        "A": ("polish-recent", 3, 1, 1),
        "B": ("others", 3, 1, 1),
        "C": ("others", 1, 1, 1),
    }


def test_rfm_member_view_of_the_next_run_has_the_new_scores(con):
    rfm_shop(con)
    ctx = run_segments(con, make_program(RFM), tiers={"B": "gold"})
    got = con.execute(
        f"SELECT customer_id, r, f, m FROM ({member_view_sql(ctx)}) WHERE r IS NOT NULL "
        "ORDER BY customer_id"
    ).fetchall()
    assert got == [("A", 5, 5, 3), ("B", 5, 1, 5), ("C", 4, 1, 2), ("D", 3, 5, 3)]


# --------------------------------------------------------------------------- rule

RULE = {"id": "lapsed-gold", "type": "rule", "when": "tier = 'gold' and days_since_last_order > 90"}


def test_rule_segment(con):
    for cid in ("A", "B", "C", "D"):
        add_customer(con, cid)
    add_customer(con, "late", join_day=date(2026, 4, 2))  # joins after D: not a member
    literal_member_view(
        con,
        D,
        [
            ("A", "gold", 100),  # in
            ("B", "gold", 90),  # 90 is not > 90
            ("C", "silver", 200),  # not gold
            ("D", "gold", None),  # never ordered: the condition is unknown, so false
            ("late", "gold", 400),
        ],
    )
    ctx = RunContext(con, make_program(RULE), D)
    apply_segments(ctx)
    assert members(con, "lapsed-gold") == {"A": ("lapsed-gold", None, None, None, None, D)}
    assert ctx.counts["segments"] == {"lapsed-gold.lapsed-gold": 1}


def test_rule_segment_sees_customer_columns(con):
    add_customer(con, "A", locale="pl")
    add_customer(con, "B", locale="de")
    add_customer(con, "C")
    literal_member_view(con, D, [("A", "bronze", 1), ("B", "bronze", 1), ("C", "bronze", 1)])
    program = make_program({"id": "polish", "type": "rule", "when": "customer.locale = 'pl'"})
    apply_segments(RunContext(con, program, D))
    assert list(members(con, "polish")) == ["A"]


# --------------------------------------------------------------------------- entering, leaving


def test_entries_and_exits_across_runs_and_reruns(con):
    d1, d2 = date(2026, 3, 30), date(2026, 3, 31)
    for cid in ("A", "B", "C"):
        add_customer(con, cid)
    program = make_program(RULE)

    literal_member_view(con, d1, [("A", "gold", 100), ("B", "gold", 95), ("C", "gold", 10)])
    apply_segments(RunContext(con, program, d1))
    assert changes(con, "lapsed-gold") == [
        ("A", "lapsed-gold", "enter", d1),
        ("B", "lapsed-gold", "enter", d1),
    ]

    # D2: A ordered (leaves), C has lapsed (enters), B stays.
    literal_member_view(con, d2, [("A", "gold", 1), ("B", "gold", 96), ("C", "gold", 91)])
    apply_segments(RunContext(con, program, d2))
    after_d2 = [
        ("A", "lapsed-gold", "enter", d1),
        ("B", "lapsed-gold", "enter", d1),
        ("A", "lapsed-gold", "exit", d2),
        ("C", "lapsed-gold", "enter", d2),
    ]
    assert changes(con, "lapsed-gold") == after_d2
    assert {k: v[-1] for k, v in members(con, "lapsed-gold").items()} == {"B": d2, "C": d2}

    # The same day again with the same data: nothing new.
    apply_segments(RunContext(con, program, d2))
    assert changes(con, "lapsed-gold") == after_d2
    assert list(members(con, "lapsed-gold")) == ["B", "C"]

    # The same day again with a late correction (A's order was not A's after all): the
    # day's changes are the net change from before D2, so A's exit disappears rather
    # than being followed by a second entry.
    literal_member_view(con, d2, [("A", "gold", 101), ("B", "gold", 96), ("C", "gold", 91)])
    apply_segments(RunContext(con, program, d2))
    assert changes(con, "lapsed-gold") == [
        ("A", "lapsed-gold", "enter", d1),
        ("B", "lapsed-gold", "enter", d1),
        ("C", "lapsed-gold", "enter", d2),
    ]
    assert list(members(con, "lapsed-gold")) == ["A", "B", "C"]


def test_a_change_of_group_is_an_exit_and_an_entry(con):
    d1, d2 = date(2026, 3, 10), date(2026, 3, 11)
    churn = {"id": "churn", "type": "churn", "model": "interval", "levels": {"low": 0, "high": 3}}
    add_customer(con, "A")
    add_customer(con, "B")
    add_order(con, "A", date(2026, 3, 1))
    add_order(con, "A", date(2026, 3, 3))
    add_order(con, "B", date(2026, 3, 8))
    add_order(con, "B", date(2026, 3, 10))
    # D1: A gap 2, 7 days since -> 3.5 high; B gap 2, 0 days since -> 0 low.
    run_segments(con, make_program(churn), d1)
    # D2: A orders again: gaps 2, 8 -> median 5, 0 days since -> low; B 1/2 -> low.
    add_order(con, "A", date(2026, 3, 11))
    run_segments(con, make_program(churn), d2)
    run_segments(con, make_program(churn), d2)
    assert changes(con, "churn") == [
        ("A", "high", "enter", d1),
        ("B", "low", "enter", d1),
        ("A", "low", "enter", d2),
        ("A", "high", "exit", d2),
    ]


# --------------------------------------------------------------------------- churn: interval

INTERVAL = {
    "id": "churn",
    "type": "churn",
    "model": "interval",
    "levels": {"low": 0, "medium": 1.5, "high": 3},
}


def test_interval_churn_with_pooled_median_for_one_order_members(con):
    for cid in "ABCDEF":
        add_customer(con, cid)
    for day in (date(2026, 1, 1), date(2026, 1, 11), date(2026, 1, 31)):
        add_order(con, "A", day)  # gaps 10, 20 -> median 15
    for day in (date(2026, 3, 1), date(2026, 3, 5), date(2026, 3, 11), date(2026, 3, 21)):
        add_order(con, "B", day)  # gaps 4, 6, 10 -> median 6
    add_order(con, "C", date(2026, 3, 19))
    add_order(con, "C", date(2026, 3, 19))  # one order day: pooled median
    add_order(con, "D", date(2026, 3, 29))
    add_order(con, "D", date(2026, 3, 31))  # gap 2
    add_order(con, "F", date(2026, 3, 1), status="cancelled")  # E, F: no completed order
    ctx = run_segments(con, make_program(INTERVAL))
    # Pooled gaps 10, 20, 4, 6, 10, 2 -> sorted 2 4 6 10 10 20 -> median (6 + 10) / 2 = 8.
    # A: 59 days since 2026-01-31 / 15 = 3.933 -> high
    # B: 10 / 6 = 1.667 -> medium
    # C: 12 / 8 = 1.5 -> medium (a threshold is reached when the value equals it)
    # D: 0 / 2 = 0 -> low
    got = {cid: (row[0], row[4]) for cid, row in members(con, "churn").items()}
    assert got == {
        "A": ("high", pytest.approx(59 / 15)),
        "B": ("medium", pytest.approx(10 / 6)),
        "C": ("medium", 1.5),
        "D": ("low", 0.0),
    }
    assert ctx.counts["segments"] == {"churn.high": 1, "churn.medium": 2, "churn.low": 1}
    assert ctx.warnings == []


def test_interval_churn_below_the_lowest_level_has_no_group(con):
    add_customer(con, "A")
    add_order(con, "A", date(2026, 3, 21))
    add_order(con, "A", date(2026, 3, 31))  # 0 days since -> value 0, below 1.5
    add_customer(con, "B")
    add_order(con, "B", date(2026, 3, 1))
    add_order(con, "B", date(2026, 3, 11))  # 20 / 10 = 2 -> medium
    seg = {**INTERVAL, "levels": {"medium": 1.5, "high": 3}}
    run_segments(con, make_program(seg))
    assert {k: v[0] for k, v in members(con, "churn").items()} == {"B": "medium"}


def test_interval_churn_without_any_gap_warns(con):
    add_customer(con, "A")
    add_order(con, "A", date(2026, 3, 1))
    ctx = run_segments(con, make_program(INTERVAL))
    assert members(con, "churn") == {}
    assert any("no member has two order days" in w for w in ctx.warnings)


# --------------------------------------------------------------------------- models


def load_cdnow(con, last_day: date) -> None:
    """CDNOW purchases up to last_day as completed orders; a customer joins on their first
    purchase day."""
    con.execute(
        """CREATE TEMP TABLE cdnow AS
        WITH raw AS (
            SELECT regexp_split_to_array(trim(line), '\\s+') AS f
            FROM read_csv(?, columns = {'line': 'varchar'}, delim = '\t', header = false,
                          quote = '', escape = ''))
        SELECT row_number() OVER () AS n, f[1] AS customer_id,
               strptime(f[3], '%Y%m%d')::DATE AS day, CAST(f[5] AS DECIMAL(18,2)) AS total
        FROM raw""",
        [str(CDNOW)],
    )
    con.execute(
        """INSERT INTO customers (customer_id, joined_at, join_day)
        SELECT customer_id, min(day), min(day) FROM cdnow WHERE day <= ? GROUP BY ALL""",
        [last_day],
    )
    con.execute(
        """INSERT INTO orders (order_id, customer_id, ordered_at, day, total, status, returned)
        SELECT 'cd' || n, customer_id, day, day, total, 'completed', 0 FROM cdnow
        WHERE day <= ?""",
        [last_day],
    )


def test_clv_and_bgnbd_churn_on_cdnow_reproduce_the_published_fit(con):
    d = date(1997, 9, 30)
    load_cdnow(con, d)
    program = make_program(
        {"id": "clv", "type": "clv", "horizon": "365 days", "top_share": 0.1},
        {
            "id": "churn",
            "type": "churn",
            "model": "bgnbd",
            "levels": {"low": 0, "medium": 0.5, "high": 0.8},
        },
    )
    ctx = run_segments(con, program, d)
    # Fader, Hardie & Lee (2005): r 0.243, alpha 4.414 weeks, a 0.793, b 2.426; in days
    # alpha = 7 * 4.414. Gamma-Gamma over the 946 repeat buyers: p 6.25, q 3.74, gamma 15.44.
    fit = ctx.models["clv"]
    assert fit["model"] == "bgnbd"
    assert fit["params"] == {
        "r": pytest.approx(0.243, rel=0.01),
        "alpha": pytest.approx(4.414 * 7, rel=0.01),
        "a": pytest.approx(0.793, rel=0.01),
        "b": pytest.approx(2.426, rel=0.01),
    }
    assert fit["spend"] == {
        "p": pytest.approx(6.25, rel=0.01),
        "q": pytest.approx(3.74, rel=0.01),
        "gamma": pytest.approx(15.44, rel=0.01),
    }
    assert math.isfinite(fit["loglik"]) and fit["loglik"] < 0
    assert ctx.models["churn"] == {k: fit[k] for k in ("model", "params", "loglik")}
    stored = dict(
        con.execute("SELECT segment_id, fit FROM model_fits WHERE as_of = ?", [d]).fetchall()
    )
    assert json.loads(stored["clv"]) == json.loads(json.dumps(fit))

    # 2,357 members with an order; the top 10 % is ceil(235.7) = 236 of them.
    assert ctx.counts["segments"]["clv.top"] == 236
    assert ctx.counts["segments"]["clv.rest"] == 2357 - 236
    lowest_top, highest_rest = con.execute(
        """SELECT min(value) FILTER (grp = 'top'), max(value) FILTER (grp = 'rest')
        FROM segment_members WHERE segment_id = 'clv'"""
    ).fetchone()
    assert lowest_top >= highest_rest > 0
    # BG/NBD lets nobody leave before a repeat purchase: the 1,411 one-day buyers have
    # churn value 0 (group low).
    one_day = con.execute(
        """SELECT count(*), max(m.value) FROM segment_members m
        JOIN (SELECT customer_id FROM orders GROUP BY ALL HAVING count(DISTINCT day) = 1) o
        USING (customer_id) WHERE m.segment_id = 'churn'"""
    ).fetchone()
    assert one_day == (1411, 0.0)
    assert (
        sum(
            ctx.counts["segments"][f"churn.{g}"]
            for g in ("low", "medium", "high")
            if f"churn.{g}" in ctx.counts["segments"]
        )
        == 2357
    )


def test_clv_ties_at_the_cut_go_to_the_lower_customer_id(con):
    d = date(1997, 9, 30)
    load_cdnow(con, d)
    # ceil(0.9 * 2357) = 2122 top members: the cut falls among one-day buyers, whose value
    # depends on their first purchase day only, so many share a value across the cut.
    ctx = run_segments(con, make_program({"id": "clv", "type": "clv", "top_share": 0.9}), d)
    assert ctx.counts["segments"] == {"clv.top": 2122, "clv.rest": 235}
    straddling = con.execute(
        """SELECT count(*), count(*) FILTER (t.customer_id > r.customer_id)
        FROM segment_members t JOIN segment_members r USING (segment_id, value)
        WHERE t.grp = 'top' AND r.grp = 'rest'"""
    ).fetchone()
    assert straddling[0] > 0 and straddling[1] == 0


def test_too_few_repeat_buyers_skip_the_model_with_a_warning(con):
    for i in range(5):
        add_customer(con, f"c{i}")
        add_order(con, f"c{i}", date(2026, 1, 1 + i))
        add_order(con, f"c{i}", date(2026, 2, 1 + i))
    # A membership from an earlier run stays as it was: a failed fit is no reason to leave.
    con.execute(
        "INSERT INTO segment_members VALUES ('clv', 'c0', 'top', NULL, NULL, NULL, 9.5, ?)",
        [date(2026, 3, 30)],
    )
    program = make_program(
        {"id": "clv", "type": "clv"},
        {"id": "churn", "type": "churn", "model": "bgnbd", "levels": {"low": 0, "high": 0.5}},
    )
    ctx = run_segments(con, program)
    assert ctx.models == {}
    assert len(ctx.warnings) == 2
    assert all("only 5 member(s) with a repeat order day" in w for w in ctx.warnings)
    assert members(con, "churn") == {}
    assert members(con, "clv") == {"c0": ("top", None, None, None, 9.5, date(2026, 3, 30))}
    assert changes(con, "clv") == [] and changes(con, "churn") == []
    assert con.execute("SELECT count(*) FROM model_fits").fetchone()[0] == 0


# --------------------------------------------------------------------------- in a run


def test_a_run_writes_segments_csv_and_the_next_run_sees_the_scores(tmp_path):
    shop = Shop(
        tmp_path,
        """
        segments:
          - id: rfm
            type: rfm
            groups: {best: "r >= 4", others: "true"}
          - id: lapsed
            type: rule
            when: days_since_last_order > 5 and r <= 3
        """,
    )
    shop.add("customers", customer("A"), customer("B"))
    shop.add(
        "orders",
        {"order_id": "1", "customer_id": "A", "ordered_at": "2026-03-01 10:00:00", "total": "100"},
        {"order_id": "2", "customer_id": "B", "ordered_at": "2026-03-09 10:00:00", "total": "50"},
    )
    # Two scored members: R: A 9 days rank 1 -> 1, B 1 day rank 2 -> 1 + floor(5 * 1) = 5;
    # F: tie at rank 1 -> 1; M: B 50 rank 1 -> 1, A 100 rank 2 -> 5.
    # The rule segment is worked out after the rfm segment and sees this run's scores:
    # A, 9 days since the last order and r = 1, is lapsed; B (1 day, r = 5) is not.
    result = shop.run("2026-03-10")
    assert result.counts["segments"] == {"lapsed.lapsed": 1, "rfm.best": 1, "rfm.others": 1}
    expected = (
        "customer_id,segment_id,group,r,f,m,value\n"
        "A,lapsed,lapsed,,,,\n"
        "A,rfm,others,1,1,5,\n"
        "B,rfm,best,5,1,1,\n"
    )
    assert (shop.out / "2026-03-10" / "segments.csv").read_text() == expected
    # The next day and a rerun of it: the same scores, nobody moves.
    shop.run("2026-03-11")
    assert (shop.out / "2026-03-11" / "segments.csv").read_text() == expected
    shop.run("2026-03-11")
    assert (shop.out / "2026-03-11" / "segments.csv").read_text() == expected
    assert shop.query(
        "SELECT segment_id, customer_id, grp, change, on_day FROM segment_changes "
        "ORDER BY on_day, segment_id, customer_id"
    ) == [
        ("lapsed", "A", "lapsed", "enter", date(2026, 3, 10)),
        ("rfm", "A", "others", "enter", date(2026, 3, 10)),
        ("rfm", "B", "best", "enter", date(2026, 3, 10)),
    ]
