"""bench/bench_floor.py: the floor of a first run works on any export folder."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _floor_module():
    spec = importlib.util.spec_from_file_location("bench_floor", ROOT / "bench" / "bench_floor.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_floor_writes_one_entry_per_credited_row(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "events.csv").write_text(
        "event_id,customer_id,type,occurred_at,properties\n"
        "E1,C1,page_view,2025-01-02 10:00:00,{}\n"
        "E2,C1,link_click,2025-01-02 11:00:00,{}\n"  # not a crediting type
        "E3,C2,unsubscribe,2025-03-05 09:00:00,{}\n"
    )
    (data / "orders.csv").write_text(
        "order_id,customer_id,ordered_at,total,currency,status,channel\n"
        "O1,C1,2025-01-03 12:00:00,99.90,PLN,completed,web\n"
        "O2,C2,2025-01-04 12:00:00,50.00,PLN,cancelled,web\n"
    )
    (data / "order_items.csv").write_text(
        "order_id,sku,quantity,unit_price,category,tags\n"
        "O1,S1,2,20.00,tops,new;eco\n"
        "O1,S2,1,59.90,shoes,\n"
        "O2,S3,1,50.00,tops,new\n"  # its order is cancelled
    )
    assert _floor_module().main([str(data)]) == 0
    out = capsys.readouterr().out
    # E1 (1 point) and E3 (-50) credit, E2's type earns nothing; O1 earns floor(99.90) = 99
    # and its `new` item floor(2 x 20.00) = 40; the cancelled O2 and its item earn nothing.
    assert "4 ledger entries (90 points)" in out
    for step in ("read events.csv", "ledger: event credits", "ledger.csv", "commit", "total"):
        assert step in out


def test_floor_says_where_the_data_comes_from(tmp_path, capsys):
    assert _floor_module().main([str(tmp_path)]) == 2
    assert "bench/gen_data.py" in capsys.readouterr().err
