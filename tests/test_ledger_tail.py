"""The ledger's last row groups are packed after a bulk run (ledger.compact_tail)."""

from __future__ import annotations

import duckdb
from enginekit import Shop, customer, event

from loyalty_cli import state
from loyalty_cli.engine import ledger


def _groups(con) -> list[int]:
    return [
        n
        for _, n in con.execute(
            """SELECT row_group_id, sum(count) FROM pragma_storage_info('ledger')
            WHERE column_id = 0 AND segment_type <> 'VALIDITY' GROUP BY 1 ORDER BY 1"""
        ).fetchall()
    ]


def _append(con, first: int, n: int) -> None:
    """n entries with ids first..first+n-1 in one bulk transaction, as a run appends them."""
    con.execute("BEGIN TRANSACTION")
    con.execute(
        f"""INSERT INTO ledger (entry_id, run_on, customer_id, kind, points, pending, rule_id,
                                source_id, occurred_at, occurred_on, reason, shortfall, lot_id)
        SELECT {first} + i, DATE '2026-01-01', 'C' || (i % 1000), 'earn', 1, 0, 'r',
               's' || ({first} + i), TIMESTAMP '2026-01-01 10:00', DATE '2026-01-01', NULL, 0, 1
        FROM range({n}) t(i)"""
    )
    con.execute("COMMIT")
    con.execute("CHECKPOINT")


def test_a_partly_filled_row_group_before_the_last_is_packed(tmp_path):
    con = state.connect(tmp_path / "s.duckdb")
    _append(con, 1, 300_000)
    _append(con, 300_001, 200_000)
    before = _groups(con)
    size = max(before)
    assert any(n < size for n in before[:-1])  # a partly filled one before the last
    entries = con.execute("SELECT entry_id FROM ledger ORDER BY rowid").fetchall()

    ledger.compact_tail(con)

    after = _groups(con)
    assert sum(after) == 500_000
    assert all(n == size for n in after[:-1])  # only the last one partly filled
    assert con.execute("SELECT entry_id FROM ledger ORDER BY rowid").fetchall() == entries
    assert con.execute("SELECT sum(points), count(DISTINCT source_id) FROM ledger").fetchone() == (
        500_000,
        500_000,
    )


def test_nothing_to_pack_changes_nothing(tmp_path):
    con = state.connect(tmp_path / "s.duckdb")
    _append(con, 1, 1000)
    ledger.compact_tail(con)
    assert _groups(con) == [1000]


def test_a_run_packs_after_many_entries_and_a_failure_is_not_the_runs(tmp_path, monkeypatch):
    calls = []

    def failing(con):
        calls.append(con.execute("SELECT count(*) FROM ledger").fetchone()[0])
        raise duckdb.Error("no room")

    shop = Shop(tmp_path, "earning:\n  rules:\n    - {id: visit, on: event, points: 1}\n")
    shop.add("customers", customer("A"))
    shop.add("events", event("e1", "A", "2026-03-01 10:00"), event("e2", "A", "2026-03-01 11:00"))
    monkeypatch.setattr(ledger, "compact_tail", failing)
    monkeypatch.setattr(ledger, "TAIL_CHECK_ENTRIES", 1)
    result = shop.run("2026-03-01")  # 2 entries made: more than 1
    assert calls == [2]
    assert result.status == "ok" and (shop.out / "2026-03-01" / "ledger.csv").exists()
    monkeypatch.setattr(ledger, "TAIL_CHECK_ENTRIES", 2)
    shop.add("events", event("e3", "A", "2026-03-02 10:00"))
    shop.run("2026-03-02")  # 1 entry: not packed
    assert calls == [2]
