"""Redemptions (SPEC 5 step 5, 9.10, 9.12, 9.19) on literal rows in an in-memory state."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from loyalty_cli import state
from loyalty_cli.config.model import Program, with_defaults
from loyalty_cli.engine import ledger
from loyalty_cli.engine.context import RunContext
from loyalty_cli.engine.redemptions import apply_redemptions

D = date(2026, 3, 31)
LEVELS = [
    {"id": "bronze", "name": "Bronze", "min": 0},
    {"id": "silver", "name": "Silver", "min": 1000},
    {"id": "gold", "name": "Gold", "min": 5000},
]
REWARDS = [
    {"id": "plain", "name": "Free shipping", "cost": 300},
    {"id": "d20", "name": "20 PLN off", "cost": 500, "coupon_pool": "r20"},
    {"id": "spa", "name": "SPA weekend", "cost": 2000, "min_tier": "gold"},
    {"id": "lounge", "name": "Lounge", "cost": 100, "min_tier": "silver"},
]


def make_program(tmp_path: Path, codes: list[str], expiry: dict | None = None) -> Program:
    (tmp_path / "r20.csv").write_text("code\n" + "".join(f"{c}\n" for c in codes))
    data = {
        "version": 1,
        "program": {"id": "club", "name": "Club", "currency": "PLN", "timezone": "Europe/Warsaw"},
        **({"expiry": expiry} if expiry else {}),
        "tiers": {"levels": LEVELS},
        "rewards": REWARDS,
        "coupons": {"pools": [{"id": "r20", "source": "file", "path": "r20.csv"}]},
    }
    return Program(tmp_path / "p.yaml", with_defaults(data))


@pytest.fixture
def con():
    c = state.connect(None)
    yield c
    c.close()


def make_ctx(con, program: Program, as_of: date = D) -> RunContext:
    return RunContext(con, program, as_of, None)


def members(con, tiers: dict[str, str]) -> None:
    """The stored tiers as of the start of the run: only the tier matters here."""
    for customer_id, tier in tiers.items():
        con.execute(
            "INSERT INTO tiers (customer_id, tier) VALUES (?, ?)",
            [customer_id, tier],
        )


def lot(ctx: RunContext, customer_id: str, points: int, earned_on: date, source: str) -> None:
    ledger.credit(
        ctx,
        f"""SELECT '{customer_id}' AS customer_id, 'bonus' AS kind, {points} AS points,
                  'gift' AS rule_id, '{source}' AS source_id,
                  TIMESTAMP '{earned_on} 12:00:00' AS occurred_at, DATE '{earned_on}' AS earned_on,
                  CAST(NULL AS DATE) AS pending_until, CAST(NULL AS VARCHAR) AS order_id,
                  'gift' AS reason""",
    )


def requests(con, rows: list[tuple[str, str, str, str]]) -> None:
    """new_redemptions: (redemption_id, customer_id, reward_id, requested_at)."""
    con.execute(
        """CREATE OR REPLACE TEMP TABLE new_redemptions (
            redemption_id VARCHAR, customer_id VARCHAR, reward_id VARCHAR,
            requested_at TIMESTAMP, day DATE)"""
    )
    for rid, cust, reward, at in rows:
        ts = datetime.fromisoformat(at)
        con.execute(
            "INSERT INTO new_redemptions VALUES (?, ?, ?, ?, ?)", [rid, cust, reward, ts, ts.date()]
        )


def outcomes(con) -> dict[str, tuple]:
    return {
        r[0]: r[1:]
        for r in con.execute(
            "SELECT redemption_id, status, reason, coupon_code FROM redemptions"
        ).fetchall()
    }


def balance(con, customer_id: str) -> int:
    return int(
        con.execute(
            "SELECT coalesce(sum(remaining), 0) FROM lots "
            "WHERE customer_id = ? AND status = 'available'",
            [customer_id],
        ).fetchone()[0]
    )


def test_each_reason_and_an_acceptance(con, tmp_path):
    program = make_program(tmp_path, [])  # the pool has no code
    ctx = make_ctx(con, program)
    members(
        con,
        {
            "ann": "gold",
            "bob": "silver",
            "cid": "gold",
            "dan": "gold",
            "eve": "bronze",
            "fay": "bronze",
        },
    )
    for cust, pts in (
        ("ann", 5000),
        ("bob", 5000),
        ("cid", 100),
        ("dan", 1000),
        ("eve", 1000),
        ("fay", 50),
    ):
        lot(ctx, cust, pts, date(2026, 1, 1), f"gift-{cust}")
    requests(
        con,
        [
            ("r1", "ann", "no-such-reward", "2026-03-31 09:00:00"),
            ("r2", "bob", "spa", "2026-03-31 09:00:00"),  # silver < gold
            ("r3", "cid", "spa", "2026-03-31 09:00:00"),  # 100 < 2000
            ("r4", "dan", "d20", "2026-03-31 09:00:00"),  # no code left
            ("r5", "eve", "plain", "2026-03-31 09:00:00"),
            ("r6", "fay", "lounge", "2026-03-31 09:00:00"),  # tier checked before points
        ],
    )
    apply_redemptions(ctx)
    assert outcomes(con) == {
        "r1": ("rejected", "unknown_reward", None),
        "r2": ("rejected", "tier_too_low", None),
        "r3": ("rejected", "insufficient_points", None),
        "r4": ("rejected", "pool_exhausted", None),
        "r5": ("accepted", None, None),
        "r6": ("rejected", "tier_too_low", None),
    }
    # A rejection takes no points; the acceptance takes the cost.
    assert [balance(con, c) for c in ("ann", "bob", "cid", "dan", "eve", "fay")] == [
        5000,
        5000,
        100,
        1000,
        700,
        50,
    ]
    entries = con.execute(
        "SELECT customer_id, kind, points, rule_id, source_id, reason, shortfall, occurred_on "
        "FROM ledger WHERE kind = 'redeem'"
    ).fetchall()
    assert entries == [
        ("eve", "redeem", -300, "plain", "r5", "Free shipping", 0, date(2026, 3, 31))
    ]
    stored = con.execute(
        "SELECT redemption_id, customer_id, reward_id, requested_at, cost, processed_on "
        "FROM redemptions WHERE redemption_id IN ('r1', 'r5') ORDER BY redemption_id"
    ).fetchall()
    assert stored == [
        ("r1", "ann", "no-such-reward", datetime(2026, 3, 31, 9), None, D),
        ("r5", "eve", "plain", datetime(2026, 3, 31, 9), 300, D),
    ]
    assert ctx.counts["redemptions"] == {
        "accepted": 1,
        "points": 300,
        "rejected": 5,
        "rejected.unknown_reward": 1,
        "rejected.tier_too_low": 2,
        "rejected.insufficient_points": 1,
        "rejected.pool_exhausted": 1,
    }


def test_second_redemption_is_insufficient_after_the_first(con, tmp_path):
    ctx = make_ctx(con, make_program(tmp_path, []))
    members(con, {"ann": "bronze", "bob": "bronze"})
    lot(ctx, "ann", 700, date(2026, 1, 1), "g1")
    lot(ctx, "bob", 1000, date(2026, 1, 1), "g2")
    requests(
        con,
        [
            ("a2", "ann", "plain", "2026-03-31 10:00:00"),
            ("a1", "ann", "plain", "2026-03-31 09:00:00"),
            ("a3", "ann", "plain", "2026-03-31 11:00:00"),
            ("b1", "bob", "plain", "2026-03-31 08:00:00"),
            ("b2", "bob", "plain", "2026-03-31 08:30:00"),
            ("b3", "bob", "plain", "2026-03-31 09:30:00"),
            ("b4", "bob", "plain", "2026-03-31 10:30:00"),
        ],
    )
    apply_redemptions(ctx)
    got = outcomes(con)
    # ann: 700 - 300 = 400 - 300 = 100 < 300.
    assert [got[r][:2] for r in ("a1", "a2", "a3")] == [
        ("accepted", None),
        ("accepted", None),
        ("rejected", "insufficient_points"),
    ]
    # bob: 1000 -> 700 -> 400 -> 100, the fourth is short.
    assert [got[r][0] for r in ("b1", "b2", "b3", "b4")] == [
        "accepted",
        "accepted",
        "accepted",
        "rejected",
    ]
    assert (balance(con, "ann"), balance(con, "bob")) == (100, 100)
    # Accepted debits never fall short.
    assert con.execute("SELECT max(shortfall) FROM ledger WHERE kind = 'redeem'").fetchone()[0] == 0


def test_a_rejection_frees_nothing_and_a_later_cheaper_request_still_fits(con, tmp_path):
    ctx = make_ctx(con, make_program(tmp_path, []))
    members(con, {"ann": "bronze"})
    lot(ctx, "ann", 400, date(2026, 1, 1), "g1")
    requests(
        con,
        [
            ("a1", "ann", "d20", "2026-03-31 09:00:00"),  # 500 > 400
            ("a2", "ann", "plain", "2026-03-31 10:00:00"),  # 300 <= 400
            ("a3", "ann", "plain", "2026-03-31 11:00:00"),  # 300 > 100
        ],
    )
    apply_redemptions(ctx)
    got = outcomes(con)
    assert [got[r][:2] for r in ("a1", "a2", "a3")] == [
        ("rejected", "insufficient_points"),
        ("accepted", None),
        ("rejected", "insufficient_points"),
    ]
    assert balance(con, "ann") == 100


def test_points_are_taken_from_the_oldest_lot_first(con, tmp_path):
    # Points expire 365 days after the day they were earned: one lot per earning day.
    ctx = make_ctx(con, make_program(tmp_path, [], expiry={"after": "365 days"}))
    members(con, {"ann": "gold"})
    # Created newest first, so the order comes from earned_on, not from creation.
    lot(ctx, "ann", 200, date(2026, 3, 1), "march")
    lot(ctx, "ann", 500, date(2026, 2, 1), "february")
    lot(ctx, "ann", 300, date(2026, 1, 1), "january")
    lot(ctx, "ann", 400, date(2026, 2, 1), "february-2")  # same day, same expiry: same lot
    requests(con, [("a1", "ann", "spa", "2026-03-31 09:00:00")])  # 2000 > 1400
    apply_redemptions(ctx)
    assert outcomes(con)["a1"][:2] == ("rejected", "insufficient_points")
    requests(
        con,
        [
            ("a2", "ann", "d20", "2026-03-31 09:00:00"),  # no code: rejected
            ("a3", "ann", "plain", "2026-03-31 09:30:00"),
            ("a4", "ann", "plain", "2026-03-31 09:45:00"),
        ],
    )
    apply_redemptions(ctx)
    lots = con.execute(
        "SELECT l.earned_on, l.expires_on, l.amount, l.remaining, "
        "string_agg(g.source_id, ',' ORDER BY g.entry_id) FROM lots l JOIN ledger g "
        "USING (lot_id) GROUP BY ALL ORDER BY l.earned_on"
    ).fetchall()
    # 600 taken: january's 300, then 300 of february's 900 (500 + 400).
    assert lots == [
        (date(2026, 1, 1), date(2027, 1, 1), 300, 0, "january"),
        (date(2026, 2, 1), date(2027, 2, 1), 900, 600, "february,february-2"),
        (date(2026, 3, 1), date(2027, 3, 1), 200, 200, "march"),
    ]
    assert balance(con, "ann") == 800


def ann_and_bob_with_one_code(con, tmp_path: Path) -> RunContext:
    """Two bronze members with 1000 points each, and a pool holding the one code ONLY-1."""
    ctx = make_ctx(con, make_program(tmp_path, ["ONLY-1"]))
    members(con, {"ann": "bronze", "bob": "bronze"})
    lot(ctx, "ann", 1000, date(2026, 1, 1), "g1")
    lot(ctx, "bob", 1000, date(2026, 1, 1), "g2")
    return ctx


def test_one_code_two_requests_first_by_requested_at_gets_it(con, tmp_path):
    ctx = ann_and_bob_with_one_code(con, tmp_path)
    requests(
        con,
        [
            ("a-later", "ann", "d20", "2026-03-31 12:00:00"),
            ("z-first", "bob", "d20", "2026-03-31 08:00:00"),
        ],
    )
    apply_redemptions(ctx)
    assert outcomes(con) == {
        "z-first": ("accepted", None, "ONLY-1"),
        "a-later": ("rejected", "pool_exhausted", None),
    }
    assert (balance(con, "ann"), balance(con, "bob")) == (1000, 500)
    assert con.execute(
        "SELECT assigned_to, assigned_on FROM coupon_codes WHERE code = 'ONLY-1'"
    ).fetchone() == ("bob", D)
    assert ctx.counts["coupons"] == {"r20.assigned": 1}


def test_codes_go_by_requested_at_across_members_with_several_requests(con, tmp_path):
    """Ann's second request (09:00) comes before Bob's first (10:00), so it gets the pool's
    only code; that takes her points, so her third request no longer fits."""
    ctx = ann_and_bob_with_one_code(con, tmp_path)
    requests(
        con,
        [
            ("a1", "ann", "plain", "2026-03-31 08:00:00"),  # 1000 - 300 = 700
            ("a2", "ann", "d20", "2026-03-31 09:00:00"),  # 700 - 500 = 200, ONLY-1
            ("b1", "bob", "d20", "2026-03-31 10:00:00"),  # no code left
            ("a3", "ann", "plain", "2026-03-31 11:00:00"),  # 200 < 300
        ],
    )
    apply_redemptions(ctx)
    assert outcomes(con) == {
        "a1": ("accepted", None, None),
        "a2": ("accepted", None, "ONLY-1"),
        "b1": ("rejected", "pool_exhausted", None),
        "a3": ("rejected", "insufficient_points", None),
    }
    assert (balance(con, "ann"), balance(con, "bob")) == (200, 1000)


def test_same_instant_ties_go_by_redemption_id(con, tmp_path):
    ctx = make_ctx(con, make_program(tmp_path, ["ONLY-1"]))
    members(con, {"ann": "bronze", "bob": "bronze", "cid": "bronze"})
    lot(ctx, "ann", 1000, date(2026, 1, 1), "g1")
    lot(ctx, "bob", 1000, date(2026, 1, 1), "g2")
    lot(ctx, "cid", 300, date(2026, 1, 1), "g3")
    requests(
        con,
        [
            ("r-b", "ann", "d20", "2026-03-31 09:00:00"),
            ("r-a", "bob", "d20", "2026-03-31 09:00:00"),
            # One member, one instant, points for one: the smaller id goes first.
            ("x2", "cid", "plain", "2026-03-31 09:00:00"),
            ("x1", "cid", "plain", "2026-03-31 09:00:00"),
        ],
    )
    apply_redemptions(ctx)
    assert outcomes(con) == {
        "r-a": ("accepted", None, "ONLY-1"),
        "r-b": ("rejected", "pool_exhausted", None),
        "x1": ("accepted", None, None),
        "x2": ("rejected", "insufficient_points", None),
    }


def test_a_code_is_never_assigned_twice_across_runs(con, tmp_path):
    program = make_program(tmp_path, ["C-1", "C-2"])
    members(con, {"ann": "bronze", "bob": "bronze", "cid": "bronze"})
    ctx1 = make_ctx(con, program, D)
    for cust in ("ann", "bob", "cid"):
        lot(ctx1, cust, 1000, date(2026, 1, 1), f"g-{cust}")
    requests(con, [("r1", "ann", "d20", "2026-03-31 09:00:00")])
    apply_redemptions(ctx1)
    ctx2 = make_ctx(con, program, date(2026, 4, 1))
    requests(
        con,
        [("r2", "bob", "d20", "2026-04-01 09:00:00"), ("r3", "cid", "d20", "2026-04-01 10:00:00")],
    )
    apply_redemptions(ctx2)
    assert outcomes(con) == {
        "r1": ("accepted", None, "C-1"),
        "r2": ("accepted", None, "C-2"),
        "r3": ("rejected", "pool_exhausted", None),
    }
    codes = con.execute(
        "SELECT code, assigned_to, assigned_on FROM coupon_codes ORDER BY seq"
    ).fetchall()
    assert codes == [("C-1", "ann", D), ("C-2", "bob", date(2026, 4, 1))]
    # The file read again on the second run did not add its codes twice.
    assert con.execute("SELECT count(*) FROM coupon_codes").fetchone()[0] == 2


def test_a_generated_pool_is_filled_when_first_needed(con, tmp_path):
    data = {
        "version": 1,
        "program": {"id": "club", "name": "Club", "currency": "PLN", "timezone": "Europe/Warsaw"},
        "rewards": [{"id": "wb", "name": "25% off", "cost": 10, "coupon_pool": "g"}],
        "coupons": {
            "pools": [
                {
                    "id": "g",
                    "source": "generate",
                    "prefix": "WB-",
                    "length": 8,
                    "count": 20,
                    "valid_days": 30,
                }
            ]
        },
    }
    ctx = make_ctx(con, Program(tmp_path / "p.yaml", with_defaults(data)))
    members(con, {"ann": None})  # no tiers in this program
    lot(ctx, "ann", 100, date(2026, 1, 1), "g1")
    requests(con, [("r1", "ann", "wb", "2026-03-31 09:00:00")])
    apply_redemptions(ctx)
    status, code = outcomes(con)["r1"][0], outcomes(con)["r1"][2]
    assert status == "accepted" and code.startswith("WB-") and len(code) == 11
    assert con.execute(
        "SELECT count(*), max(valid_until) FROM coupon_codes WHERE pool_id = 'g'"
    ).fetchone() == (20, date(2026, 4, 30))


def test_no_requests_do_nothing(con, tmp_path):
    ctx = make_ctx(con, make_program(tmp_path, ["C-1"]))
    members(con, {})
    requests(con, [])
    apply_redemptions(ctx)
    assert con.execute("SELECT count(*) FROM redemptions").fetchone()[0] == 0
    # A pool nobody asked for is not read.
    assert con.execute("SELECT count(*) FROM coupon_codes").fetchone()[0] == 0
    assert "redemptions" not in ctx.counts
