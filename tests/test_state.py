"""The state file: schema versions and migrations."""

from __future__ import annotations

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


def test_fresh_state_is_at_the_current_version(tmp_path):
    con = state.connect(tmp_path / "s.duckdb")
    assert state.schema_version(con) == state.SCHEMA_VERSION == 3
    types = dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns "
            "WHERE table_name = 'cap_usage'"
        ).fetchall()
    )
    assert types == {
        "customer_id": "VARCHAR",
        "rule_id": "VARCHAR",
        "period": "BIGINT",
        "used": "BIGINT",
    }


def test_migration_2_turns_cap_periods_into_numbers(tmp_path):
    path = tmp_path / "s.duckdb"
    _v1_state(path)
    con = state.connect(path)
    assert state.schema_version(con) == 3
    rows = con.execute(
        "SELECT customer_id, rule_id, period, used FROM cap_usage ORDER BY customer_id, rule_id, "
        "period"
    ).fetchall()
    # 2025-12-29 is day 20451 after 1970-01-01 (55 years, 14 of them leap: 55*365 + 14 = 20089
    # days to 2025-01-01, plus 362 days into 2025).
    assert rows == [
        ("A", "newsletter", 202053, 4),
        ("A", "newsletter", 202601, 10),
        ("A", "visit", 20089 + 362, 3),
        ("B", "monthly", 202602, 7),
        ("B", "once", 0, 2),
        ("B", "yearly", 2026, 1),
    ]


def test_migration_is_applied_once(tmp_path):
    path = tmp_path / "s.duckdb"
    _v1_state(path)
    state.connect(path).close()
    con = state.connect(path)
    assert con.execute("SELECT count(*) FROM cap_usage").fetchone()[0] == 6


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
