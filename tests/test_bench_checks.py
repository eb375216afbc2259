"""bench/check_shards.py and bench/check_formats.py: their splitting and comparing, on a few
literal rows (the checks themselves run on the benchmark shop, in `make bench`)."""

from __future__ import annotations

import csv
import datetime as dt
import importlib.util
import sys
from collections import Counter
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[1]


def _bench_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "bench" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _write(path: Path, header: str, *rows: str) -> None:
    path.write_text("\n".join([header, *rows]) + "\n")


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_shards_hold_each_member_with_the_items_and_returns_of_their_orders(tmp_path):
    shards = _bench_module("check_shards")
    data = tmp_path / "data"
    data.mkdir()
    _write(data / "customers.csv", "customer_id,email", "C1,a@x.pl", "C2,b@x.pl", "C3,c@x.pl")
    _write(
        data / "orders.csv",
        "order_id,customer_id,ordered_at,total",
        "O1,C1,2025-01-02 10:00:00,30.00",
        "O2,C2,2025-01-02 11:00:00,10.00",
    )
    # O1's lines are not together and not in sku order: each keeps its place.
    _write(
        data / "order_items.csv",
        "order_id,sku,quantity,unit_price",
        "O1,S9,1,10.00",
        "O2,S5,1,10.00",
        "O1,S1,2,10.00",
    )
    _write(data / "returns.csv", "order_id,returned_at,amount", "O2,2025-01-05 09:00:00,10.00")
    _write(
        data / "events.csv",
        "event_id,customer_id,type,occurred_at",
        "E1,C3,page_view,2025-01-03 08:00:00",
        "E2,C1,page_view,2025-01-03 09:00:00",
    )
    con = duckdb.connect()
    shards.order_shards(con, [data], 2)
    folders = shards.split(data, tmp_path / "shards", 2, con)
    members = {c: con.execute(f"SELECT hash('{c}') % 2").fetchone()[0] for c in ("C1", "C2", "C3")}
    con.close()

    for k, folder in enumerate(folders):
        mine = {c for c, shard in members.items() if shard == k}
        assert {r["customer_id"] for r in _rows(folder / "customers.csv")} == mine
        orders = {r["order_id"]: r["customer_id"] for r in _rows(folder / "orders.csv")}
        assert set(orders.values()) <= mine
        items = [(r["order_id"], r["sku"]) for r in _rows(folder / "order_items.csv")]
        assert items == [i for i in [("O1", "S9"), ("O2", "S5"), ("O1", "S1")] if i[0] in orders]
        assert {r["order_id"] for r in _rows(folder / "returns.csv")} <= set(orders)
        assert {r["customer_id"] for r in _rows(folder / "events.csv")} <= mine
    # Every row is in exactly one shard.
    assert sum(len(_rows(f / "customers.csv")) for f in folders) == 3
    assert sum(len(_rows(f / "order_items.csv")) for f in folders) == 3
    assert sum(len(_rows(f / "returns.csv")) for f in folders) == 1
    assert sum(len(_rows(f / "events.csv")) for f in folders) == 2


def test_shards_compare_each_row_of_the_whole_run_with_the_shards(capsys):
    shards = _bench_module("check_shards")
    day = dt.date(2025, 12, 30)
    a, b = ("C1", "earn", "5"), ("C2", "earn", "7")
    whole = {day: {"ledger.csv": Counter([a, b])}}
    assert (
        shards.compare(
            whole, [{day: {"ledger.csv": Counter([a])}}, {day: {"ledger.csv": Counter([b])}}]
        )
        == []
    )
    assert "2 rows agree" in capsys.readouterr().out
    # C2's entry is missing from the shards and another is there instead.
    other = ("C2", "earn", "6")
    problems = shards.compare(
        whole, [{day: {"ledger.csv": Counter([a])}}, {day: {"ledger.csv": Counter([other])}}]
    )
    assert len(problems) == 1
    assert "1 rows only in the whole run" in problems[0] and str(b) in problems[0]
    assert "1 only in the shards" in problems[0] and str(other) in problems[0]


def test_formats_compare_the_files_but_not_the_coupon_codes(tmp_path):
    formats = _bench_module("check_formats")
    for name in ("a", "b"):
        folder = tmp_path / name
        folder.mkdir()
        for file in formats.FILES:
            (folder / file).write_text("customer_id,points\nC1,5\n")
        code = "BC-AAAA" if name == "a" else "BC-BBBB"
        (folder / "redemptions.csv").write_text(
            f"redemption_id,customer_id,reward_id,status,reason,coupon_code\n"
            f"R1,C1,r20,accepted,,{code}\n"
        )
    assert formats.differences(tmp_path / "a", tmp_path / "b") == []
    (tmp_path / "b" / "ledger.csv").write_text("customer_id,points\nC1,6\n")
    (tmp_path / "b" / "redemptions.csv").write_text(
        "redemption_id,customer_id,reward_id,status,reason,coupon_code\n"
        "R1,C1,r20,rejected,insufficient_points,\n"
    )
    assert formats.differences(tmp_path / "a", tmp_path / "b") == ["ledger.csv", "redemptions.csv"]
