"""Edge cases of tiers, bonuses and redemptions, run end to end on small literal shops."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from enginekit import Shop, customer, order

REDEEM_AT_TIER = """
earning:
  rounding: floor
  pending_days: 0
  rules:
    - {id: base, on: order, points: order.total}
tiers:
  basis: spend
  window: 365 days
  retain: 30 days
  levels:
    - {id: bronze, name: Bronze, min: 0}
    - {id: silver, name: Silver, min: 1000}
rewards:
  - {id: lounge, name: Lounge, cost: 100, min_tier: silver}
"""


def redemption(rid: str, cid: str, reward: str, at: str) -> dict:
    return {"redemption_id": rid, "customer_id": cid, "reward_id": reward, "requested_at": at}


@pytest.mark.parametrize("late", [False, True], ids=["one-run", "rerun-with-late-export"])
def test_a_rerun_checks_min_tier_with_the_tier_before_the_days_promotion(tmp_path: Path, late):
    """A member promoted on D redeems the higher tier's rewards from D + 1 on: a request of
    D that comes in a late export, in a rerun of D, is judged as in the one run of D."""
    shop = Shop(tmp_path, REDEEM_AT_TIER)
    shop.add("customers", customer("A", "2026-01-01 10:00"))
    shop.run("2026-01-01")
    shop.add("orders", order("o1", "A", "2026-01-02 10:00", "1000"))  # silver on 2026-01-02
    if late:
        shop.run("2026-01-02")
        assert shop.query("SELECT tier FROM tiers WHERE customer_id = 'A'") == [("silver",)]
    shop.add("redemptions", redemption("x1", "A", "lounge", "2026-01-02 12:00"))
    shop.run("2026-01-02")
    rows = shop.csv("2026-01-02", "redemptions.csv")
    assert [(r["redemption_id"], r["status"], r["reason"]) for r in rows] == [
        ("x1", "rejected", "tier_too_low")
    ]
    assert shop.balance("A") == (1000, 0)  # 1000 points of o1, nothing taken

    # The next day the member is silver: the same reward is accepted (1000 - 100 = 900).
    shop.add("redemptions", redemption("x2", "A", "lounge", "2026-01-03 12:00"))
    shop.run("2026-01-03")
    rows = shop.csv("2026-01-03", "redemptions.csv")
    assert [(r["redemption_id"], r["status"]) for r in rows] == [("x2", "accepted")]
    assert shop.balance("A") == (900, 0)


def test_a_rerun_checks_min_tier_with_the_tier_before_the_days_demotion(tmp_path: Path):
    """Demoted on D, the member was still silver at the start of D: a late request of D
    for a silver reward is accepted in the rerun, as in one run of D."""
    shop = Shop(tmp_path, REDEEM_AT_TIER)
    shop.add("customers", customer("A", "2026-01-01 10:00"))
    shop.add("orders", order("o1", "A", "2026-01-01 10:00", "1000"))
    shop.run("2026-01-01")  # silver, renewed 2026-01-01
    # window 365 days: o1 counts until 2027-01-01; renewal every run until then. Without
    # runs in between, retain (30 days) from the last renewal (2026-01-01) has passed on
    # 2027-01-02, where the basis is 0: demoted to bronze.
    shop.run("2027-01-02", catch_up=False)
    assert shop.query("SELECT tier FROM tiers WHERE customer_id = 'A'") == [("bronze",)]
    shop.add("redemptions", redemption("x1", "A", "lounge", "2027-01-02 12:00"))
    shop.run("2027-01-02")
    rows = shop.csv("2027-01-02", "redemptions.csv")
    assert [(r["redemption_id"], r["status"], r["reason"]) for r in rows] == [
        ("x1", "accepted", "")
    ]
    assert shop.balance("A") == (900, 0)  # 1000 - 100 (no expiry configured)


REFERRAL = """
earning:
  rounding: floor
  pending_days: 3
  rules:
    - {id: base, on: order, points: order.total}
bonuses:
  - id: referral
    trigger: referral
    points: {referrer: 300, referee: 50}
"""


@pytest.mark.parametrize("nightly", [False, True], ids=["first-run", "nightly"])
def test_a_referrer_who_joined_after_the_release_day_gets_nothing(tmp_path: Path, nightly):
    """B, referred by A, orders 100 on 2026-01-02, released 2026-01-05. A joins on 2026-01-20:
    nightly runs do not know A on 2026-01-05, so no referral; a first run over the same
    history must not pay it either. C, referred by R who joins on the release day itself,
    is paid either way."""
    shop = Shop(tmp_path, REFERRAL)
    shop.add(
        "customers",
        customer("A", "2026-01-20 10:00"),
        customer("B", "2026-01-01 10:00", referred_by="A"),
        customer("R", "2026-01-05 08:00"),
        customer("C", "2026-01-01 10:00", referred_by="R"),
    )
    shop.add(
        "orders",
        order("o1", "B", "2026-01-02 10:00", "100"),
        order("o2", "C", "2026-01-02 10:00", "100"),
    )
    if nightly:
        shop.run("2026-01-01")
    shop.run("2026-01-31")
    assert shop.balance("A") == (0, 0)
    assert shop.balance("B") == (100, 0)  # the order's 100 points, no referee bonus
    assert shop.balance("R") == (300, 0)
    assert shop.balance("C") == (150, 0)  # 100 + 50
    assert shop.query("SELECT customer_id, period FROM bonus_grants ORDER BY ALL") == [
        ("C", "once"),
        ("R", "referee:C"),
    ]


TIERS = """
earning:
  rounding: floor
  pending_days: 0
  rules:
    - {id: base, on: order, points: order.total}
tiers:
  basis: spend
  window: 365 days
  retain: 30 days
  levels:
    - {id: bronze, name: Bronze, min: 0}
    - {id: silver, name: Silver, min: 1000, multiplier: 2}
    - {id: gold, name: Gold, min: 5000, multiplier: 3}
"""


def _tier_counts(shop: Shop, day: str) -> dict:
    counts = json.loads((shop.out / day / "run.json").read_text())["counts"]
    return {k: v for k, v in (counts.get("tiers") or {}).items() if v}


@pytest.mark.parametrize("late", [False, True], ids=["one-run", "rerun-with-late-export"])
@pytest.mark.parametrize(
    ("returned", "tier", "changes"),
    [
        # 1000 - 500 = 500 < silver's 1000: no promotion at all.
        ("500", "bronze", []),
        # 6000 - 2000 = 4000: silver, not gold.
        ("2000", "silver", [("bronze", "silver", "up")]),
    ],
    ids=["undone", "lowered"],
)
def test_a_late_return_in_a_rerun_corrects_the_days_promotion(
    tmp_path: Path, late, returned, tier, changes
):
    """A return dated D that comes in a late export, in a rerun of D, leaves the member
    where one run of D with all the data would: the day's promotion is undone or lowered."""
    shop = Shop(tmp_path, TIERS)
    shop.add("customers", customer("A", "2026-01-01 10:00"))
    shop.run("2026-01-01")
    total = "1000" if returned == "500" else "6000"
    shop.add("orders", order("o1", "A", "2026-01-02 10:00", total))
    if late:
        shop.run("2026-01-02")
        assert shop.query("SELECT tier FROM tiers") == [("silver" if total == "1000" else "gold",)]
    shop.add("returns", {"order_id": "o1", "returned_at": "2026-01-02 18:00", "amount": returned})
    shop.run("2026-01-02")
    # `since`: the join day at bronze, the promotion day at silver (bronze's renewal day is
    # not kept up to date, docs/tiers.md).
    assert shop.query("SELECT tier, since FROM tiers") == [
        (tier, date(2026, 1, 1) if tier == "bronze" else date(2026, 1, 2))
    ]
    if tier == "silver":
        assert shop.query("SELECT renewed_on FROM tiers") == [(date(2026, 1, 2),)]
    assert shop.query("SELECT from_tier, to_tier, change FROM tier_changes") == changes
    assert _tier_counts(shop, "2026-01-02") == ({"promoted": 1} if changes else {})
    # The next day's order earns at the day's tier: 100 x 1 (bronze) or x 2 (silver).
    shop.add("orders", order("o2", "A", "2026-01-03 10:00", "100"))
    shop.run("2026-01-03")
    earned = shop.query("SELECT points FROM ledger WHERE source_id = 'o2' AND kind = 'earn'")
    assert earned == [(100 if tier == "bronze" else 200,)]


def test_a_rerun_judges_earning_rules_with_the_tier_at_the_start_of_the_day(tmp_path: Path):
    """A rule for silver members: a late order of D, in a rerun of D after the day's first
    run promoted the member, earns as in one run of D (the member was bronze all of D)."""
    program = REDEEM_AT_TIER.replace(
        "    - {id: base, on: order, points: order.total}\n",
        "    - {id: base, on: order, points: order.total}\n"
        "    - {id: silver-thanks, on: order, when: \"tier = 'silver'\", points: '7'}\n",
    )
    shop = Shop(tmp_path, program)
    shop.add("customers", customer("A", "2026-01-01 10:00"))
    shop.add("orders", order("o1", "A", "2026-01-02 10:00", "1000"))  # silver on 2026-01-02
    shop.run("2026-01-02")
    shop.add("orders", order("o2", "A", "2026-01-02 18:00", "10"))  # late, same day
    shop.run("2026-01-02")
    earned = shop.query(
        "SELECT source_id, rule_id, points FROM ledger WHERE kind = 'earn' ORDER BY entry_id"
    )
    # base: 1000 + 10; silver-thanks: nothing on 01-02, A was bronze at its start.
    assert earned == [("o1", "base", 1000), ("o2", "base", 10)]
    shop.add("orders", order("o3", "A", "2026-01-03 09:00", "5"))
    shop.run("2026-01-03")  # silver from the start of 01-03: 5 + 7
    assert shop.query(
        "SELECT rule_id, points FROM ledger WHERE source_id = 'o3' ORDER BY rule_id"
    ) == [("base", 5), ("silver-thanks", 7)]


@pytest.mark.parametrize("late", [False, True], ids=["one-run", "rerun-with-late-export"])
def test_a_rerun_that_undoes_a_promotion_counts_the_renewal_of_the_start_tier(tmp_path: Path, late):
    """Silver since 2026-01-01, A spends 5000 on 2026-03-01 (gold) and returns 4500 of it the
    same day. One run of the day renews silver (basis 1000 + 500 = 1500 >= 1000); a rerun
    with the late return undoes the promotion and leaves silver renewed on D, and the day's
    run.json counts (which add up over its runs) say so: promoted 1 - 1, renewed 0 + 1."""
    shop = Shop(tmp_path, TIERS)
    shop.add("customers", customer("A", "2026-01-01 10:00"))
    shop.add("orders", order("o0", "A", "2026-01-01 10:00", "1000"))
    shop.run("2026-01-01")  # silver
    shop.add("orders", order("o1", "A", "2026-03-01 10:00", "5000"))
    if late:
        shop.run("2026-03-01", catch_up=False)
        assert _tier_counts(shop, "2026-03-01") == {"promoted": 1}
    shop.add("returns", {"order_id": "o1", "returned_at": "2026-03-01 18:00", "amount": "4500"})
    shop.run("2026-03-01", catch_up=False)
    assert shop.query("SELECT tier, since, renewed_on FROM tiers") == [
        ("silver", date(2026, 1, 1), date(2026, 3, 1))
    ]
    assert _tier_counts(shop, "2026-03-01") == {"renewed": 1}
    shop.run("2026-03-01", catch_up=False)  # the same data again: nothing more to count
    assert _tier_counts(shop, "2026-03-01") == {"renewed": 1}


@pytest.mark.parametrize("late", [False, True], ids=["one-run", "rerun-with-late-export"])
def test_a_rerun_that_promotes_a_member_the_day_renewed_counts_the_promotion_only(
    tmp_path: Path, late
):
    """Silver since 2026-01-01 (1000 spent). On 2026-03-01 A spends 100 (basis 1100: silver
    renewed) and, in a late export of the same day, 4000 more (basis 5100: gold). One run of
    the day counts a promotion; the first run's renewal is taken back by the rerun's
    promotion, so the day's run.json counts (which add up over its runs) say the same."""
    shop = Shop(tmp_path, TIERS)
    shop.add("customers", customer("A", "2026-01-01 10:00"))
    shop.add("orders", order("o0", "A", "2026-01-01 10:00", "1000"))
    shop.run("2026-01-01")  # silver
    shop.add("orders", order("o1", "A", "2026-03-01 10:00", "100"))
    if late:
        shop.run("2026-03-01", catch_up=False)
        assert _tier_counts(shop, "2026-03-01") == {"renewed": 1}
    shop.add("orders", order("o2", "A", "2026-03-01 12:00", "4000"))
    shop.run("2026-03-01", catch_up=False)
    assert shop.query("SELECT tier, since, renewed_on FROM tiers") == [
        ("gold", date(2026, 3, 1), date(2026, 3, 1))
    ]
    assert _tier_counts(shop, "2026-03-01") == {"promoted": 1}
