"""Corners of the export loader: timestamp text around the accepted forms, CSV dialects.

Each test writes a few literal rows and compares the good rows and the rejects (file, line,
column, reason) with values worked out by hand.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import duckdb

from loyalty_cli.engine.sources import load_sources

AS_OF = date(2026, 6, 30)
CUSTOMERS = "customer_id,joined_at\nC1,2026-01-01 10:00\nC2,2026-01-02 10:00\n"
HEADER = "order_id,customer_id,ordered_at,total\n"


def load(tmp_path, files, sources=None, as_of=AS_OF, timezone="Europe/Warsaw", **kwargs):
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    sources = sources or {"customers": {"path": "customers.csv"}, "orders": {"path": "orders.csv"}}
    con = duckdb.connect()
    result = load_sources(con, sources, tmp_path, as_of, timezone, "PLN", **kwargs)
    return con, result


def rows(con, table, columns):
    return con.execute(f"SELECT {columns} FROM {table}").fetchall()


def rejects(con, result):
    return con.execute(
        f'SELECT source, file, line, "column", reason FROM {result.rejects_table}'
    ).fetchall()


def test_words_after_the_clock_time_are_not_dropped_silently(tmp_path):
    """DuckDB's cast to TIMESTAMP skips a word after the time (`10:00 PM` read as 10:00, `EST`
    as local time). Only the zones of docs/data.md are read; other words are bad_timestamp."""
    orders = HEADER + (
        "O1,C1,2026-05-01 10:00 PM,1\n"  # line 2: 12-hour clock, would be 22:00
        "O2,C1,2026-05-01 10:00:00 EST,1\n"  # line 3: an abbreviation, not a zone name
        "O3,C1,2026-05-01T10:00:00 CET,1\n"  # line 4
        "O4,C1,2026-05-01 10:00 xx,1\n"  # line 5
        "O5,C1,2026-05-01 10:00 UTC,1\n"  # 10:00 UTC = 12:00 in Warsaw (summer, +2)
        "O6,C1,2026-05-01 10:00 Europe/London,1\n"  # 10:00 BST (+1) = 09:00 UTC = 11:00
        "O7,C1,2026-05-01 10:00,1\n"  # local
        "O8,C1,2026-05-01,1\n"  # a date alone: 00:00
    )
    con, result = load(
        tmp_path, {"customers.csv": CUSTOMERS, "orders.csv": orders}, max_reject_rate=1.0
    )
    assert rows(con, result.tables["orders"], "order_id, ordered_at") == [
        ("O5", datetime(2026, 5, 1, 12, 0)),
        ("O6", datetime(2026, 5, 1, 11, 0)),
        ("O7", datetime(2026, 5, 1, 10, 0)),
        ("O8", datetime(2026, 5, 1, 0, 0)),
    ]
    assert rejects(con, result) == [
        ("orders", "orders.csv", n, "ordered_at", "bad_timestamp") for n in (2, 3, 4, 5)
    ]


def test_an_offset_after_a_space_is_read(tmp_path):
    """`2026-05-01 10:00:00 +0200` (Ruby's Time#to_s) and `... Z` with a space were rejected
    although the offset is plain."""
    orders = HEADER + (
        "O1,C1,2026-05-01 10:00:00 +0200,1\n"  # 08:00 UTC = 10:00 in Warsaw (+2)
        "O2,C1,2026-05-01 10:00:00 -05:00,1\n"  # 15:00 UTC = 17:00
        "O3,C1,2026-05-01 10:00:00 Z,1\n"  # 10:00 UTC = 12:00
        "O4,C1,2026-05-01 10:00:00  +01,1\n"  # two spaces: 09:00 UTC = 11:00
    )
    con, result = load(tmp_path, {"customers.csv": CUSTOMERS, "orders.csv": orders})
    assert rows(con, result.tables["orders"], "order_id, ordered_at") == [
        ("O1", datetime(2026, 5, 1, 10, 0)),
        ("O2", datetime(2026, 5, 1, 17, 0)),
        ("O3", datetime(2026, 5, 1, 12, 0)),
        ("O4", datetime(2026, 5, 1, 11, 0)),
    ]
    assert rejects(con, result) == []


def test_a_zoned_time_that_converts_to_before_year_1_is_bad(tmp_path):
    """`0001-01-01T00:00:00Z` (a .NET DateTime.MinValue) is 0000-12-31 19:03:58 before
    Christ in New York: it was loaded as a good row dated in year 0, and its points were
    earned on a day before Christ. Years stay within 0001-9999 after conversion too."""
    customers = (
        "customer_id,joined_at\n"
        "C1,0001-01-01T00:00:00Z\n"  # line 2: BC in New York
        "C2,0001-01-02T00:00:00Z\n"  # 0001-01-01 19:03:58 in New York (LMT -4:56:02)
    )
    orders = HEADER + "O1,C2,0001-01-01 00:30+05:00,1\n"  # 19:30 UTC the day before: BC
    con, result = load(
        tmp_path,
        {"customers.csv": customers, "orders.csv": orders},
        timezone="America/New_York",
        max_reject_rate=1.0,
    )
    assert rows(con, result.tables["customers"], "customer_id, joined_at") == [
        ("C2", datetime(1, 1, 1, 19, 3, 58)),
    ]
    assert rows(con, result.tables["orders"], "order_id") == []
    assert rejects(con, result) == [
        ("customers", "customers.csv", 2, "joined_at", "bad_timestamp"),
        ("orders", "orders.csv", 2, "ordered_at", "bad_timestamp"),
    ]


def test_zone_names_ending_in_z_and_dates_before_christ(tmp_path):
    """The `Z` of UTC was replaced wherever the text ended in z, so `Europe/Vaduz` became
    `Europe/Vadu+00:00` and the row was rejected; `2026-05-01 (BC)` was read as a date
    before Christ, for dates and timestamps alike."""
    orders = HEADER + (
        "O1,C1,2026-05-01 10:00 Europe/Vaduz,1\n"  # CEST as Warsaw: 10:00
        "O2,C1,2026-05-01 10:00 America/La_Paz,1\n"  # -04:00: 14:00 UTC = 16:00 in Warsaw
        "O3,C1,2026-05-01 (BC),1\n"  # line 4
        "O4,C1,2026-05-01 (BC) 10:00+02,1\n"  # line 5
        "O5,C1,2026-05-01 10:00z,1\n"  # 10:00 UTC = 12:00
    )
    customers = "customer_id,joined_at,birth_date\nC1,2026-01-01,\nC2,2026-01-01,1990-05-01 (BC)\n"
    sources = {
        "customers": {"path": "customers.csv"},
        "orders": {"path": "orders.csv"},
    }
    con, result = load(
        tmp_path, {"customers.csv": customers, "orders.csv": orders}, sources, max_reject_rate=1.0
    )
    assert rows(con, result.tables["orders"], "order_id, ordered_at") == [
        ("O1", datetime(2026, 5, 1, 10, 0)),
        ("O2", datetime(2026, 5, 1, 16, 0)),
        ("O5", datetime(2026, 5, 1, 12, 0)),
    ]
    assert rejects(con, result) == [
        ("customers", "customers.csv", 3, "birth_date", "bad_date"),
        ("orders", "orders.csv", 4, "ordered_at", "bad_timestamp"),
        ("orders", "orders.csv", 5, "ordered_at", "bad_timestamp"),
    ]


def test_first_record_spanning_lines_is_read_whole(tmp_path):
    """The first record was cut at its first line break to count the columns, so a headerless
    file whose first row has a quoted value with a line break (a note, an address) was
    refused with D602 'required columns column2, column3, column4 are missing'."""
    customers = (
        '"Nowak\nTrade, Ltd",C1,2026-01-01\n'  # lines 1-2: last_name, customer_id, joined_at
        "Kowal,C2,2026-01-02\n"  # line 3
        "Zima,C3,never\n"  # line 4: bad_timestamp, column shown by its position
    )
    orders = (
        "order_id,customer_id,ordered_at,total,note\r\n"
        '"O1",C1,2026-05-01,5,"a\r\nb"\r\n'  # lines 2-3
        "O2,C2,2026-05-01,x,\r\n"  # line 4: bad_number
    )
    sources = {
        "customers": {
            "path": "customers.csv",
            "csv": {"header": False},
            "columns": {"last_name": "1", "customer_id": "2", "joined_at": "3"},
        },
        "orders": {"path": "orders.csv", "extra": {"note": "varchar"}},
    }
    con, result = load(
        tmp_path, {"customers.csv": customers, "orders.csv": orders}, sources, max_reject_rate=1.0
    )
    assert rows(con, result.tables["customers"], "customer_id, last_name, _line") == [
        ("C1", "Nowak\nTrade, Ltd", 1),
        ("C2", "Kowal", 3),
    ]
    assert rows(con, result.tables["orders"], "order_id, note, _line") == [("O1", "a\r\nb", 2)]
    assert rejects(con, result) == [
        ("customers", "customers.csv", 4, "3", "bad_timestamp"),
        ("orders", "orders.csv", 4, "total", "bad_number"),
    ]


def test_headerless_file_too_narrow_names_positions_not_made_up_columns(tmp_path):
    """Without a header a missing required column was named 'column9', a name the shop never
    wrote, with the hint `did you mean {order_id: column4}`."""
    import pytest

    from loyalty_cli.diagnostics import LoyaltyError

    sources = {
        "customers": {"path": "customers.csv"},
        "orders": {"path": "orders.csv", "csv": {"header": False}, "columns": {"order_id": "9"}},
    }
    with pytest.raises(LoyaltyError) as err:
        load(tmp_path, {"customers.csv": CUSTOMERS, "orders.csv": "O1,C1,2026-05-01,1\n"}, sources)
    diag = err.value.diagnostics[0]
    assert (diag.code, diag.line) == ("D602", 1)
    assert diag.message == (
        "orders.csv: required column 'order_id' (field 9) is missing: the first row has 4 fields"
    )
    assert "column9" not in str(err.value) and "column4" not in str(err.value)


def _parquet(path, sql):
    duckdb.connect().execute(f"COPY ({sql}) TO '{path}' (FORMAT parquet)")


def test_parquet_ids_stored_as_floating_point_read_as_whole_numbers(tmp_path):
    """pandas stores an integer column with a missing value as float64: the ids 1001.0 were
    read as the text '1001.0', so no order matched its customer `1001` of customers.csv and
    every order was an unknown_customer."""
    customers = "customer_id,joined_at\n1001,2026-01-01\n7,2026-01-01\n"
    (tmp_path / "customers.csv").write_text(customers)
    _parquet(
        tmp_path / "orders.parquet",
        "SELECT * FROM (VALUES (5.0::DOUBLE, 1001.0::DOUBLE, '2026-05-01', 10.0::DOUBLE, 'web'),"
        " (6.5, 1001.0, '2026-05-02', 20.0, 'app'),"  # 6.5 is no whole number: kept as written
        " (7.0, 7.0::FLOAT, '2026-05-03', 30.0, NULL),"
        " (8.0, NULL, '2026-05-04', 40.0, NULL))"  # line 4: missing customer_id
        " t(order_id, customer_id, ordered_at, total, channel)",
    )
    sources = {"customers": {"path": "customers.csv"}, "orders": {"path": "orders.parquet"}}
    con, result = load(tmp_path, {}, sources, max_reject_rate=1.0)
    assert rows(con, result.tables["orders"], "order_id, customer_id, total") == [
        ("5", "1001", Decimal("10.00")),
        ("6.5", "1001", Decimal("20.00")),
        ("7", "7", Decimal("30.00")),
    ]
    assert rejects(con, result) == [("orders", "orders.parquet", 4, "customer_id", "missing_value")]


def test_row_width_message_counts_in_singular_and_names_the_first_row_without_header(tmp_path):
    import pytest

    from loyalty_cli.diagnostics import LoyaltyError

    orders = HEADER + "O1,C1,2026-05-01,1\n \n"  # line 3: a lone space is one field
    with pytest.raises(LoyaltyError) as err:
        load(tmp_path, {"customers.csv": CUSTOMERS, "orders.csv": orders})
    diag = err.value.diagnostics[0]
    assert (diag.code, diag.line) == ("D603", 3)
    assert diag.message == "orders.csv: the row has 1 field where the header has 4"
    sources = {
        "customers": {"path": "customers.csv"},
        "orders": {"path": "orders.csv", "csv": {"header": False}},
    }
    orders = "O1,C1,2026-05-01,1\nO2,C1,2026-05-01,1,x\n"  # 5 fields after 4
    with pytest.raises(LoyaltyError) as err:
        load(tmp_path, {"customers.csv": CUSTOMERS, "orders.csv": orders}, sources)
    diag = err.value.diagnostics[0]
    assert (diag.code, diag.line) == ("D603", 2)
    assert diag.message == "orders.csv: the row has 5 fields where the first row has 4"
