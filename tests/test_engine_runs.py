"""Runs as a whole: idempotency, backfill = single runs, atomicity under SIGKILL, refusals."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
from pathlib import Path

import pytest
from enginekit import (
    Shop,
    check_invariants,
    customer,
    dump_outputs,
    dump_state,
    event,
    item,
    order,
    state_held,
)

from loyalty_cli import sampledata
from loyalty_cli.engine.run import run

PROGRAM = """
earning:
  rounding: floor
  pending_days: 7
  rules:
    - {id: base, on: order, points: order.total, qualifying: true}
    - {id: new-items, on: order_item, when: "list_contains(item.tags, 'new')", points: 5}
    - id: visits
      on: event
      when: "event.type = 'page_view'"
      points: 1
      cap: {max: 3, per: day}
    - {id: unsub, on: event, when: "event.type = 'unsubscribe'", points: -20}
expiry:
  after: 90 days
tiers:
  basis: spend
  window: 365 days
  retain: 30 days
  levels:
    - {id: bronze, name: Bronze, min: 0}
    - {id: silver, name: Silver, min: 1500, multiplier: 1.25}
    - {id: gold, name: Gold, min: 4000, multiplier: 1.5}
"""


@pytest.fixture(scope="module")
def sample_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    sampledata.generate(
        root / "data",
        customers=40,
        start=dt.date(2026, 1, 1),
        days=90,
        events_per_customer=30.0,
        seed=11,
    )
    return root / "data"


def make_shop(root: Path, data: Path, name: str = "state.duckdb") -> Shop:
    shop = Shop(root, PROGRAM, state_name=name)
    shutil.rmtree(shop.data)
    shutil.copytree(data, shop.data)
    return shop


def test_same_day_twice_changes_nothing(tmp_path, sample_data):
    shop = make_shop(tmp_path, sample_data)
    shop.run("2026-03-01")
    before_state = dump_state(shop.state)
    before_out = dump_outputs(shop.out)
    shop.run("2026-03-01")
    assert dump_state(shop.state) == before_state
    assert dump_outputs(shop.out) == before_out


def test_a_rerun_reports_what_all_the_days_runs_did(tmp_path):
    """run.json of a rerun: the same as the first run's with the same exports (SPEC 5);
    with a late row, the step counts grow by what the rerun added, and the levels (segment
    sizes, the exports as read) are the rerun's."""
    shop = Shop(
        tmp_path,
        """
earning:
  rules:
    - {id: base, on: order, points: order.total}
    - {id: visit, on: event, when: "event.type = 'page_view'", points: 2}
segments:
  - {id: buyers, type: rule, when: orders_count >= 1}
""",
    )
    shop.add("customers", customer("A", "2026-03-01 08:00:00"), customer("B", "2026-03-01"))
    shop.add("orders", order("O1", "A", "2026-03-01 12:00", "10.00"))
    shop.add("order_items", item("O1", "S1", "1", "10.00"))
    shop.add("events", event("E1", "A", "2026-03-01 13:00"))
    shop.run("2026-03-01")
    shop.add("orders", order("O2", "B", "2026-03-02 12:00", "5.00"))
    shop.run("2026-03-02")
    first = json.loads((shop.out / "2026-03-02" / "run.json").read_text())
    assert first["counts"]["earning"] == {"base.points": 5, "base.rows": 1}
    assert first["counts"]["rows"]["orders"] == 1
    # O1's item row is exported again: ignored, and said so, as an earlier day's order's.
    assert first["warnings"] == ["1 item row(s) of orders processed in an earlier run were ignored"]

    shop.run("2026-03-02")
    again = json.loads((shop.out / "2026-03-02" / "run.json").read_text())
    first.pop("timings"), again.pop("timings")
    assert again == first

    shop.add("events", event("E2", "B", "2026-03-02 20:00"))  # reaches the exports late
    shop.run("2026-03-02")
    late = json.loads((shop.out / "2026-03-02" / "run.json").read_text())
    assert late["counts"]["earning"] == {
        "base.points": 5,
        "base.rows": 1,
        "visit.points": 2,
        "visit.rows": 1,
    }
    assert late["counts"]["rows"] == {**first["counts"]["rows"], "events": 1}
    # B ordered on the day: a buyer in the run of that day (the member view after earning).
    assert late["counts"]["segments"] == first["counts"]["segments"] == {"buyers.buyers": 2}
    assert late["counts"]["sources"]["events.rows_read"] == 2
    assert late["warnings"] == first["warnings"]


def test_backfill_equals_single_runs(tmp_path, sample_data):
    a = make_shop(tmp_path / "a", sample_data)
    b = make_shop(tmp_path / "b", sample_data)
    a.backfill("2026-02-01", "2026-02-03")
    for day in ("2026-02-01", "2026-02-02", "2026-02-03"):
        b.run(day)
    assert dump_state(a.state) == dump_state(b.state)
    assert dump_outputs(a.out) == dump_outputs(b.out)
    assert sorted(p.name for p in a.out.iterdir()) == ["2026-02-01", "2026-02-02", "2026-02-03"]


def test_backfill_after_a_gap_runs_the_missed_days_first(tmp_path, sample_data):
    a = make_shop(tmp_path / "a", sample_data)
    b = make_shop(tmp_path / "b", sample_data)
    a.run("2026-02-01")
    a.backfill("2026-02-04", "2026-02-05")  # 02 and 03 were missed: run first
    for day in ("2026-02-01", "2026-02-02", "2026-02-03", "2026-02-04", "2026-02-05"):
        b.run(day)
    assert dump_state(a.state) == dump_state(b.state)
    assert dump_outputs(a.out) == dump_outputs(b.out)


def test_catch_up_runs_each_missed_day(tmp_path, sample_data):
    a = make_shop(tmp_path / "a", sample_data)
    b = make_shop(tmp_path / "b", sample_data)
    a.run("2026-02-01")
    a.run("2026-02-04")  # catches up 02, 03, 04
    for day in ("2026-02-01", "2026-02-02", "2026-02-03", "2026-02-04"):
        b.run(day)
    assert dump_state(a.state) == dump_state(b.state)


def test_earlier_day_is_refused_and_state_untouched(tmp_path, sample_data):
    from loyalty_cli.diagnostics import LoyaltyError

    shop = make_shop(tmp_path, sample_data)
    shop.run("2026-02-10")
    before = dump_state(shop.state)
    with pytest.raises(LoyaltyError) as err:
        shop.run("2026-02-09")
    assert err.value.exit_code == 3
    assert "2026-02-10" in str(err.value)
    assert dump_state(shop.state) == before


def test_reject_rate_over_threshold_refuses_the_run(tmp_path):
    shop = Shop(tmp_path, "earning:\n  rules:\n    - {id: base, on: order, points: order.total}\n")
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.add(
        "orders",
        order("O1", "A", "2026-03-01 12:00", "10.00"),
        order("O2", "A", "2026-03-01 12:00", "ten"),
    )
    result = shop.run("2026-03-01")
    assert result.status == "refused"
    assert result.exit_code == 3
    files = sorted(p.name for p in (shop.out / "2026-03-01").iterdir())
    assert files == ["rejects.csv", "run.json"]
    # The state did not exist before this first run, and does not after it.
    assert not shop.state.exists()
    # On a state with runs, a refused run changes nothing.
    shop.rows["orders"].pop()
    shop.export()
    assert shop.run("2026-03-01").status == "ok"
    before = dump_state(shop.state)
    shop.add("orders", order("O3", "A", "2026-03-02 12:00", "ten"))
    assert shop.run("2026-03-02").status == "refused"
    assert dump_state(shop.state) == before


def test_a_first_run_that_fails_leaves_no_state_file(tmp_path):
    """No customers export: the run stops (exit 1) before anything is committed, and the
    state file it would have created is not left behind."""
    shop = Shop(tmp_path, "earning:\n  rules:\n    - {id: base, on: order, points: order.total}\n")
    (shop.data / "customers.csv").unlink()
    from loyalty_cli.diagnostics import LoyaltyError

    with pytest.raises(LoyaltyError) as err:
        shop.run("2026-03-01")
    assert err.value.exit_code == 1 and err.value.diagnostics[0].code == "D601"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "out", "program.yaml"]
    assert list(shop.out.iterdir()) == []  # the --out folder, made before the run, empty
    # backfill too
    with pytest.raises(LoyaltyError):
        shop.backfill("2026-03-01", "2026-03-02")
    assert not shop.state.exists()


def test_the_reject_rate_counts_only_rows_new_to_the_state(tmp_path):
    """A full export re-sends the rows processed before: they do not dilute the night."""
    shop = Shop(tmp_path, "earning:\n  rules:\n    - {id: base, on: order, points: order.total}\n")
    shop.program.write_text(shop.program.read_text() + "data: {max_reject_rate: 0.4}\n")
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.add(
        "orders",
        order("O1", "A", "2026-03-01 12:00", "10.00"),
        order("O2", "A", "2026-03-01 13:00", "20.00"),
    )
    assert shop.run("2026-03-01").status == "ok"
    # The next night's export: O1 and O2 again, and O3, the night's only new order, bad.
    shop.add("orders", order("O3", "A", "2026-03-02 12:00", "abc"))
    result = shop.run("2026-03-02")
    assert (result.status, result.reason) == (
        "refused",
        "orders: 1 of 1 new rows rejected (100.00%), above data.max_reject_rate 40.00% "
        "(see rejects.csv)",
    )
    # With a good new order beside it: 1 of 2 is 50 %, still above 40 %; with two, 1 of 3.
    shop.add("orders", order("O4", "A", "2026-03-02 13:00", "5.00"))
    assert shop.run("2026-03-02").reason.startswith("orders: 1 of 2 new rows rejected (50.00%)")
    shop.add("orders", order("O5", "A", "2026-03-02 14:00", "5.00"))
    assert shop.run("2026-03-02").status == "ok"
    assert shop.balance("A") == (40, 0)  # 10 + 20 + 5 + 5, available at once


@pytest.mark.parametrize(
    "stage", ["load", "earning", "returns", "expiry", "tiers", "segments", "outputs", "commit"]
)
def test_sigkill_leaves_state_as_before(tmp_path, sample_data, stage):
    shop = make_shop(tmp_path / "killed", sample_data)
    ref = make_shop(tmp_path / "ref", sample_data)
    for s in (shop, ref):
        s.run("2026-02-01")
    before = dump_state(shop.state)
    proc = shop.run_cli("2026-02-10", {"LOYALTY_KILL_AT": stage})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert dump_state(shop.state) == before
    check_invariants(shop.state)
    # A rerun gives what an uninterrupted run gives.
    ok = shop.run_cli("2026-02-10")
    assert ok.returncode == 0, ok.stderr
    ref.run("2026-02-10")
    assert dump_state(shop.state) == dump_state(ref.state)
    assert dump_outputs(shop.out) == dump_outputs(ref.out)


def test_sigkill_after_the_commit_keeps_the_run_and_the_next_run_writes_its_files(
    tmp_path, sample_data
):
    # The files are moved into place once the run is committed: a kill in between leaves
    # the run in the state and no folder for its day.
    shop = make_shop(tmp_path / "killed", sample_data)
    ref = make_shop(tmp_path / "ref", sample_data)
    for s in (shop, ref):
        s.run("2026-02-01")
    proc = shop.run_cli("2026-02-02", {"LOYALTY_KILL_AT": "committed"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    ref.run("2026-02-02")
    assert dump_state(shop.state) == dump_state(ref.state)
    check_invariants(shop.state)
    folders = sorted(p.name for p in shop.out.iterdir())
    assert folders[-1] == "2026-02-01"
    assert all(name.startswith(".2026-02-02.tmp-") for name in folders[:-1])  # half-written
    pending = "SELECT value FROM meta WHERE key = 'files_pending'"
    assert shop.query(pending) == [("2026-02-02",)]
    # The next run first writes the files of the day whose folder is missing.
    ok = shop.run_cli("2026-02-03")
    assert ok.returncode == 0, ok.stderr
    ref.run("2026-02-03")
    assert sorted(p.name for p in shop.out.iterdir()) == ["2026-02-01", "2026-02-02", "2026-02-03"]
    assert dump_state(shop.state) == dump_state(ref.state)
    assert dump_outputs(shop.out) == dump_outputs(ref.out)
    assert shop.query(pending) == []
    # A run into another folder writes only its own day's files.
    other = tmp_path / "other"
    run(shop.program, shop.data, dt.date(2026, 2, 4), shop.state, other)
    assert sorted(p.name for p in other.iterdir()) == ["2026-02-04"]


def _two_shops(tmp_path):
    body = "earning:\n  rules:\n    - {id: base, on: order, points: order.total}\n"
    shop, ref = Shop(tmp_path / "full", body), Shop(tmp_path / "ref", body)
    for s in (shop, ref):
        s.add("customers", customer("A", "2026-01-01 08:00:00"))
        s.add("orders", order("O1", "A", "2026-03-01 12:00", "10.99"))
    return shop, ref


def _full_disk(*args, **kwargs):
    raise OSError(28, "No space left on device")


def _run_on_full_disk(shop: Shop, day: str, target, name: str):
    """Run `day` with `target.name` failing as on a full disk; the D608 it reports (exit 1)."""
    from loyalty_cli.diagnostics import LoyaltyError

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(target, name, _full_disk)
        with pytest.raises(LoyaltyError) as err:
            shop.run(day)
    assert err.value.exit_code == 1
    diag = err.value.diagnostics[0]
    assert diag.code == "D608"
    return diag


def test_files_that_cannot_be_written_leave_the_state_unchanged(tmp_path):
    from loyalty_cli.engine import outputs

    shop, ref = _two_shops(tmp_path)
    diag = _run_on_full_disk(shop, "2026-03-01", outputs, "write_all")
    assert "state is unchanged" in diag.message and "No space left on device" in diag.message
    assert not shop.state.exists()  # a first run: there was no state before it
    assert list(shop.out.iterdir()) == []  # nothing half-written left
    shop.run("2026-03-01")
    ref.run("2026-03-01")
    assert dump_outputs(shop.out) == dump_outputs(ref.out)
    assert dump_state(shop.state) == dump_state(ref.state)


def test_files_that_cannot_be_moved_into_place_come_with_the_next_run(tmp_path):
    from loyalty_cli.engine import run as engine_run

    shop, ref = _two_shops(tmp_path)
    diag = _run_on_full_disk(shop, "2026-03-01", engine_run, "_swap_in")
    assert "2026-03-01 is saved in the state" in diag.message
    # The run is in the state (10.99 earns 10 points, available at once), its files are
    # not, and nothing half-written is left in the folder.
    assert shop.query("SELECT kind, points, pending FROM ledger") == [("earn", 10, 0)]
    assert shop.query("SELECT value FROM meta WHERE key = 'files_pending'") == [("2026-03-01",)]
    assert list(shop.out.iterdir()) == []
    shop.run("2026-03-02")
    for day in ("2026-03-01", "2026-03-02"):
        ref.run(day)
    assert sorted(p.name for p in shop.out.iterdir()) == ["2026-03-01", "2026-03-02"]
    assert dump_outputs(shop.out) == dump_outputs(ref.out)
    assert dump_state(shop.state) == dump_state(ref.state)


def test_customers_export_updates_changed_rows_and_keeps_first_seen(tmp_path):
    shop = Shop(tmp_path, "earning:\n  rules:\n    - {id: base, on: order, points: 1}\n")
    shop.add("customers", customer("A"), customer("B", locale="pl-PL"))
    shop.run("2026-03-01")
    # Next night: A changes e-mail, B is the same, C is new.
    shop.rows["customers"][0]["email"] = "ann@new.example"
    shop.add("customers", customer("C", joined="2026-03-02 08:00:00"))
    shop.run("2026-03-02")
    rows = shop.query(
        "SELECT customer_id, email, locale, join_day, first_seen_on FROM customers "
        "ORDER BY customer_id"
    )
    assert rows == [
        ("A", "ann@new.example", None, dt.date(2025, 1, 1), dt.date(2026, 3, 1)),
        ("B", "b@example.com", "pl-PL", dt.date(2025, 1, 1), dt.date(2026, 3, 1)),
        ("C", "c@example.com", None, dt.date(2026, 3, 2), dt.date(2026, 3, 2)),
    ]


def test_ledger_written_in_parts_is_the_same_file(tmp_path, sample_data, monkeypatch):
    from loyalty_cli.engine import outputs

    whole = make_shop(tmp_path / "whole", sample_data)
    whole.run("2026-03-01")
    monkeypatch.setattr(outputs, "LEDGER_PART_ROWS", 7)
    parts = make_shop(tmp_path / "parts", sample_data)
    parts.run("2026-03-01")
    text = (whole.out / "2026-03-01" / "ledger.csv").read_bytes()
    assert text.count(b"\n") > 100  # many parts, one header
    assert (parts.out / "2026-03-01" / "ledger.csv").read_bytes() == text
    assert sorted(p.name for p in (parts.out / "2026-03-01").iterdir()) == sorted(
        p.name for p in (whole.out / "2026-03-01").iterdir()
    )


def test_order_days_kept_up_to_date_night_by_night(tmp_path):
    shop = Shop(tmp_path, "earning:\n  rules:\n    - {id: base, on: order, points: 1}\n")
    shop.add("customers", customer("A"), customer("B"))

    completed = {"currency": "PLN", "status": "completed"}
    shop.add(
        "orders",
        order("O1", "A", "2026-03-01 10:00:00", "100.00", **completed),
        order("O2", "A", "2026-03-01 12:00:00", "50.00", **completed),
        order("O3", "B", "2026-03-02 09:00:00", "80.00", **completed),
    )
    shop.run("2026-03-02")
    # Next night: A orders again, returns 30 of O1; B's order comes back cancelled.
    shop.add("orders", order("O4", "A", "2026-03-03 08:00:00", "40.00", **completed))
    shop.rows["orders"][2]["status"] = "cancelled"
    shop.add("returns", {"order_id": "O1", "returned_at": "2026-03-03 09:00:00", "amount": "30"})
    shop.export()
    shop.run("2026-03-03")
    rows = shop.query(
        "SELECT customer_id, CAST(day AS VARCHAR), CAST(spend AS DOUBLE), gap FROM order_days "
        "ORDER BY customer_id, day"
    )
    # A: Mar 1 = (100 - 30) + 50, Mar 3 = 40, two days later; B's only order is cancelled.
    assert rows == [("A", "2026-03-01", 120.0, None), ("A", "2026-03-03", 40.0, 2)]


def test_output_cells_that_look_like_formulas_are_neutralised(tmp_path):
    shop = Shop(
        tmp_path,
        """
earning:
  rules:
    - {id: base, on: event, points: 1}
rewards:
  - {id: r, name: R, cost: 1, coupon_pool: p}
coupons:
  pools:
    - {id: p, source: file, path: p.csv}
""",
    )
    (tmp_path / "p.csv").write_text("code\n=1+1\n")
    ids = ["=SUM(A1)", "+1", "-2", "@me", "\tT", "plain", "a=b", "10", "9"]
    shop.add("customers", *(customer(cid) for cid in ids))
    shop.add(
        "redemptions",
        {
            "redemption_id": "R1",
            "customer_id": "plain",
            "reward_id": "r",
            "requested_at": "2026-03-01 11:00",
        },
    )
    shop.add(
        "events",
        *(
            {
                "event_id": f"e{i}",
                "customer_id": cid,
                "type": "x",
                "occurred_at": "2026-03-01 10:00",
            }
            for i, cid in enumerate(ids)
        ),
    )
    shop.run("2026-03-01")
    # Sorted by the ids as text, byte by byte (9.22: "10" before "9", tab first), then
    # neutralised.
    balances = [row["customer_id"] for row in shop.csv("2026-03-01", "balances.csv")]
    assert balances == ["'\tT", "'+1", "'-2", "10", "9", "'=SUM(A1)", "'@me", "a=b", "plain"]
    ledger = [row["customer_id"] for row in shop.csv("2026-03-01", "ledger.csv")]
    assert set(ledger) == set(balances)
    # A coupon code from the shop's file is neutralised too.
    assert shop.csv("2026-03-01", "redemptions.csv") == [
        {
            "redemption_id": "R1",
            "customer_id": "plain",
            "reward_id": "r",
            "status": "accepted",
            "reason": "",
            "coupon_code": "'=1+1",
        }
    ]


def test_new_lots_are_stored_in_order_of_expiry_day(tmp_path):
    # Lot ids are numbered member by member; the rows are stored by expiry day, so that a
    # night's releases, debits and expiry touch few row groups of the state file.
    shop = Shop(
        tmp_path,
        """
        earning:
          rules:
            - {id: visit, on: event, points: 1}
        expiry:
          after: 30 days
          at: end_of_month
        """,
    )
    shop.add("customers", customer("A"), customer("B"))
    shop.add(
        "events",
        # A: Jan 5 + 30 days = Feb 4, usable through Feb 28; Mar 5 -> Apr 4 -> Apr 30.
        event("a1", "A", "2026-01-05 10:00", "v"),
        event("a2", "A", "2026-03-05 10:00", "v"),
        # B: Feb 5 -> Mar 7 -> Mar 31.
        event("b1", "B", "2026-02-05 10:00", "v"),
    )
    shop.run("2026-03-06")
    assert shop.query(
        "SELECT lot_id, customer_id, CAST(expires_on AS VARCHAR) FROM lots ORDER BY rowid"
    ) == [(1, "A", "2026-02-28"), (3, "B", "2026-03-31"), (2, "A", "2026-04-30")]


@pytest.mark.parametrize(
    ("points", "properties", "what"),
    [
        ("cast(event.properties->>'p' as integer)", '{"p": "abc"}', "Could not convert"),
        ("100 // cast(event.properties->>'p' as integer)", '{"p": "0"}', "Division by zero"),
    ],
)
def test_a_value_that_breaks_an_expression_stops_the_run_with_its_reason(
    tmp_path, points, properties, what
):
    """Validate cannot know the data: a cast of text that does not convert, or a divisor
    that is 0, fails in the run. It is the program's problem with this data (D613, exit 1),
    named with its step, and the run is rolled back, not an internal error."""
    program = f"""
earning:
  rules:
    - {{id: props, on: event, points: "{points}"}}
"""
    shop = Shop(tmp_path / "shop", program)
    shop.add("customers", customer("C1"))
    shop.add("events", event("E1", "C1", "2026-03-05 10:00:00", properties=properties))
    done = shop.run_cli("2026-03-05")
    assert done.returncode == 1, done.stderr
    assert "D613" in done.stderr and what in done.stderr and "earning step" in done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert not shop.state.exists()  # rolled back: the first run leaves no state


def test_many_welcome_bonuses_after_a_bonus_that_gives_nothing_are_all_booked(tmp_path):
    # The referral bonus finds no referred member and adds no grant; the welcome bonus then
    # adds more grants than one DuckDB row group holds (see state.StateConnection).
    members = 130_000
    shop = Shop(
        tmp_path,
        """
        bonuses:
          - {id: referral, trigger: referral, points: {referrer: 30, referee: 12}}
          - {id: welcome, trigger: joined, points: 10}
        """,
    )
    shop.add("customers", *(customer(f"C{n:06d}") for n in range(members)))
    result = shop.run("2025-01-02")
    assert result.counts["bonuses"] == {"welcome": members}
    assert shop.query(
        "SELECT rule_id, count(*), sum(points) FROM ledger WHERE kind = 'bonus' GROUP BY 1"
    ) == [("welcome", members, 10 * members)]
    balances = shop.csv("2025-01-02", "balances.csv")
    assert len(balances) == members
    assert sum(int(row["available"]) for row in balances) == 10 * members


def test_a_program_without_tiers_leaves_the_tier_cell_empty(tmp_path):
    shop = Shop(tmp_path, "earning:\n  rules:\n    - {id: base, on: order, points: order.total}\n")
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.add("orders", order("O1", "A", "2026-03-01 12:00", "10.00"))
    result = shop.run("2026-03-01")
    lines = (shop.out / "2026-03-01" / "balances.csv").read_text().splitlines()
    assert lines == [
        "customer_id,available,pending,tier,next_expiry_on,next_expiry_points,lifetime_earned",
        "A,10,0,,,,10",
    ]
    assert result.summary["tiers"] == {}


def test_a_file_in_the_place_of_a_days_folder_is_replaced_without_leftovers(tmp_path):
    shop = Shop(tmp_path, "earning:\n  rules:\n    - {id: base, on: order, points: order.total}\n")
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.out.mkdir(parents=True, exist_ok=True)
    (shop.out / "2026-03-01").write_text("not a folder")
    assert shop.run("2026-03-01").status == "ok"
    assert sorted(p.name for p in shop.out.iterdir()) == ["2026-03-01"]
    assert (shop.out / "2026-03-01" / "balances.csv").is_file()


def test_a_run_refused_for_a_state_in_use_writes_its_run_json(tmp_path):
    """SPEC 2: a run refused because another holds the state writes run.json (status
    refused, the reason) in the day's folder, unless that day's files are there already."""
    from loyalty_cli.diagnostics import LoyaltyError

    shop = Shop(tmp_path, "earning:\n  rules:\n    - {id: base, on: order, points: order.total}\n")
    shop.add("customers", customer("A", "2026-01-01 08:00:00"))
    shop.run("2026-03-01")
    with state_held(shop.state):
        before = (shop.out / "2026-03-01" / "run.json").read_text()
        for day in ("2026-03-02", "2026-03-01"):
            with pytest.raises(LoyaltyError) as err:
                shop.run(day)
            assert err.value.exit_code == 3
    refused = json.loads((shop.out / "2026-03-02" / "run.json").read_text())
    assert (refused["status"], refused["as_of"], refused["counts"]) == ("refused", "2026-03-02", {})
    assert refused["reason"].startswith("the state file is in use by another run")
    assert sorted(p.name for p in (shop.out / "2026-03-02").iterdir()) == ["run.json"]
    # The day already run keeps its files as they were.
    assert (shop.out / "2026-03-01" / "run.json").read_text() == before
