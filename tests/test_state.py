"""The state file: schema versions and migrations, and the connection's guard against
rows DuckDB hides behind an empty append."""

from __future__ import annotations

import datetime as dt

import duckdb

from loyalty_cli import state


def _v1_state(path) -> None:
    """A state file as schema version 1 left it, with cap room in its text periods."""
    con = duckdb.connect(str(path))
    for stmt in state.MIGRATIONS[1]:
        con.execute(stmt)
    con.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    con.execute(
        """INSERT INTO cap_usage VALUES
        ('A', 'visit', '2025-12-29', 3),
        ('A', 'newsletter', '2026-W01', 10),
        ('A', 'newsletter', '2020-W53', 4),
        ('B', 'monthly', '2026-02', 7),
        ('B', 'yearly', '2026', 1),
        ('B', 'once', 'ever', 2)"""
    )
    con.execute(
        """INSERT INTO orders (order_id, customer_id, day, total, status, returned) VALUES
        ('o1', 'A', DATE '2026-01-01', 100, 'completed', 20),
        ('o2', 'A', DATE '2026-01-01', 50, 'completed', 0),
        ('o3', 'A', DATE '2026-01-05', 30, 'cancelled', 0),
        ('o4', 'A', DATE '2026-01-10', 10, 'completed', 15),
        ('o5', 'B', DATE '2026-02-01', 70, 'completed', 0)"""
    )
    con.close()


def _tables(con) -> set[str]:
    return {name for (name,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()}


def test_fresh_state_is_at_the_current_version(tmp_path):
    con = state.connect(tmp_path / "s.duckdb")
    assert state.schema_version(con) == state.SCHEMA_VERSION == 8
    # Cap room is read from the ledger (migration 4): no table of its own.
    assert "cap_usage" not in _tables(con)
    assert {"ledger", "lots", "order_days", "events_seen"} <= _tables(con)


def test_a_version_1_state_migrates_to_the_current_version(tmp_path):
    path = tmp_path / "s.duckdb"
    _v1_state(path)  # its cap room in text periods: migration 2 converts, 4 drops it
    con = state.connect(path)
    assert state.schema_version(con) == 8
    assert "cap_usage" not in _tables(con)
    assert con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("8",)
    # Migration 8: the runs keep their warnings too (a rerun reports the day's runs).
    columns = [r[0] for r in con.execute("DESCRIBE runs").fetchall()]
    assert columns[-2:] == ["counts", "warnings"]


def test_migration_is_applied_once(tmp_path):
    path = tmp_path / "s.duckdb"
    _v1_state(path)
    state.connect(path).close()
    con = state.connect(path)
    assert state.schema_version(con) == 8
    assert con.execute("SELECT count(*) FROM order_days").fetchone()[0] == 3


def test_migration_3_builds_order_days_from_the_orders(tmp_path):
    path = tmp_path / "s.duckdb"
    _v1_state(path)
    con = state.connect(path)
    rows = con.execute(
        "SELECT customer_id, day, spend, gap FROM order_days ORDER BY customer_id, day"
    ).fetchall()
    # A: Jan 1 is 80 + 50; the cancelled order of Jan 5 is no order day; Jan 10 was
    # returned in full (never below 0), 9 days after Jan 1.
    assert [(c, str(d), float(s), g) for c, d, s, g in rows] == [
        ("A", "2026-01-01", 130.0, None),
        ("A", "2026-01-10", 0.0, 9),
        ("B", "2026-02-01", 70.0, None),
    ]


def test_migration_5_deletes_released_lots_and_keeps_their_highest_id(tmp_path):
    path = tmp_path / "s.duckdb"
    _v1_state(path)
    con = duckdb.connect(str(path))
    con.execute(
        """INSERT INTO lots (lot_id, customer_id, amount, remaining, status, kind) VALUES
        (1, 'A', 10, 4, 'available', 'points'),
        (2, 'A', 30, 0, 'released', 'earn'),
        (3, 'B', 20, 20, 'pending', 'earn'),
        (4, 'B', 50, 0, 'released', 'earn')"""
    )
    con.close()
    con = state.connect(path)
    assert con.execute("SELECT lot_id, status FROM lots ORDER BY lot_id").fetchall() == [
        (1, "available"),
        (3, "pending"),
    ]
    assert state.get_meta(con, "lots_removed_up_to") == "4"


def test_migration_6_dates_the_cancellation_of_orders_cancelled_after_processing(tmp_path):
    """An order processed as completed and re-exported cancelled was known by what was
    returned (its whole remaining amount); its latest return's day is the cancellation's.
    An order cancelled when first processed had nothing returned: no day."""
    path = tmp_path / "s.duckdb"
    _v1_state(path)
    con = duckdb.connect(str(path))
    con.execute(
        """INSERT INTO orders (order_id, customer_id, day, total, status, returned) VALUES
        ('o6', 'B', DATE '2026-02-02', 40, 'cancelled', 40)"""
    )
    con.execute(
        """INSERT INTO returns (order_id, day) VALUES
        ('o6', DATE '2026-02-05'), ('o6', DATE '2026-02-09'), ('o1', DATE '2026-01-03')"""
    )
    con.close()
    con = state.connect(path)
    assert con.execute(
        "SELECT order_id, cancelled_on FROM orders WHERE cancelled_on IS NOT NULL"
    ).fetchall() == [("o6", dt.date(2026, 2, 9))]
    assert con.execute("SELECT count(*) FROM orders WHERE cancelled_on IS NULL").fetchone() == (5,)


def test_read_only_opens_only_a_current_loyalty_state(tmp_path):
    import pytest

    from loyalty_cli.diagnostics import LoyaltyError

    old = tmp_path / "old.duckdb"
    _v1_state(old)
    with pytest.raises(LoyaltyError) as err:
        state.connect(old, read_only=True)
    assert err.value.diagnostics[0].code == "D605"
    assert "schema version 1; this loyalty reads version 8" in err.value.diagnostics[0].message
    assert "next `loyalty run`" in err.value.diagnostics[0].hint
    # Upgradable (a plan upgrades a copy): opened as it is, still version 1 on disk.
    con = state.connect(old, read_only=True, upgradable=True)
    assert state.schema_version(con) == 1
    con.close()
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    with pytest.raises(LoyaltyError) as err:
        state.connect(empty, read_only=True)
    assert err.value.diagnostics[0].message == "not a loyalty state file (it has no loyalty tables)"


def test_another_database_is_not_made_a_state(tmp_path):
    import pytest

    from loyalty_cli.diagnostics import LoyaltyError

    path = tmp_path / "shop.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE sales (id INTEGER)")
    con.execute("CREATE TABLE stock (id INTEGER)")
    con.close()
    for read_only in (False, True):
        with pytest.raises(LoyaltyError) as err:
            state.connect(path, read_only=read_only)
        d = err.value.diagnostics[0]
        assert d.code == "D605" and d.path == str(path)
        assert d.message == (
            "not a loyalty state file: it is a DuckDB database holding other tables (sales, stock)"
        )
    con = duckdb.connect(str(path))
    assert _tables(con) == {"sales", "stock"}


# -- the connection's guard against rows hidden behind an empty append (StateConnection) --

# More rows than one DuckDB row group (122,880): a parallel append in insertion order.
MANY = 300_000


def _guard_state(tmp_path):
    con = state.connect(tmp_path / "s.duckdb")
    con.execute("SET threads = 2")
    con.execute(
        f"CREATE TEMP TABLE src AS SELECT 'C' || lpad(CAST(i AS VARCHAR), 7, '0') AS id, "
        f"i AS n FROM range({MANY}) r(i)"
    )
    con.execute("CREATE TABLE t (id VARCHAR, n BIGINT)")
    return con


def _seen(con, table: str) -> tuple[int, int, int]:
    """count(*) (row numbers), rows a parallel scan returns, and their sum of n."""
    total = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    scanned = len(con.execute(f"SELECT n FROM {table}").fetchall())
    summed = con.execute(f"SELECT coalesce(sum(n), -1) FROM {table}").fetchone()[0]
    return total, scanned, summed


def test_many_rows_added_after_an_empty_insert_are_seen_in_the_transaction(tmp_path):
    con = _guard_state(tmp_path)
    every = MANY * (MANY - 1) // 2  # 0 + 1 + ... + (MANY - 1)
    con.execute("BEGIN TRANSACTION")
    assert con.execute("INSERT INTO t SELECT * FROM src WHERE n < 0").fetchone() == (0,)
    assert con.execute("INSERT INTO t SELECT * FROM src").fetchone() == (MANY,)
    assert _seen(con, "t") == (MANY, MANY, every)
    # An empty insert right after a parallel one, then another parallel one.
    con.execute("INSERT INTO t SELECT * FROM src WHERE n < 0")
    con.execute("INSERT INTO t SELECT * FROM src")
    assert _seen(con, "t") == (2 * MANY, 2 * MANY, 2 * every)
    con.execute("COMMIT")
    assert _seen(con, "t") == (2 * MANY, 2 * MANY, 2 * every)
    assert con.execute("SELECT current_setting('threads')").fetchone()[0] == 2
    con.close()


def test_a_temp_table_created_empty_then_filled_is_seen_whole(tmp_path):
    con = _guard_state(tmp_path)
    con.execute("BEGIN TRANSACTION")
    assert con.execute("CREATE TEMP TABLE e AS SELECT * FROM src WHERE false").fetchone() == (0,)
    con.execute("INSERT INTO e SELECT * FROM src WHERE n % 2 = 0")
    half = MANY // 2
    assert _seen(con, "e") == (half, half, 2 * (half * (half - 1) // 2))
    con.execute("ROLLBACK")
    con.close()


def test_the_guard_returns_what_duckdb_returns(tmp_path):
    con = _guard_state(tmp_path)
    assert con.execute("INSERT INTO t VALUES ('a', 1), ('b', 2)").fetchall() == [(2,)]
    assert con.execute("CREATE TEMP TABLE x AS SELECT * FROM t").fetchone() == (2,)
    assert con.execute("SELECT id FROM t ORDER BY n").fetchall() == [("a",), ("b",)]
    assert con.execute("SELECT ? + 1", [41]).fetchone() == (42,)
    con.close()


def test_an_empty_file_is_not_taken_for_a_state(tmp_path):
    import pytest

    from loyalty_cli.diagnostics import LoyaltyError

    path = tmp_path / "s.duckdb"
    path.touch()
    with pytest.raises(LoyaltyError) as err:
        state.connect(path)
    diag = err.value.diagnostics[0]
    assert (diag.message, diag.hint) == (
        "the state file is empty (0 bytes), not a state",
        "Remove it: the next `loyalty run` creates a new state there.",
    )
    assert path.stat().st_size == 0
