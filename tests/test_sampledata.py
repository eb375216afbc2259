"""Sample data: reproducible, true to the data contract, consistent across files, and
near the rates asked for."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from loyalty_cli import sampledata
from loyalty_cli.columns import DUCKDB_TYPES, SOURCE_COLUMNS
from loyalty_cli.sampledata import DEFAULT_REWARD_IDS, generate, generate_day

START = date(2025, 1, 1)
DAYS = 120
SMALL: dict[str, Any] = {"customers": 150, "days": DAYS, "seed": 11}
RATES: dict[str, Any] = {"customers": 3000, "days": 365, "seed": 3}


def _read(path: Path, source: str) -> str:
    """read_csv of an export with the contract's column types (lists and JSON as text)."""
    columns = {
        name: "VARCHAR" if kind in ("list", "json") else DUCKDB_TYPES[kind]
        for name, (kind, _) in SOURCE_COLUMNS[source].items()
    }
    spec = ", ".join(f"'{name}': '{kind}'" for name, kind in columns.items())
    return f"read_csv('{path}', header = true, columns = {{{spec}}})"


def _load(folder: Path) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    for source in SOURCE_COLUMNS:
        con.execute(
            f"CREATE TABLE {source} AS SELECT * FROM {_read(folder / f'{source}.csv', source)}"
        )
    return con


def _one(con: duckdb.DuckDBPyConnection, sql: str) -> Any:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("small")
    return out, generate(out, **SMALL)


@pytest.fixture(scope="module")
def db(small: tuple[Path, dict[str, int]]) -> duckdb.DuckDBPyConnection:
    return _load(small[0])


@pytest.fixture(scope="module")
def rates(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    return _load(_rates_dir(tmp_path_factory))


def _rates_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rates")
    generate(out, **RATES)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# --- reproducibility ---------------------------------------------------------------------


def test_same_parameters_give_byte_identical_files(
    small: tuple[Path, dict[str, int]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sampledata, "THREADS", 1)  # and whatever the thread count
    generate(tmp_path, **SMALL)
    assert _files(tmp_path) == _files(small[0])


def test_another_seed_gives_other_data(small: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    generate(tmp_path, **(SMALL | {"seed": 12}))
    assert (tmp_path / "orders.csv").read_bytes() != (small[0] / "orders.csv").read_bytes()


def test_counts_returned_are_the_rows_written(small: tuple[Path, dict[str, int]]) -> None:
    out, counts = small
    assert set(counts) == {f"{s}.csv" for s in SOURCE_COLUMNS}
    for name, rows in counts.items():
        lines = (out / name).read_text(encoding="utf-8").splitlines()
        header = lines[0].split(",")
        assert header == list(SOURCE_COLUMNS[name.removesuffix(".csv")])
        assert rows == len(lines) - 1  # no embedded newlines in any cell


# --- referential integrity ---------------------------------------------------------------


def test_ids_are_unique(db: duckdb.DuckDBPyConnection) -> None:
    for table, key in [
        ("customers", "customer_id"),
        ("orders", "order_id"),
        ("events", "event_id"),
        ("redemptions", "redemption_id"),
        ("adjustments", "adjustment_id"),
        ("returns", "(order_id, returned_at, amount)"),
        ("customers", "email"),
    ]:
        sql = f"SELECT count(*) - count(DISTINCT {key}) FROM {table} WHERE {key} IS NOT NULL"
        dupes = _one(db, sql)
        assert dupes == 0, table


def test_rows_reference_known_customers_after_they_joined(db: duckdb.DuckDBPyConnection) -> None:
    end = START + timedelta(days=DAYS)
    for table, ts in [
        ("orders", "ordered_at"),
        ("events", "occurred_at"),
        ("redemptions", "requested_at"),
        ("adjustments", "created_at"),
    ]:
        bad = _one(
            db,
            f"""SELECT count(*) FROM {table} t LEFT JOIN customers c USING (customer_id)
                WHERE c.customer_id IS NULL OR t.{ts} <= c.joined_at
                   OR t.{ts} < DATE '{START}' OR t.{ts} >= DATE '{end}'""",
        )
        assert bad == 0, table


def test_order_total_is_the_exact_sum_of_its_items(db: duckdb.DuckDBPyConnection) -> None:
    bad = _one(
        db,
        """SELECT count(*) FROM orders o FULL JOIN (
             SELECT order_id, sum(quantity * unit_price) AS s FROM order_items GROUP BY order_id
           ) i USING (order_id)
           WHERE o.total IS DISTINCT FROM i.s OR o.total <= 0""",
    )
    assert bad == 0
    assert _one(db, "SELECT count(*) FROM orders") > 0


def test_returns_follow_their_order_and_stay_within_its_total(
    db: duckdb.DuckDBPyConnection,
) -> None:
    end = START + timedelta(days=DAYS)
    bad = _one(
        db,
        f"""SELECT count(*) FROM returns r LEFT JOIN orders o USING (order_id)
            WHERE o.order_id IS NULL OR o.status <> 'completed' OR r.amount <= 0
               OR r.returned_at <= o.ordered_at OR r.returned_at >= DATE '{end}'""",
    )
    assert bad == 0
    over = _one(
        db,
        """SELECT count(*) FROM (SELECT order_id, sum(amount) AS s FROM returns GROUP BY ALL)
           JOIN orders USING (order_id) WHERE s > total""",
    )
    assert over == 0
    full, partial, most = db.execute(
        """SELECT bool_or(s = total), bool_or(s < total), max(n) FROM (
             SELECT order_id, sum(amount) AS s, count(*) AS n FROM returns GROUP BY ALL
           ) JOIN orders USING (order_id)"""
    ).fetchone()  # type: ignore[misc]
    assert full and partial and most >= 2  # several returns of one order


def test_referrals_point_to_earlier_customers(db: duckdb.DuckDBPyConnection) -> None:
    bad = _one(
        db,
        """SELECT count(*) FROM customers c
           LEFT JOIN customers r ON r.customer_id = c.referred_by
           WHERE c.referred_by IS NOT NULL
             AND (r.customer_id IS NULL OR r.joined_at > c.joined_at)""",
    )
    assert bad == 0


def test_values_are_in_their_domains(db: duckdb.DuckDBPyConnection) -> None:
    assert {r[0] for r in db.execute("SELECT DISTINCT currency FROM orders").fetchall()} == {"PLN"}
    assert {r[0] for r in db.execute("SELECT DISTINCT status FROM orders").fetchall()} <= {
        "completed",
        "cancelled",
    }
    assert {r[0] for r in db.execute("SELECT DISTINCT channel FROM orders").fetchall()} == {
        "web",
        "app",
        "store",
    }
    assert _one(db, "SELECT count(*) FROM order_items WHERE quantity NOT BETWEEN 1 AND 3") == 0
    assert _one(db, "SELECT count(*) FROM order_items WHERE unit_price <= 0") == 0
    types = {r[0] for r in db.execute("SELECT DISTINCT type FROM events").fetchall()}
    assert {"page_view", "email_open", "add_to_cart", "cart_abandoned"} <= types
    rewards = {r[0] for r in db.execute("SELECT DISTINCT reward_id FROM redemptions").fetchall()}
    assert rewards <= set(DEFAULT_REWARD_IDS)
    for (props,) in db.execute("SELECT properties FROM events").fetchall():
        assert isinstance(json.loads(props), dict)


def test_times_avoid_the_night(db: duckdb.DuckDBPyConnection) -> None:
    """Shop hours for orders; nothing in the hours a DST change can skip or repeat."""
    assert _one(db, "SELECT count(*) FROM orders WHERE hour(ordered_at) NOT BETWEEN 7 AND 22") == 0
    store_at_night = _one(
        db,
        """SELECT count(*) FROM orders
           WHERE channel = 'store' AND hour(ordered_at) NOT BETWEEN 10 AND 19
             AND ordered_at::DATE > (SELECT joined_at::DATE FROM customers c
                                      WHERE c.customer_id = orders.customer_id)""",
    )
    assert store_at_night == 0
    for table, ts in [("events", "occurred_at"), ("customers", "joined_at")]:
        assert _one(db, f"SELECT count(*) FROM {table} WHERE hour({ts}) < 6") == 0


# --- realism and rates -------------------------------------------------------------------


def test_customers_look_like_a_shops(rates: duckdb.DuckDBPyConnection) -> None:
    row = rates.execute(
        f"""SELECT count(*), avg((email IS NULL)::INT), avg((phone IS NULL)::INT),
             avg((referred_by IS NOT NULL)::INT),
             count(*) FILTER (strftime(birth_date, '%m-%d') = '02-29'),
             avg((joined_at < DATE '{START}')::INT), avg((locale = 'en-GB')::INT),
             count(*) FILTER (phone LIKE '+48 6__ ___ ___'),
             count(*) FILTER (phone SIMILAR TO '[5-8][0-9]{{8}}'),
             count(*) FILTER (regexp_replace(phone, '[^0-9]', '', 'g')
                              NOT SIMILAR TO '(48)?[5-8][0-9]{{8}}'),
             count(*) FILTER (regexp_matches(first_name || last_name, '[ąćęłńóśźżĄĆĘŁŃÓŚŹŻ]'))
           FROM customers"""
    ).fetchone()
    assert row is not None
    n, no_email, no_phone, referred, feb29, before, en, intl, local, invalid, diacritics = row
    assert n == 3000
    assert 0.02 < no_email < 0.10 and 0.03 < no_phone < 0.12
    assert 0.03 < referred < 0.07
    assert feb29 >= 5 and 0.1 < before < 0.3 and 0.03 < en < 0.15
    assert intl > 0 and local > 0 and 10 <= invalid <= 200 and diacritics > 300


def test_counts_are_near_the_requested_rates(rates: duckdb.DuckDBPyConnection) -> None:
    orders, items, events, cancelled, returned, new = rates.execute(
        """SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM order_items),
             (SELECT count(*) FROM events),
             (SELECT avg((status = 'cancelled')::INT) FROM orders),
             (SELECT count(DISTINCT order_id) FROM returns) / (SELECT count(*) FROM orders),
             (SELECT avg(coalesce(list_contains(string_split(tags, ';'), 'new'), false)::INT)
              FROM order_items)"""
    ).fetchone()  # type: ignore[misc]
    n = RATES["customers"]
    assert 0.85 * 10 * n < orders < 1.15 * 10 * n
    assert 2.3 < items / orders < 2.7
    assert 0.85 * 100 * n < events < 1.15 * 100 * n
    assert 0.01 < cancelled < 0.03
    assert 0.035 < returned < 0.06  # the last month's returns are still to come
    assert 0.15 < new < 0.25


def test_activity_is_heavy_tailed(rates: duckdb.DuckDBPyConnection) -> None:
    none, one, busy = rates.execute(
        """SELECT count(*) FILTER (n = 0), count(*) FILTER (n = 1), count(*) FILTER (n >= 50)
           FROM (SELECT c.customer_id, count(o.order_id) AS n
                 FROM customers c LEFT JOIN orders o USING (customer_id) GROUP BY ALL)"""
    ).fetchone()  # type: ignore[misc]
    n = RATES["customers"]
    assert 0.05 * n < none < 0.2 * n
    assert 0.2 * n < one < 0.4 * n
    assert busy > 0.01 * n


def test_demo_preset_is_a_few_hundred_kilobytes(tmp_path: Path) -> None:
    counts = generate(tmp_path, **sampledata.DEMO)  # type: ignore[arg-type]
    size = sum((tmp_path / name).stat().st_size for name in counts)
    assert 200_000 < size < 900_000
    assert counts["orders.csv"] > 1000 and counts["events.csv"] > 1000


# --- nightly deltas, formats, parameters -------------------------------------------------


def test_daily_split_and_generate_day_agree(tmp_path: Path) -> None:
    split_from = START + timedelta(days=DAYS - 5)
    counts = generate(tmp_path / "all", split_daily_from=split_from, **SMALL)
    whole = generate(tmp_path / "whole", **SMALL)
    for source in sampledata.DAILY_SOURCES:
        parts = [counts[f"{source}.csv"]] + [
            counts[f"{source}-{split_from + timedelta(days=d)}.csv"] for d in range(5)
        ]
        assert sum(parts) == whole[f"{source}.csv"], source

    day = split_from + timedelta(days=2)
    nightly = generate_day(tmp_path / "night", day, **SMALL)
    for source in sampledata.DAILY_SOURCES:
        assert (tmp_path / "night" / f"{source}.csv").read_bytes() == (
            tmp_path / "all" / f"{source}-{day}.csv"
        ).read_bytes(), source
    con = _load(tmp_path / "night")
    assert _one(con, f"SELECT max(joined_at) < DATE '{day + timedelta(days=1)}' FROM customers")
    assert nightly["customers.csv"] <= whole["customers.csv"]


def test_the_night_after_the_period_continues_it(tmp_path: Path) -> None:
    generate(tmp_path / "history", **SMALL)
    day = START + timedelta(days=DAYS)
    counts = generate_day(tmp_path / "night", day, **SMALL)
    assert counts["orders.csv"] > 0 and counts["events.csv"] > 0
    night, history = _load(tmp_path / "night"), _load(tmp_path / "history")
    assert _one(night, f"SELECT min(ordered_at)::DATE = DATE '{day}' FROM orders")
    returned = {r[0] for r in night.execute("SELECT order_id FROM returns").fetchall()}
    known = {r[0] for r in history.execute("SELECT order_id FROM orders").fetchall()}
    known |= {r[0] for r in night.execute("SELECT order_id FROM orders").fetchall()}
    assert returned <= known
    with pytest.raises(ValueError):
        generate_day(tmp_path / "x", START - timedelta(days=1), **SMALL)


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_other_formats_hold_the_same_rows(
    fmt: str, small: tuple[Path, dict[str, int]], tmp_path: Path
) -> None:
    counts = generate(tmp_path, fmt=fmt, **SMALL)
    assert {k.rsplit(".", 1)[0]: v for k, v in counts.items()} == {
        k.removesuffix(".csv"): v for k, v in small[1].items()
    }
    con = duckdb.connect()
    total = _one(con, f"SELECT sum(total::DECIMAL(18, 2)) FROM '{tmp_path / ('orders.' + fmt)}'")
    assert total == _one(con, f"SELECT sum(total) FROM {_read(small[0] / 'orders.csv', 'orders')}")


def test_parameters_shape_the_data(tmp_path: Path) -> None:
    counts = generate(
        tmp_path,
        customers=40,
        days=30,
        currency="EUR",
        redemptions=False,
        reward_ids=["gift"],
        events_per_customer=0,
        returns_share=0,
    )
    assert "redemptions.csv" not in counts and "adjustments.csv" not in counts
    assert counts["events.csv"] == 0 and counts["returns.csv"] == 0
    con = duckdb.connect()
    assert _one(con, f"SELECT min(currency) = 'EUR' FROM '{tmp_path / 'orders.csv'}'")


@pytest.mark.parametrize(
    "bad",
    [{"customers": 0}, {"days": 0}, {"items_per_order": 0.5}, {"returns_share": 2}, {"fmt": "xls"}],
)
def test_bad_parameters_are_refused(bad: dict[str, object], tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path, **bad)  # type: ignore[arg-type]
