"""Stage 1: the loader's shortcuts give what the general conversions give (SPEC 3, 9.1, 9.19).

The loader takes cheap tests first (plain text is not trimmed, local times skip the zone
pattern, plain money skips the separator removal, consecutive items skip the window). Each
test here loads values on both sides of such a test and compares them with the general SQL
run directly, or with ranks worked out by hand.
"""

from __future__ import annotations

import csv
import io
from datetime import date

import duckdb

from loyalty_cli.engine.sources import csv_buffer_size, load_sources
from loyalty_cli.engine.timeutil import local_timestamp_sql, sql_literal

AS_OF = date(2026, 6, 30)
NBSP, NNBSP, IDEOGRAPHIC = "\u00a0", "\u202f", "\u3000"


def write_csv(path, header, rows):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")


def load(tmp_path, sources, as_of=AS_OF):
    con = duckdb.connect()
    result = load_sources(con, sources, tmp_path, as_of, "Europe/Warsaw", "PLN")
    return con, result


def customers(tmp_path, ids):
    write_csv(
        tmp_path / "customers.csv", ["customer_id", "joined_at"], [[i, "2026-01-01"] for i in ids]
    )


def test_text_is_trimmed_exactly_as_trim_does(tmp_path):
    """Values with and without spaces, Unicode spaces, control characters and non-ASCII text."""
    values = [
        "C1",
        " C1",
        "C1 ",
        "  C1  ",
        f"{NBSP}C1",
        f"C1{NNBSP}",
        f"{IDEOGRAPHIC}C1{NBSP}",
        "\tC1",
        "C1\t",
        "\x7fC1",
        "!",
        "Łódź",
        " Łódź ",
        "Zo fia",
        "Zo fia ",
        f"{NBSP}",
        " ",
        "  ",
        "",
        "a b c",
        "é",
    ]
    rows = [[f"O{i}", "C1", "2026-05-01 10:00", "1", v] for i, v in enumerate(values)]
    customers(tmp_path, ["C1"])
    write_csv(
        tmp_path / "orders.csv", ["order_id", "customer_id", "ordered_at", "total", "channel"], rows
    )
    con, result = load(
        tmp_path, {"customers": {"path": "customers.csv"}, "orders": {"path": "orders.csv"}}
    )
    loaded = con.execute(f"SELECT channel FROM {result.tables['orders']}").fetchall()
    expected = [con.execute("SELECT NULLIF(trim(?), '')", [v]).fetchone() for v in values]
    assert loaded == expected


def test_timestamps_with_and_without_zones_read_as_the_general_conversion(tmp_path):
    stamps = [
        "2026-05-01 10:00:00",
        "2026-05-01T10:00:00",
        "2026-05-01 10:00",
        "2026-05-01",
        "2026-05-01 10:00:00Z",
        "2026-05-01T10:00:00z",
        "2026-05-01 10:00:00+02",
        "2026-05-01 10:00:00+0530",
        "2026-05-01 10:00:00-05:00",
        "2026-05-01 10:00:00.250-03:30",
        "2026-05-01 10:00:00 UTC",
        "2026-05-01 10:00:00 GMT",
        "2026-05-01 10:00:00 America/New_York",
        "2026-05-01 10:00:00 EST",
        "2026-03-29 02:30:00",
        "2025-10-26 02:30:00",
        "2026-05-01 25:00:00",
        "yesterday",
    ]
    rows = [[f"O{i}", "C1", s, "1"] for i, s in enumerate(stamps)]
    customers(tmp_path, ["C1"])
    write_csv(tmp_path / "orders.csv", ["order_id", "customer_id", "ordered_at", "total"], rows)
    con, result = load(
        tmp_path, {"customers": {"path": "customers.csv"}, "orders": {"path": "orders.csv"}}
    )
    loaded = dict(
        con.execute(f"SELECT order_id, ordered_at FROM {result.tables['orders']}").fetchall()
    )
    for i, text in enumerate(stamps):
        general = local_timestamp_sql(sql_literal(text), "Europe/Warsaw")
        expected = con.execute(f"SELECT {general}").fetchone()[0]
        assert loaded.get(f"O{i}") == expected, text


def test_money_with_and_without_separators_reads_the_same(tmp_path):
    totals = ["12.50", "1234", "0.5", "1 234.50", f"1{NBSP}234.5", f"12{NNBSP}000", "+7", "1_0"]
    rows = [[f"O{i}", "C1", "2026-05-01 10:00", t] for i, t in enumerate(totals)]
    customers(tmp_path, ["C1"])
    write_csv(tmp_path / "orders.csv", ["order_id", "customer_id", "ordered_at", "total"], rows)
    con, result = load(
        tmp_path, {"customers": {"path": "customers.csv"}, "orders": {"path": "orders.csv"}}
    )
    loaded = con.execute(f"SELECT order_id, CAST(total AS VARCHAR) FROM {result.tables['orders']}")
    assert loaded.fetchall() == [
        ("O0", "12.50"),
        ("O1", "1234.00"),
        ("O2", "0.50"),
        ("O3", "1234.50"),
        ("O4", "1234.50"),
        ("O5", "12000.00"),
        ("O6", "7.00"),
    ]
    reasons = con.execute(f"SELECT key, reason FROM {result.rejects_table}").fetchall()
    assert reasons == [("O7", "bad_number")]


def test_item_ranks_for_consecutive_scattered_and_interrupted_orders(tmp_path):
    """O1 consecutive, O2 scattered around O3, O4 with a rejected item between good ones."""
    items = [
        ["O1", "A", "1", "1"],
        ["O1", "B", "1", "1"],
        ["O1", "C", "1", "1"],
        ["O2", "D", "1", "1"],
        ["O3", "E", "1", "1"],
        ["O2", "F", "1", "1"],
        ["O3", "G", "1", "1"],
        ["O4", "H", "1", "1"],
        ["O4", "I", "x", "1"],
        ["O4", "J", "1", "1"],
        ["O5", "K", "1", "1"],
    ]
    orders = [[f"O{i}", "C1", "2026-05-01 10:00", "1"] for i in range(1, 6)]
    customers(tmp_path, ["C1"])
    write_csv(tmp_path / "orders.csv", ["order_id", "customer_id", "ordered_at", "total"], orders)
    write_csv(tmp_path / "items.csv", ["order_id", "sku", "quantity", "unit_price"], items)
    con, result = load(
        tmp_path,
        {
            "customers": {"path": "customers.csv"},
            "orders": {"path": "orders.csv"},
            "order_items": {"path": "items.csv"},
        },
    )
    table = result.tables["order_items"]
    assert con.execute(f"SELECT sku, item_seq, _line FROM {table} ORDER BY rowid").fetchall() == [
        ("A", 1, 2),
        ("B", 2, 3),
        ("C", 3, 4),
        ("D", 1, 5),
        ("E", 1, 6),
        ("F", 2, 7),
        ("G", 2, 8),
        ("H", 1, 9),
        ("J", 2, 11),
        ("K", 1, 12),
    ]
    assert con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name LIKE '__ls%'"
    ).fetchone() == (0,)


def test_csv_buffer_is_small_for_small_files_and_large_from_32_mb(tmp_path):
    small, big, packed = tmp_path / "small.csv", tmp_path / "big.csv", tmp_path / "a.csv.gz"
    small.write_bytes(b"x" * 1000)
    with big.open("wb") as fh:  # sparse: 32 MiB long without writing it
        fh.truncate(32 << 20)
    packed.write_bytes(b"x" * 1000)
    assert csv_buffer_size(small) == 8 << 20
    assert csv_buffer_size(str(big)) == 64 << 20
    with big.open("r+b") as fh:
        fh.truncate((32 << 20) - 1)
    assert csv_buffer_size(big) == 8 << 20
    assert csv_buffer_size(packed) == 64 << 20  # compressed: one reader thread anyway
    assert csv_buffer_size(tmp_path / "missing.csv") == 64 << 20
