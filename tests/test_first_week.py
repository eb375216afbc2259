"""A shop's first week with `loyalty`, through the CLI: real exports' quirks (a shop
system's header names, `;` and decimal commas, a BOM, offsets, gzip, daily files by glob,
an extra column in a rule) and the mistakes of nightly runs."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
from pathlib import Path

from typer.testing import CliRunner

from loyalty_cli.cli import app

PROGRAM = """\
version: 1
program: {id: real-shop, name: Real Shop, currency: EUR, timezone: Europe/Warsaw,
          point_value: 0.01}
sources:
  customers:
    path: "customers*.csv"
    columns: {customer_id: "Customer ID", email: "Email", joined_at: "Created at"}
    csv: {delimiter: ";"}
  orders:
    path: "orders-*.csv.gz"
    columns: {order_id: "Order ID", customer_id: "Customer", ordered_at: "Created at",
              total: "Total Price", status: "Financial Status"}
    csv: {delimiter: ";", decimal: ","}
    status_map: {paid: completed, refunded: cancelled}
    extra: {gift_wrap: boolean}
earning:
  rules:
    - {id: base, on: order, points: order.total}
    - {id: wrap, on: order, when: order.gift_wrap, points: 50}
bonuses:
  - {id: welcome, trigger: joined, points: 100}
tiers:
  basis: spend
  window: 365 days
  levels:
    - {id: member, name: Member, min: 0}
    - {id: gold, name: Gold, min: 500, multiplier: 2}
"""

ORDERS_HEADER = "Order ID;Customer;Created at;Total Price;Financial Status;gift_wrap\r\n"


def make_shop(root: Path) -> tuple[Path, Path]:
    """The program and its exports folder: customers with a BOM and offsets, and the
    orders of 2026-11-01 gzipped."""
    (root / "program.yaml").write_text(PROGRAM)
    data = root / "exports"
    data.mkdir()
    (data / "customers.csv").write_bytes(
        b"\xef\xbb\xbfCustomer ID;Email;Created at\r\n"
        b"C1;a@x.example;2026-10-01T10:00:00+02:00\r\n"
        # 23:30 UTC is 00:30 of 2 November in Warsaw: C1 joins on the 1st, C2 on the 2nd.
        b"C2;b@x.example;2026-11-01T23:30:00Z\r\n"
    )
    write_orders(
        data,
        "2026-11-01",
        # 12:00+01:00 is 12:00 in Warsaw (CET); 22:59:59Z is 23:59:59 there, still the 1st.
        "1001;C1;2026-11-01 12:00:00+01:00;1.234,56;paid;false\r\n"
        "1002;C1;2026-11-01T22:59:59Z;10,99;paid;true\r\n",
    )
    return root / "program.yaml", data


def write_orders(data: Path, day: str, rows: str) -> None:
    with gzip.open(data / f"orders-{day}.csv.gz", "wt", newline="") as fh:
        fh.write(ORDERS_HEADER + rows)


def cli(*args: str):
    return CliRunner().invoke(app, list(args))


def balances(out: Path, day: str) -> dict[str, int]:
    with (out / day / "balances.csv").open() as fh:
        return {row["customer_id"]: int(row["available"]) for row in csv.DictReader(fh)}


def test_a_real_shops_exports_over_two_nights(tmp_path):
    program, data = make_shop(tmp_path)
    state, out = str(tmp_path / "st.duckdb"), str(tmp_path / "out")
    common = ["--data", str(data), "--state", state, "--out", out]
    res = cli("run", str(program), *common, "--as-of", "2026-11-01")
    assert res.exit_code == 0, res.output
    # C1: base floor(1234.56) + floor(10.99) = 1244, wrap 50, welcome 100 = 1394.
    # C2 joins on the 2nd: not yet a member.
    assert balances(Path(out), "2026-11-01") == {"C1": 1394}
    write_orders(
        data,
        "2026-11-02",
        "1003;C1;2026-11-02 09:00;100,00;paid;no\r\n1004;C2;2026-11-02 10:00;50,00;PAID;yes\r\n",
    )
    res = cli("run", str(program), *common, "--as-of", "2026-11-02")
    assert res.exit_code == 0, res.output
    # C1 is gold (1245.55 spent): 100 x 2 = 200 more, 1594. C2: 50 + wrap 50 + welcome 100.
    assert balances(Path(out), "2026-11-02") == {"C1": 1594, "C2": 200}
    # The same night again changes nothing.
    res = cli("run", str(program), *common, "--as-of", "2026-11-02")
    assert res.exit_code == 0, res.output
    assert balances(Path(out), "2026-11-02") == {"C1": 1594, "C2": 200}


def test_a_run_for_a_day_after_today_is_a_usage_error_and_touches_nothing(tmp_path):
    """A typo in the year (2027 for 2026) would run a year of nights at once: every point
    expires and every tier falls, and the state could not run the real nights any more
    (an earlier day than the last run is refused). The day after today is refused before
    any work."""
    program, data = make_shop(tmp_path)
    state, out = tmp_path / "st.duckdb", tmp_path / "out"
    common = ["--data", str(data), "--state", str(state), "--out", str(out)]
    assert cli("run", str(program), *common, "--as-of", "2026-11-01").exit_code == 0
    before = state.read_bytes()
    future = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    res = cli("run", str(program), *common, "--as-of", future)
    assert res.exit_code == 2, res.output
    assert "--as-of" in res.output and "after today" in res.output
    assert sorted(p.name for p in out.iterdir()) == ["2026-11-01"]
    assert state.read_bytes() == before
    res = cli("backfill", str(program), *common, "--from", "2026-11-02", "--to", future)
    assert res.exit_code == 2, res.output
    assert "--to" in res.output and "after today" in res.output
    assert state.read_bytes() == before
    # With --format json the refusal is one JSON object, as for other usage errors.
    res = cli("run", str(program), *common, "--as-of", future, "--format", "json")
    assert res.exit_code == 2
    body = json.loads(res.stdout)
    assert body["exit_code"] == 2 and "after today" in body["usage_errors"][0]
    # A plan for a later day writes nothing, and stays allowed: what would expire by then?
    res = cli("plan", str(program), "--data", str(data), "--state", str(state), "--as-of", future)
    assert res.exit_code == 0, res.output
    assert state.read_bytes() == before


def test_a_first_run_says_where_it_made_the_new_state(tmp_path, monkeypatch):
    """Run from another folder (cron starts in $HOME), `--state loyalty.duckdb` is a new
    file there and the run takes all history again: the output says so, with the file's
    full path; a later night on that state does not."""
    program, data = make_shop(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("COLUMNS", "300")
    res = cli("run", str(program), "--data", str(data), "--as-of", "2026-11-01")
    assert res.exit_code == 0, res.output
    made = elsewhere / "loyalty.duckdb"
    assert made.exists()
    assert f"new state file: {made}" in res.output
    res = cli("run", str(program), "--data", str(data), "--as-of", "2026-11-02")
    assert res.exit_code == 0, res.output
    assert "new state file" not in res.output
    # A refused first run leaves no state behind, and says nothing of one.
    (data / "customers.csv").write_text("Customer ID;Email;Created at\nC9;x;not a time\n")
    res = cli("run", str(program), "--data", str(data), "--as-of", "2026-11-02",
              "--state", "other.duckdb")  # fmt: skip
    assert res.exit_code == 3, res.output
    assert "new state file" not in res.output and not (elsewhere / "other.duckdb").exists()
