"""Stage 1: loading and checking the exports (SPEC 3, 9.1-9.4, 9.19-9.22).

Every test writes a few literal rows into tmp_path and compares the good rows and the rejects
(file, line, column, reason) with values worked out by hand.
"""

from __future__ import annotations

import gzip
import json
import os
from datetime import date, datetime
from decimal import Decimal

import duckdb
import pytest

from loyalty_cli.diagnostics import LoyaltyError
from loyalty_cli.engine.sources import SOURCE_ORDER, _stray_line_break, load_sources

AS_OF = date(2026, 6, 30)
CUSTOMERS = "customer_id,joined_at\nC1,2026-01-01 10:00\nC2,2026-01-02 10:00\n"
HEADER = "order_id,customer_id,ordered_at,total\n"


def load(tmp_path, files, sources, as_of=AS_OF, timezone="Europe/Warsaw", **kwargs):
    """Write ``files`` (name -> text or bytes) under tmp_path and load them."""
    for name, content in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    con = kwargs.pop("con", None) or duckdb.connect()
    result = load_sources(con, sources, tmp_path, as_of, timezone, "PLN", **kwargs)
    return con, result


def rows(con, table, columns):
    return con.execute(f"SELECT {columns} FROM {table}").fetchall()


def rejects(con, result):
    return con.execute(
        f'SELECT source, file, line, "column", reason FROM {result.rejects_table}'
    ).fetchall()


def base(**more):
    sources = {"customers": {"path": "customers.csv"}, "orders": {"path": "orders.csv"}}
    sources.update(more)
    return sources


# -- CSV, types and rejects ---------------------------------------------------------------------


def test_orders_good_rows_and_one_reject_per_bad_row(tmp_path):
    orders = (
        "order_id,customer_id,ordered_at,total,currency,status,channel\n"
        "O1,C1,2026-05-01 10:00,100.50,PLN,completed,web\n"  # 2 good
        " O2 ,C2,2026-05-02T11:30:00,20,,,\n"  # 3 good: ids trimmed, empty = PLN, completed
        "O3,,2026-05-03 10:00,ten,,,\n"  # 4 customer_id missing (before total)
        "O4,C1,2026-05-04 10:00,ten,,,\n"  # 5 bad_number
        "O5,C1,05/04/2026,1,,,\n"  # 6 bad_timestamp
        "O6,C1,2026-05-06 10:00,-1,,,\n"  # 7 negative_total
        "O7,C1,2026-05-07 10:00,1,EUR,,\n"  # 8 unknown_currency
        "O8,C1,2026-05-08 10:00,1,pln,shipped,\n"  # 9 unknown_status
        "O9,C404,2026-05-09 10:00,1,,,\n"  # 10 unknown_customer
        "O10,C404,2026-05-10 10:00,-5,,,\n"  # 11 negative_total wins over the customer
        ",C1,2026-05-11 10:00,1,,,\n"  # 12 order_id missing
        "O11,C1,2026-05-12 10:00,1,Pln,CANCELLED,app\n"  # 13 good, case-insensitive
    )
    con, result = load(tmp_path, {"customers.csv": CUSTOMERS, "orders.csv": orders}, base())
    assert rows(con, result.tables["orders"], "*") == [
        (
            "O1",
            "C1",
            datetime(2026, 5, 1, 10, 0),
            Decimal("100.50"),
            "PLN",
            "completed",
            "web",
            date(2026, 5, 1),
            "orders.csv",
            2,
        ),
        (
            "O2",
            "C2",
            datetime(2026, 5, 2, 11, 30),
            Decimal("20.00"),
            "PLN",
            "completed",
            None,
            date(2026, 5, 2),
            "orders.csv",
            3,
        ),
        (
            "O11",
            "C1",
            datetime(2026, 5, 12, 10, 0),
            Decimal("1.00"),
            "PLN",
            "cancelled",
            "app",
            date(2026, 5, 12),
            "orders.csv",
            13,
        ),
    ]
    assert rejects(con, result) == [
        ("orders", "orders.csv", 4, "customer_id", "missing_value"),
        ("orders", "orders.csv", 5, "total", "bad_number"),
        ("orders", "orders.csv", 6, "ordered_at", "bad_timestamp"),
        ("orders", "orders.csv", 7, "total", "negative_total"),
        ("orders", "orders.csv", 8, "currency", "unknown_currency"),
        ("orders", "orders.csv", 9, "status", "unknown_status"),
        ("orders", "orders.csv", 10, "customer_id", "unknown_customer"),
        ("orders", "orders.csv", 11, "total", "negative_total"),
        ("orders", "orders.csv", 12, "order_id", "missing_value"),
    ]
    assert result.counts["orders"] == {
        "files": 1,
        "rows_read": 12,
        "rows_new_window": 12,
        "held_back": 0,
        "rejected": 9,
        "duplicates_in_export": 0,
        "loaded": 3,
    }
    assert result.refused.startswith("orders: 9 of 12 rows rejected (75.00%)")
    key = con.execute(f"SELECT key FROM {result.rejects_table} WHERE line = 5").fetchone()
    assert key == ("O4",)


def test_column_types(tmp_path):
    files = {"customers.csv": CUSTOMERS, "orders.csv": HEADER}
    con, result = load(tmp_path, files, base())
    described = con.execute(f"DESCRIBE {result.tables['orders']}").fetchall()
    assert {name: kind for name, kind, *_ in described} == {
        "order_id": "VARCHAR",
        "customer_id": "VARCHAR",
        "ordered_at": "TIMESTAMP",
        "total": "DECIMAL(18,2)",
        "currency": "VARCHAR",
        "status": "VARCHAR",
        "channel": "VARCHAR",
        "day": "DATE",
        "_file": "VARCHAR",
        "_line": "BIGINT",
    }


def test_customers_types_booleans_dates_and_last_row_wins(tmp_path):
    customers = (
        "customer_id,email,birth_date,joined_at,email_consent,sms_consent\n"
        "C1,old@x.pl,1990-02-28,2026-01-01 10:00,yes,0\n"  # 2 replaced by line 6
        "C2,b@x.pl,1985-13-01,2026-01-01 10:00,true,false\n"  # 3 bad_date
        "C3,c@x.pl,,2026-01-01 10:00,maybe,\n"  # 4 bad_boolean
        "C4,d@x.pl,,2026-01-01 10:00,T,N\n"  # 5 good
        "C1,new@x.pl,1990-02-28,2026-01-01 10:00,no,1\n"  # 6 good, wins
    )
    con, result = load(
        tmp_path,
        {"customers.csv": customers, "orders.csv": HEADER},
        base(),
    )
    assert rows(
        con,
        result.tables["customers"],
        "customer_id, email, birth_date, email_consent, sms_consent, _line",
    ) == [
        ("C4", "d@x.pl", None, True, False, 5),
        ("C1", "new@x.pl", date(1990, 2, 28), False, True, 6),
    ]
    assert rejects(con, result) == [
        ("customers", "customers.csv", 3, "birth_date", "bad_date"),
        ("customers", "customers.csv", 4, "email_consent", "bad_boolean"),
    ]
    assert result.counts["customers"]["duplicates_in_export"] == 1
    assert any("last row" in w for w in result.warnings)


def test_column_mapping_and_extra_columns(tmp_path):
    customers = (
        "id,dob,created,segment,vip,score,first_order,labels\n"
        "C1,1990-01-01,2026-01-01 10:00,gold,yes,12,2026-02-01,a;b\n"
        "C2,1991-01-01,2026-01-01 10:00,silver,no,x,,\n"
    )
    sources = base(
        customers={
            "path": "customers.csv",
            "columns": {"customer_id": "id", "birth_date": "dob", "joined_at": "created"},
            "extra": {
                "segment": "varchar",
                "vip": "boolean",
                "score": "integer",
                "first_order": "date",
                "labels": "list",
                "not_there": "decimal",
            },
        }
    )
    files = {"customers.csv": customers, "orders.csv": HEADER}
    con, result = load(tmp_path, files, sources)
    assert rows(
        con,
        result.tables["customers"],
        "customer_id, birth_date, segment, vip, score, first_order, labels, not_there",
    ) == [("C1", date(1990, 1, 1), "gold", True, 12, date(2026, 2, 1), ["a", "b"], None)]
    assert rejects(con, result) == [("customers", "customers.csv", 3, "score", "bad_number")]
    assert any("'not_there'" in w for w in result.warnings)


def test_missing_required_column_is_d602_with_did_you_mean(tmp_path):
    files = {
        "customers.csv": CUSTOMERS,
        "orders.csv": "order_id,customer,ordered_at,total\nO1,C1,2026-05-01,1\n",
    }
    with pytest.raises(LoyaltyError) as caught:
        load(tmp_path, files, base())
    (diag,) = caught.value.diagnostics
    assert diag.code == "D602"
    assert diag.path.endswith("orders.csv")
    assert "'customer_id'" in diag.message
    assert "customer_id: customer" in diag.message
    assert "order_id, customer, ordered_at, total" in diag.hint


def test_header_match_ignores_case_and_spaces(tmp_path):
    files = {
        "customers.csv": CUSTOMERS,
        "orders.csv": "Order_ID, Customer_Id ,ORDERED_AT,Total\nO1,C1,2026-05-01,1\n",
    }
    con, result = load(tmp_path, files, base())
    assert rows(con, result.tables["orders"], "order_id, customer_id, total") == [
        ("O1", "C1", Decimal("1.00"))
    ]


def test_semicolon_delimiter_and_comma_decimal(tmp_path):
    orders = (
        "order_id;customer_id;ordered_at;total\n"
        "O1;C1;2026-05-01 10:00;1 234,50\n"  # 2: space grouping
        "O2;C1;2026-05-01 10:00;1.234,50\n"  # 3: dot grouping
        "O3;C1;2026-05-01 10:00;12,5\n"  # 4
        "O4;C1;2026-05-01 10:00;7\n"  # 5
        "O5;C1;2026-05-01 10:00;12.50\n"  # 6: a dot that is no grouping: ambiguous
        'O6;C1;2026-05-01 10:00;"-0,5"\n'  # 7: negative
    )
    sources = base(orders={"path": "orders.csv", "csv": {"delimiter": ";", "decimal": ","}})
    con, result = load(tmp_path, {"customers.csv": CUSTOMERS, "orders.csv": orders}, sources)
    assert rows(con, result.tables["orders"], "order_id, total") == [
        ("O1", Decimal("1234.50")),
        ("O2", Decimal("1234.50")),
        ("O3", Decimal("12.50")),
        ("O4", Decimal("7.00")),
    ]
    assert rejects(con, result) == [
        ("orders", "orders.csv", 6, "total", "bad_number"),
        ("orders", "orders.csv", 7, "total", "negative_total"),
    ]


def test_status_map(tmp_path):
    orders = (
        "order_id,customer_id,ordered_at,total,status\n"
        "O1,C1,2026-05-01,1,paid\n"
        "O2,C1,2026-05-01,1,Refunded\n"
        "O3,C1,2026-05-01,1,\n"
        "O4,C1,2026-05-01,1,COMPLETED\n"
        "O5,C1,2026-05-01,1,on-hold\n"
        "O6,C1,2026-05-01,1,pending\n"
    )
    sources = base(
        orders={"path": "orders.csv", "status_map": {"paid": "completed", "refunded": "cancelled"}}
    )
    con, result = load(
        tmp_path,
        {"customers.csv": CUSTOMERS, "orders.csv": orders},
        sources,
        status_map={"Pending": "completed"},
    )
    assert rows(con, result.tables["orders"], "order_id, status") == [
        ("O1", "completed"),
        ("O2", "cancelled"),
        ("O3", "completed"),
        ("O4", "completed"),
        ("O6", "completed"),
    ]
    assert rejects(con, result) == [("orders", "orders.csv", 6, "status", "unknown_status")]


def test_rows_after_the_day_are_held_back(tmp_path):
    orders = (
        HEADER + "O1,C1,2026-06-30 23:59:59,1\n"  # last second of D: in
        "O2,C1,2026-07-01 00:00,1\n"  # 00:00 belongs to the next day: held
        "O3,C1,2026-06-30T22:30:00Z,1\n"  # 00:30 on July 1 in Warsaw: held
        "O4,C1,2026-07-02 10:00,-1\n"  # held, not rejected (checked in its own run)
        "O5,C1,2026-06-30T21:59:59Z,1\n"  # 23:59:59 local: in
    )
    con, result = load(tmp_path, {"customers.csv": CUSTOMERS, "orders.csv": orders}, base())
    assert rows(con, result.tables["orders"], "order_id, ordered_at") == [
        ("O1", datetime(2026, 6, 30, 23, 59, 59)),
        ("O5", datetime(2026, 6, 30, 23, 59, 59)),
    ]
    assert rejects(con, result) == []
    counts = result.counts["orders"]
    assert (counts["rows_read"], counts["held_back"], counts["rows_new_window"]) == (5, 3, 2)
    assert result.refused is None


def test_customers_joining_after_the_day_wait_but_their_rows_are_not_unknown(tmp_path):
    customers = "customer_id,joined_at\nC1,2026-01-01\nC9,2026-08-01\n"
    orders = "order_id,customer_id,ordered_at,total\nO1,C9,2026-06-01,5\n"
    con, result = load(tmp_path, {"customers.csv": customers, "orders.csv": orders}, base())
    assert rows(con, result.tables["customers"], "customer_id") == [("C1",)]
    assert result.counts["customers"]["held_back"] == 1
    assert rows(con, result.tables["orders"], "order_id") == [("O1",)]


# -- time zones (9.1) ---------------------------------------------------------------------------


def test_offsets_are_converted_to_the_program_timezone(tmp_path):
    orders = (
        HEADER + "O1,C1,2026-06-01T10:00:00+02:00,1\n"  # CEST: same wall time
        "O2,C1,2026-01-15T10:00:00+02:00,1\n"  # CET: 09:00
        "O3,C1,2026-05-31T22:30:00Z,1\n"  # next local day
        "O4,C1,2026-06-01 10:00:00-0500,1\n"
        "O5,C1,2026-06-01 10:00,1\n"  # no zone: local already
        "O6,C1,2026-06-01,1\n"  # a date alone: midnight
    )
    con, result = load(tmp_path, {"customers.csv": CUSTOMERS, "orders.csv": orders}, base())
    assert rows(con, result.tables["orders"], "order_id, ordered_at, day") == [
        ("O1", datetime(2026, 6, 1, 10, 0), date(2026, 6, 1)),
        ("O2", datetime(2026, 1, 15, 9, 0), date(2026, 1, 15)),
        ("O3", datetime(2026, 6, 1, 0, 30), date(2026, 6, 1)),
        ("O4", datetime(2026, 6, 1, 17, 0), date(2026, 6, 1)),
        ("O5", datetime(2026, 6, 1, 10, 0), date(2026, 6, 1)),
        ("O6", datetime(2026, 6, 1, 0, 0), date(2026, 6, 1)),
    ]


def test_dst_gap_moves_forward_and_fall_back_keeps_the_first_occurrence(tmp_path):
    orders = (
        HEADER + "O1,C1,2026-03-29 02:30,1\n"  # does not exist in Warsaw: 03:30
        "O2,C1,2026-03-29 01:59:59,1\n"  # just before the gap: unchanged
        "O3,C1,2026-03-29 03:00,1\n"  # first minute after it
        "O4,C1,2026-10-25 02:30,1\n"  # repeated hour: kept as written
        "O5,C1,2026-10-25T00:30:00Z,1\n"  # first 02:30 (CEST)
        "O6,C1,2026-10-25T01:15:00Z,1\n"  # second 02:15 (CET): stored as its wall time
    )
    con, result = load(
        tmp_path,
        {"customers.csv": CUSTOMERS, "orders.csv": orders},
        base(),
        as_of=date(2026, 12, 31),
    )
    assert rows(con, result.tables["orders"], "order_id, ordered_at") == [
        ("O1", datetime(2026, 3, 29, 3, 30)),
        ("O2", datetime(2026, 3, 29, 1, 59, 59)),
        ("O3", datetime(2026, 3, 29, 3, 0)),
        ("O4", datetime(2026, 10, 25, 2, 30)),
        ("O5", datetime(2026, 10, 25, 2, 30)),
        ("O6", datetime(2026, 10, 25, 2, 15)),
    ]
    # the wall time of the repeated hour means its first occurrence, as ICU reads it back
    first = con.execute(
        "SELECT timezone('UTC', timezone('Europe/Warsaw', TIMESTAMP '2026-10-25 01:59:59'))"
    ).fetchone()[0]
    assert first == datetime(2026, 10, 24, 23, 59, 59)


def test_connection_timezone_setting_is_left_alone(tmp_path):
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")
    load(
        tmp_path,
        {"customers.csv": CUSTOMERS, "orders.csv": HEADER},
        base(),
        con=con,
    )
    assert con.execute("SELECT current_setting('TimeZone')").fetchone()[0] == "America/New_York"


def test_unknown_timezone_is_r307(tmp_path):
    with pytest.raises(LoyaltyError) as caught:
        load(tmp_path, {"customers.csv": CUSTOMERS}, base(), timezone="Europe/Atlantis")
    assert caught.value.diagnostics[0].code == "R307"


# -- keys and duplicates ------------------------------------------------------------------------


def test_repeated_order_keeps_the_first_by_file_order(tmp_path):
    files = {
        "customers.csv": CUSTOMERS,
        "orders-2.csv": HEADER + "O1,C1,2026-05-02,2\nO2,C1,2026-05-02,3\n",
        "orders-1.csv": HEADER + "O1,C1,2026-05-01,1\nO1,C2,2026-05-01,9\n",
    }
    con, result = load(tmp_path, files, base(orders={"path": "orders-*.csv"}))
    assert rows(con, result.tables["orders"], "order_id, customer_id, total, _file, _line") == [
        ("O1", "C1", Decimal("1.00"), "orders-1.csv", 2),
        ("O2", "C1", Decimal("3.00"), "orders-2.csv", 3),
    ]
    assert result.counts["orders"]["duplicates_in_export"] == 2
    assert result.counts["orders"]["files"] == 2


def test_event_without_id_is_keyed_by_hash_and_deduplicated(tmp_path):
    events = (
        '{"customer_id": "C1", "type": "email_open", "occurred_at": "2026-05-01 10:00", '
        '"properties": {"campaign": "spring", "n": 1}}\n'
        # the same event again, zone and key order differ: same key
        '{"customer_id": "C1", "type": "email_open", "occurred_at": "2026-05-01T08:00:00Z", '
        '"properties": {"n": 1, "campaign": "spring"}}\n'
        '{"customer_id": "C1", "type": "email_open", "occurred_at": "2026-05-01 10:00", '
        '"properties": {"campaign": "summer", "n": 1}}\n'
        '{"event_id": "E1", "customer_id": "C2", "type": "visit", '
        '"occurred_at": "2026-05-01 10:00"}\n'
        '{"event_id": "E1", "customer_id": "C2", "type": "visit", '
        '"occurred_at": "2026-05-02 10:00"}\n'
    )
    files = {
        "customers.csv": CUSTOMERS,
        "orders.csv": HEADER,
        "events.jsonl": events,
    }
    con, result = load(tmp_path, files, base(events={"path": "events.jsonl"}))
    got = rows(
        con,
        result.tables["events"],
        "event_id, event_key, type, CAST(properties AS VARCHAR), _line",
    )
    assert [(g[0], g[4]) for g in got] == [(None, 1), (None, 3), ("E1", 4)]
    assert got[0][1].startswith("md5:") and len(got[0][1]) == 36
    assert got[0][1] != got[1][1]
    assert got[2][1] == "E1"
    assert got[0][3] == '{"campaign":"spring","n":1}'
    expected = con.execute(
        "SELECT 'md5:' || md5(concat_ws(chr(31), 'C1', 'email_open', "
        '\'2026-05-01T10:00:00.000000\', \'{"campaign":"spring","n":1}\'))'
    ).fetchone()[0]
    assert got[0][1] == expected
    assert result.counts["events"]["duplicates_in_export"] == 2


def test_events_an_hour_apart_in_the_repeated_hour_keep_two_keys(tmp_path):
    """On 2026-10-25 Warsaw's clocks go back from 03:00 CEST to 02:00 CET. 00:30Z is 02:30
    CEST, the first 02:30, as 02:30 written in local time is (9.1): one event. 01:30Z is
    02:30 CET, an hour later: another event, stored at the same wall time. The first keeps
    the key a local time has; the second's key is marked."""
    events = (
        "customer_id,type,occurred_at\n"
        "C1,visit,2026-10-25T00:30:00Z\n"
        "C1,visit,2026-10-25T01:30:00Z\n"
        "C1,visit,2026-10-25 02:30:00\n"
        "C1,visit,2026-10-25T02:30:00+01:00\n"  # 01:30Z again
    )
    files = {"customers.csv": CUSTOMERS, "orders.csv": HEADER, "events.csv": events}
    con, result = load(
        tmp_path, files, base(events={"path": "events.csv"}), as_of=date(2026, 10, 31)
    )
    got = rows(con, result.tables["events"], "occurred_at, event_key, _line")
    plain = con.execute(
        "SELECT 'md5:' || md5(concat_ws(chr(31), 'C1', 'visit', '2026-10-25T02:30:00.000000', ''))"
    ).fetchone()[0]
    marked = con.execute(
        "SELECT 'md5:' || md5(concat_ws(chr(31), 'C1', 'visit', "
        "'2026-10-25T02:30:00.000000~second', ''))"
    ).fetchone()[0]
    assert got == [
        (datetime(2026, 10, 25, 2, 30), plain, 2),
        (datetime(2026, 10, 25, 2, 30), marked, 3),
    ]
    assert result.counts["events"]["duplicates_in_export"] == 2


def test_returns_are_keyed_by_order_time_and_amount(tmp_path):
    returns = (
        "order_id,returned_at,amount\n"
        "O1,2026-05-02 10:00,5\n"
        "O1,2026-05-02 10:00,5.00\n"  # same key
        "O1,2026-05-02 10:00,7\n"  # partial returns: another key
        "O1,2026-05-03 10:00,-1\n"
    )
    files = {
        "customers.csv": CUSTOMERS,
        "orders.csv": HEADER,
        "returns.csv": returns,
    }
    con, result = load(tmp_path, files, base(returns={"path": "returns.csv"}))
    assert rows(con, result.tables["returns"], "order_id, amount, day, _line") == [
        ("O1", Decimal("5.00"), date(2026, 5, 2), 2),
        ("O1", Decimal("7.00"), date(2026, 5, 2), 4),
    ]
    assert rejects(con, result) == [("returns", "returns.csv", 5, "amount", "negative_amount")]
    assert result.counts["returns"]["duplicates_in_export"] == 1


def test_items_keep_export_order_and_come_from_the_first_file_of_their_order(tmp_path):
    files = {
        "customers.csv": CUSTOMERS,
        "orders.csv": HEADER,
        "items/1.csv": (
            "order_id,sku,quantity,unit_price,category,tags\n"
            'O1,A,1,10,shoes,"new; sale"\n'
            "O2,C,1,3,,\n"
            "O1,B,2,5.5,,\n"
            "O1,A,1,10,shoes,new\n"  # a second identical line is a second item
            "O3,D,two,1,,\n"
            "O3,D,-1,1,,\n"
            "O3,D,1,cheap,,\n"
        ),
        "items/2.csv": "order_id,sku,quantity,unit_price\nO1,Z,9,9\nO4,E,1,1\n",
    }
    con, result = load(tmp_path, files, base(order_items={"path": "items/*.csv"}))
    assert rows(
        con,
        result.tables["order_items"],
        "order_id, sku, quantity, unit_price, tags, item_seq, _file, _line",
    ) == [
        ("O1", "A", 1, Decimal("10.00"), ["new", "sale"], 1, "items/1.csv", 2),
        ("O2", "C", 1, Decimal("3.00"), [], 1, "items/1.csv", 3),
        ("O1", "B", 2, Decimal("5.50"), [], 2, "items/1.csv", 4),
        ("O1", "A", 1, Decimal("10.00"), ["new"], 3, "items/1.csv", 5),
        ("O4", "E", 1, Decimal("1.00"), [], 1, "items/2.csv", 3),
    ]
    assert rejects(con, result) == [
        ("order_items", "items/1.csv", 6, "quantity", "bad_number"),
        ("order_items", "items/1.csv", 7, "quantity", "negative_quantity"),
        ("order_items", "items/1.csv", 8, "unit_price", "bad_number"),
    ]
    assert result.counts["order_items"]["duplicates_in_export"] == 1


# -- customers known or not (9.4) ---------------------------------------------------------------


def test_unknown_customer_unless_in_export_or_state(tmp_path):
    con = duckdb.connect()
    con.execute("CREATE TABLE known (customer_id VARCHAR)")
    con.execute("INSERT INTO known VALUES ('C7')")
    files = {
        "customers.csv": "customer_id,joined_at\nC1,2026-01-01\nC2,not a date\n",
        "orders.csv": HEADER,
        "events.csv": "customer_id,type,occurred_at\n"
        "C1,visit,2026-05-01\nC7,visit,2026-05-01\nC2,visit,2026-05-01\nC8,visit,2026-05-01\n",
        "redemptions.csv": "redemption_id,customer_id,reward_id,requested_at\n"
        "R1,C9,gift,2026-05-01\n",
        "adjustments.csv": "adjustment_id,customer_id,points,reason,created_at\n"
        "A1,C7,-20,goodwill,2026-05-01\nA2,C1,1.5,typo,2026-05-01\n",
    }
    sources = base(
        events={"path": "events.csv"},
        redemptions={"path": "redemptions.csv"},
        adjustments={"path": "adjustments.csv"},
    )
    con, result = load(tmp_path, files, sources, con=con, known_customer_ids_table="known")
    assert rows(con, result.tables["events"], "customer_id") == [("C1",), ("C7",)]
    assert rows(con, result.tables["adjustments"], "adjustment_id, points") == [("A1", -20)]
    assert rejects(con, result) == [
        ("customers", "customers.csv", 3, "joined_at", "bad_timestamp"),
        ("events", "events.csv", 4, "customer_id", "unknown_customer"),
        ("events", "events.csv", 5, "customer_id", "unknown_customer"),
        ("redemptions", "redemptions.csv", 2, "customer_id", "unknown_customer"),
        ("adjustments", "adjustments.csv", 3, "points", "bad_number"),
    ]


def test_years_outside_0001_to_9999_and_offsets_no_zone_has_are_bad_timestamps(tmp_path):
    """DuckDB's casts read `-2026-03-01` and `0000-01-01` as dates before Christ and take a
    fifth digit of the year; an offset of +25:00 was converted as if it were real."""
    orders = HEADER + (
        "O1,C1,2026-03-01T10:00:00+05:00,1\n"  # 05:00 UTC = 06:00 in Warsaw
        "O2,C1,-2026-03-01,1\n"
        "O3,C1,0000-01-01,1\n"
        "O4,C1,20260-03-01,1\n"
        "O5,C1,2026-03-01T10:00:00+25:00,1\n"
        "O6,C1,2026-03-01T10:00:00+05:75,1\n"
        "O6b,C1,2026-03-01T10:00:00+18:01,1\n"
        "O7,C1,26-03-01,1\n"
        "O8,C1,0001-01-02 00:00,1\n"
    )
    customers = CUSTOMERS.replace("2026-01-02 10:00", "-2026-01-02")
    con, result = load(
        tmp_path,
        {"customers.csv": customers, "orders.csv": orders},
        base(),
        known_customer_ids_table=None,
        max_reject_rate=1.0,
    )
    assert rows(con, result.tables["orders"], "order_id, ordered_at") == [
        ("O1", datetime(2026, 3, 1, 6, 0)),
        ("O8", datetime(1, 1, 2, 0, 0)),
    ]
    assert rejects(con, result) == [
        ("customers", "customers.csv", 3, "joined_at", "bad_timestamp"),
        *(("orders", "orders.csv", n, "ordered_at", "bad_timestamp") for n in range(3, 10)),
    ]


# -- formats and line numbers -------------------------------------------------------------------


def test_quoted_values_spanning_lines_keep_physical_line_numbers(tmp_path):
    customers = (
        "customer_id,first_name,joined_at\r\n"
        'C1,"Anna\r\nMaria",2026-01-01\r\n'  # lines 2-3
        'C2,"A\nB\nC",2026-01-01\r\n'  # lines 4-6
        "C3,Jan,never\r\n"  # line 7
    )
    files = {"customers.csv": customers, "orders.csv": HEADER}
    con, result = load(tmp_path, files, base())
    assert rows(con, result.tables["customers"], "customer_id, first_name, _line") == [
        ("C1", "Anna\r\nMaria", 2),
        ("C2", "A\nB\nC", 4),
    ]
    assert rejects(con, result) == [("customers", "customers.csv", 7, "joined_at", "bad_timestamp")]


def test_gzip_csv_and_headerless_csv(tmp_path):
    orders = "O1,C1,2026-05-01,5\nO2,C1,2026-05-01,x\n"
    sources = base(
        customers={"path": "customers.csv.gz"},
        orders={"path": "orders.csv", "csv": {"header": False}},
    )
    files = {"customers.csv.gz": gzip.compress(CUSTOMERS.encode()), "orders.csv": orders}
    con, result = load(tmp_path, files, sources)
    assert rows(con, result.tables["customers"], "customer_id, _line") == [("C1", 2), ("C2", 3)]
    assert rows(con, result.tables["orders"], "order_id, total, _line") == [
        ("O1", Decimal("5.00"), 1)
    ]
    assert rejects(con, result) == [("orders", "orders.csv", 2, "total", "bad_number")]


def test_headerless_csv_with_positions(tmp_path):
    sources = base(
        orders={
            "path": "orders.csv",
            "csv": {"header": False},
            "columns": {"order_id": 2, "customer_id": 1},
        }
    )
    files = {"customers.csv": CUSTOMERS, "orders.csv": "C1,O1,2026-05-01,5\n"}
    con, result = load(tmp_path, files, sources)
    assert rows(con, result.tables["orders"], "order_id, customer_id") == [("O1", "C1")]


def test_json_lines_line_numbers_count_blank_lines(tmp_path):
    events = (
        '{"customer_id": "C1", "type": "a", "occurred_at": "2026-05-01", '
        '"properties": {"x": [1, 2]}}\n'
        "\n"
        '{"customer_id": "C1", "type": "b", "occurred_at": "2026-05-01"\n'  # 3 cut off
        "   \n"
        '{"customer_id": 2, "type": "c", "occurred_at": "2026-05-01"}\n'  # 5 number id: text "2"
        '{"customer_id": "C1", "type": "d", "occurred_at": "2026-05-01", "properties": "[1]"}\n'
        '[{"customer_id": "C1"}]\n'  # 7 not an object
        '{"customer_id": "C2", "type": "e", "occurred_at": null}\n'  # 8
    )
    files = {
        "customers.csv": CUSTOMERS,
        "orders.csv": HEADER,
        "ev.ndjson": events,
    }
    con, result = load(tmp_path, files, base(events={"path": "ev.ndjson"}))
    assert rows(con, result.tables["events"], "type, CAST(properties AS VARCHAR), _line") == [
        ("a", '{"x":[1,2]}', 1)
    ]
    assert rejects(con, result) == [
        ("events", "ev.ndjson", 3, "", "bad_json"),
        ("events", "ev.ndjson", 5, "customer_id", "unknown_customer"),
        ("events", "ev.ndjson", 6, "properties", "bad_json"),
        ("events", "ev.ndjson", 7, "", "bad_json"),
        ("events", "ev.ndjson", 8, "occurred_at", "missing_value"),
    ]
    assert result.counts["events"]["rows_read"] == 6


def test_json_lines_missing_required_key_is_d602(tmp_path):
    files = {
        "customers.csv": CUSTOMERS,
        "orders.csv": HEADER,
        "events.jsonl": '{"customer_id": "C1", "kind": "a", "occurred_at": "2026-05-01"}\n',
    }
    with pytest.raises(LoyaltyError) as caught:
        load(tmp_path, files, base(events={"path": "events.jsonl"}))
    (diag,) = caught.value.diagnostics
    assert diag.code == "D602" and "'type'" in diag.message and "events.jsonl" in diag.path


def test_parquet_with_typed_and_list_columns(tmp_path):
    con = duckdb.connect()
    con.execute(
        f"""COPY (SELECT * FROM (VALUES
            ('O1', 'A', 2, 10.5::DECIMAL(10,2), ['new', ' sale ', '']),
            ('O1', 'B', NULL, 1.0::DECIMAL(10,2), NULL),
            ('O2', 'C', 1, 3.0::DECIMAL(10,2), []::VARCHAR[])
        ) t(order_id, sku, quantity, unit_price, tags))
        TO '{tmp_path / "items.parquet"}' (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (SELECT 'O1' AS id, 'C1' AS customer_id,
                  TIMESTAMPTZ '2026-05-01 08:00:00+00' AS ordered_at, 12.5::DOUBLE AS total)
            TO '{tmp_path / "orders.parquet"}' (FORMAT parquet)"""
    )
    sources = base(
        orders={"path": "orders.parquet", "columns": {"order_id": "id"}},
        order_items={"path": "items.parquet"},
    )
    con, result = load(tmp_path, {"customers.csv": CUSTOMERS}, sources, con=con)
    assert rows(con, result.tables["orders"], "order_id, ordered_at, total, _line") == [
        ("O1", datetime(2026, 5, 1, 10, 0), Decimal("12.50"), 1)
    ]
    assert rows(con, result.tables["order_items"], "order_id, sku, tags, item_seq, _line") == [
        ("O1", "A", ["new", "sale"], 1, 1),
        ("O2", "C", [], 1, 3),
    ]
    assert rejects(con, result) == [
        ("order_items", "items.parquet", 2, "quantity", "missing_value")
    ]


# -- files, folders and whole-file errors -------------------------------------------------------


def test_missing_required_source_is_d601_and_optional_source_is_empty(tmp_path):
    with pytest.raises(LoyaltyError) as caught:
        load(tmp_path, {"customers.csv": CUSTOMERS, "order.csv": "x\n"}, base())
    (diag,) = caught.value.diagnostics
    assert diag.code == "D601" and "orders.csv" in diag.message and "order.csv" in diag.hint

    con, result = load(
        tmp_path,
        {"orders.csv": HEADER},
        base(events={"path": "events/*.jsonl"}),
    )
    assert set(result.tables) == set(SOURCE_ORDER)
    described = [c[:2] for c in con.execute(f"DESCRIBE {result.tables['events']}").fetchall()]
    assert described == [
        ("event_id", "VARCHAR"),
        ("customer_id", "VARCHAR"),
        ("type", "VARCHAR"),
        ("occurred_at", "TIMESTAMP"),
        ("properties", "JSON"),
        ("day", "DATE"),
        ("event_key", "VARCHAR"),
        ("_file", "VARCHAR"),
        ("_line", "BIGINT"),
    ]
    assert result.counts["events"]["rows_read"] == 0


def test_paths_may_not_leave_the_data_folder(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "secret.csv").write_text(CUSTOMERS)
    for path in ("../secret.csv", str(tmp_path / "secret.csv")):
        with pytest.raises(LoyaltyError) as caught:
            load(
                data,
                {"orders.csv": HEADER},
                base(customers={"path": path}),
            )
        assert caught.value.diagnostics[0].code == "R306"
    os.symlink(tmp_path / "secret.csv", data / "customers.csv")
    with pytest.raises(LoyaltyError) as caught:
        load(data, {"orders.csv": HEADER}, base())
    assert caught.value.diagnostics[0].code == "R306"


def test_all_file_problems_are_reported_together(tmp_path):
    files = {
        "customers.csv": "id,joined_at\nC1,2026-01-01\n",
        "returns.csv": 'order_id,returned_at,amount\nO1,"2026-01-01,1\n',
    }
    with pytest.raises(LoyaltyError) as caught:
        load(tmp_path, files, base(returns={"path": "returns.csv"}))
    assert sorted(d.code for d in caught.value.diagnostics) == ["D601", "D602"]


def test_unparseable_file_is_d603_with_line(tmp_path):
    orders = "order_id,customer_id,ordered_at,total\nO1,C1,2026-05-01,1\nO2,C1,2026-05-01,1,5\n"
    with pytest.raises(LoyaltyError) as caught:
        load(tmp_path, {"customers.csv": CUSTOMERS, "orders.csv": orders}, base())
    (diag,) = caught.value.diagnostics
    assert (diag.code, diag.line) == ("D603", 3)
    assert "orders.csv" in str(caught.value) and "5 fields" in diag.message


def test_temporary_tables_are_cleaned_up_and_results_are_temp(tmp_path):
    con, result = load(
        tmp_path,
        {"customers.csv": CUSTOMERS, "orders.csv": HEADER},
        base(),
    )
    tables = con.execute("SELECT table_name, temporary FROM duckdb_tables() ORDER BY 1").fetchall()
    assert tables == sorted(
        [(f"src_{name}", True) for name in SOURCE_ORDER]
        + [("src_orders_held", True), ("src_rejects", True)]
    )
    assert con.execute("SELECT count(*) FROM duckdb_views() WHERE NOT internal").fetchone() == (0,)


# -- reject rate --------------------------------------------------------------------------------


def test_reject_rate_refuses_above_the_limit(tmp_path):
    lines = [f"O{i},C1,2026-05-01,1" for i in range(99)] + ["O99,C1,2026-05-01,x"]
    orders = HEADER + "\n".join(lines) + "\n"
    files = {"customers.csv": CUSTOMERS, "orders.csv": orders}
    _, result = load(tmp_path, files, base())
    assert result.refused is None  # 1 of 100 = 1%, not above 1%
    held = orders + "O100,C1,2026-05-01,y\nO101,C1,2030-01-01,1\n"
    _, result = load(tmp_path, {"orders.csv": held}, base())
    assert result.refused == (
        "orders: 2 of 101 rows rejected (1.98%), above data.max_reject_rate 1.00% (see rejects.csv)"
    )
    _, result = load(tmp_path, {}, base(), max_reject_rate=0.02)
    assert result.refused is None


def test_counts_add_up(tmp_path):
    orders = (
        HEADER + "O1,C1,2026-05-01,1\nO1,C1,2026-05-01,1\nO2,C1,2026-05-01,x\nO3,C1,2027-01-01,1\n"
    )
    _, result = load(tmp_path, {"customers.csv": CUSTOMERS, "orders.csv": orders}, base())
    c = result.counts["orders"]
    assert c["rows_read"] == c["rows_new_window"] + c["held_back"]
    assert c["rows_new_window"] == c["loaded"] + c["rejected"] + c["duplicates_in_export"]
    assert (c["loaded"], c["rejected"], c["duplicates_in_export"], c["held_back"]) == (1, 1, 1, 1)
    json.dumps(result.counts)  # plain numbers, ready for run.json


# -- inside the run's transaction ---------------------------------------------------------------


def test_inside_the_callers_transaction(tmp_path):
    con = duckdb.connect()
    before = con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0]
    con.execute("BEGIN TRANSACTION")
    files = {
        "customers.csv": CUSTOMERS,
        "orders.csv": HEADER + 'O1,C1,2026-05-01,1\nO2,C1,"2026-05-01",x\n',
        "ev.jsonl": '{"customer_id": "C1", "type": "a", "occurred_at": "2026-05-01"}\n\n{',
    }
    con, result = load(tmp_path, files, base(events={"path": "ev.jsonl"}), con=con)
    assert rows(con, result.tables["orders"], "order_id, _line") == [("O1", 2)]
    assert rows(con, result.tables["events"], "type, _line") == [("a", 1)]
    assert rejects(con, result) == [
        ("orders", "orders.csv", 3, "total", "bad_number"),
        ("events", "ev.jsonl", 3, "", "bad_json"),
    ]
    con.execute("COMMIT")
    assert con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0] == before


def test_a_broken_file_inside_the_callers_transaction_is_still_a_loyalty_error(tmp_path):
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT 'C1' AS customer_id) TO '{tmp_path / 'ev.parquet'}' (FORMAT parquet)"
    )
    con.execute("BEGIN TRANSACTION")
    files = {
        "customers.csv": CUSTOMERS,
        "orders.csv": HEADER + "O1,C1,2026-05-01,1,2\n",
        "returns.csv": "order_id,returned_at\n",
    }
    sources = base(events={"path": "ev.parquet"}, returns={"path": "returns.csv"})
    with pytest.raises(LoyaltyError) as caught:
        load(tmp_path, files, sources, con=con)
    # the aborted transaction does not hide the real problem nor add false ones
    assert [(d.code, d.line) for d in caught.value.diagnostics] == [("D603", 2), ("D602", 1)]
    con.execute("ROLLBACK")


# -- export order without sorting ---------------------------------------------------------------


def _every_kind(tmp_path):
    """Files and sources with every column kind, repeats, rejects, held rows and two files."""
    customers = (
        "customer_id,joined_at,birth_date,email_consent,vip,score,tags\n"
        "C1,2026-01-01,1990-02-28,yes,TRUE,1.5,a;b\n"
        " C2 ,2026-01-02T10:00:00Z,,n,f,2,\n"
        "C1,2026-01-03,,maybe,,x,\n"
    )
    orders = (
        "order_id,customer_id,ordered_at,total,currency,status,channel\n"
        'O1,C1,2026-05-01 10:00,"1 234,50",pln,paid,"web\nshop"\n'
        "O2,C2,2026-05-02,12,,,app\n"
        "O1,C1,2026-05-03,3,,,\n"
        "O3,C9,2026-05-04,4,,,\n"
        "O4,C1,2027-01-01,4,,,\n"
    )
    items = "order_id,sku,quantity,unit_price,tags\nO1,S1,1,2,new;sale\nO2,S2,2,3,\nO1,S3,x,1,\n"
    items2 = 'order_id,sku,quantity,unit_price,tags\nO1,S9,1,1,\nO2,S4,1,1,["a"]\n'
    events = (
        "event_id,customer_id,type,occurred_at,properties\n"
        'E2,C1,view,2026-05-01,"{""b"": 1, ""a"": 2}"\n'
        ",C2,like,2026-05-01T08:00:00+02:00,\n"
        "E1,C1,view,2026-05-02,[1]\n"
        "E2,C1,view,2026-05-03,\n"
    )
    files = {
        "customers.csv": customers,
        "orders.csv": orders,
        "items-1.csv": items,
        "items-2.csv": items2,
        "events.csv": events,
    }
    sources = base(order_items={"path": "items-*.csv"}, events={"path": "events.csv"})
    sources["customers"]["extra"] = {"vip": "boolean", "score": "decimal", "tags": "list"}
    sources["orders"]["csv"] = {"decimal": ","}
    sources["orders"]["status_map"] = {"paid": "completed"}
    return files, sources


def _snapshot(con, result):
    out = {"counts": result.counts, "warnings": result.warnings}
    for name, table in result.tables.items():
        out[name] = (
            con.execute(f"DESCRIBE {table}").fetchall(),
            con.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall(),
        )
    out["rejects"] = con.execute(f"SELECT * FROM {result.rejects_table} ORDER BY rowid").fetchall()
    return out


def test_rows_are_converted_in_export_order_without_a_sort(tmp_path, monkeypatch):
    """Every conversion keeps DuckDB's order-preserving insert, so no table is ever sorted."""
    from loyalty_cli.engine import sources as loader

    seen = []
    keeps = loader._keeps_order
    monkeypatch.setattr(loader, "_keeps_order", lambda *a: seen.append(keeps(*a)) or seen[-1])
    files, sources = _every_kind(tmp_path)
    con, result = load(tmp_path, files, sources)
    assert seen and all(seen)
    assert rows(con, result.tables["order_items"], "order_id, sku, item_seq, _file, _line") == [
        ("O1", "S1", 1, "items-1.csv", 2),
        ("O2", "S2", 1, "items-1.csv", 3),
    ]
    assert rows(con, result.tables["orders"], "order_id, _line") == [("O1", 2), ("O2", 4)]


def test_an_insert_that_would_lose_the_order_falls_back_to_sorting(tmp_path, monkeypatch):
    """Should a conversion ever reorder rows, line numbers and results stay the same."""
    from loyalty_cli.engine import sources as loader

    files, sources = _every_kind(tmp_path)
    for tx in (False, True):
        con = duckdb.connect()
        if tx:
            con.execute("BEGIN TRANSACTION")
        expected = _snapshot(*load(tmp_path, files, sources, con=con))
        monkeypatch.setattr(loader, "_keeps_order", lambda *a: False)
        con = duckdb.connect()
        if tx:
            con.execute("BEGIN TRANSACTION")
        assert _snapshot(*load(tmp_path, files, sources, con=con)) == expected
        monkeypatch.undo()


def test_a_failed_load_leaves_no_result_tables(tmp_path):
    files = {
        "customers.csv": CUSTOMERS,
        "orders.csv": HEADER + "O1,C1,2026-05-01,1\n",
        "events.csv": "event_id,customer_id,type,occurred_at\nE1,C1,a,2026-05-01,5\n",
    }
    con = duckdb.connect()
    with pytest.raises(LoyaltyError) as caught:
        load(tmp_path, files, base(events={"path": "events.csv"}), con=con)
    assert [(d.code, d.line) for d in caught.value.diagnostics] == [("D603", 2)]
    assert con.execute("SELECT count(*) FROM duckdb_tables()").fetchone() == (0,)


# -- plan facts kept in the state ---------------------------------------------------------------


class _Recording:
    """A connection that records the SQL it runs."""

    def __init__(self, con):
        self._con = con
        self.sql: list[str] = []

    def execute(self, sql, params=None):
        self.sql.append(sql)
        return self._con.execute(sql, params or [])

    def __getattr__(self, name):
        return getattr(self._con, name)


def test_plan_facts_are_kept_in_meta_and_spare_planning_the_next_load(tmp_path):
    con = duckdb.connect()
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    orders = HEADER + "O1,C1,2026-05-01 10:00,10.50\nO2,C9,2026-05-02 10:00,5\n"
    files = {"customers.csv": CUSTOMERS, "orders.csv": orders}
    first = _Recording(con)
    _, result = load(tmp_path, files, base(), con=first)
    planned = [s for s in first.sql if s.startswith(("DESCRIBE", "EXPLAIN"))]
    # The columns of every source's typed table (undeclared ones are empty tables), and
    # whether each file's insert keeps its rows in file order.
    assert len(planned) == 7 + 2
    kept = dict(con.execute("SELECT key, value FROM meta WHERE key LIKE 'plan:%'").fetchall())
    assert sorted(k.split(":")[1] for k in kept) == ["columns"] * 7 + ["keeps_order"] * 2
    assert sum(v == "yes" for v in kept.values()) == 2
    good = rows(con, "src_orders", "order_id, total")
    bad = rejects(con, result)

    # The next night: other files of the same shape, no planning, the same typed rows.
    (tmp_path / "orders.csv").write_text(orders.replace("O1", "O3"), encoding="utf-8")
    second = _Recording(con)
    _, result = load(tmp_path, {}, base(), as_of=date(2026, 7, 1), con=second)
    assert [s for s in second.sql if s.startswith(("DESCRIBE", "EXPLAIN"))] == []
    assert dict(con.execute("SELECT key, value FROM meta WHERE key LIKE 'plan:%'").fetchall()) == (
        kept
    )
    assert rows(con, "src_orders", "order_id, total") == [("O3", Decimal("10.50"))]
    assert good == [("O1", Decimal("10.50"))]
    assert (
        rejects(con, result)
        == bad
        == [("orders", "orders.csv", 3, "customer_id", "unknown_customer")]
    )


def test_without_a_state_nothing_is_kept(tmp_path):
    con, _ = load(tmp_path, {"customers.csv": CUSTOMERS, "orders.csv": HEADER}, base())
    assert con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'meta'"
    ).fetchone() == (0,)


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 20])
@pytest.mark.parametrize(
    ("data", "line"),
    [
        (b"a,b\n1,x\ry\n2,z\n", 2),  # a CR inside a value of a file of LF lines
        (b"a,b\n1,x\n2,z\r\n3,w\n", 3),  # a CRLF line among LF lines
        (b"a,b\r\n1,x\ny\r\n2,z\r\n", 2),  # a LF alone among CRLF lines
        (b"a,b\r\n1,x\r\n2,z\r", 3),  # a CR alone at the very end
        (b"a,b\n1,x\n2,z\n", None),
        (b"a,b\r\n1,x\r\n2,z\r\n", None),
    ],
)
def test_the_line_of_a_stray_line_end_is_found_across_read_blocks(tmp_path, data, line, chunk):
    plain, packed = tmp_path / "x.csv", tmp_path / "x.csv.gz"
    plain.write_bytes(data)
    packed.write_bytes(gzip.compress(data))
    assert _stray_line_break(str(plain), chunk) == line
    assert _stray_line_break(str(packed), chunk) == line


def test_json_lines_keys_of_every_line_and_their_case_variants(tmp_path):
    """JSON exports leave out keys of empty values and may spell a key differently from one
    line to the next: every line's keys count (not only the first thousand lines'), and a key
    matching a column but for case is read on the lines that use it."""
    customers = (
        '{"customer_id": "C1", "joined_at": "2026-01-01 10:00"}\n'
        + '{"customer_id": "C2", "joined_at": "2026-01-02 10:00"}\n' * 1000
        # line 1002 is the first with referred_by, line 1003 spells its keys otherwise
        + '{"customer_id": "C3", "joined_at": "2026-01-03 10:00", "referred_by": "C1"}\n'
        + '{"Customer_ID": "C4", "Joined_At": "2026-01-04 10:00", "Referred_By": "C2"}\n'
    )
    files = {"customers.jsonl": customers, "orders.csv": HEADER}
    con, result = load(tmp_path, files, base(customers={"path": "customers.jsonl"}))
    # C2's 1,000 lines are one customer: the export's repeats, of which the last is kept.
    assert rows(con, result.tables["customers"], "customer_id, referred_by, _line") == [
        ("C1", None, 1),
        ("C2", None, 1001),
        ("C3", "C1", 1002),
        ("C4", "C2", 1003),
    ]
    assert rejects(con, result) == []


def test_a_header_repeating_a_column_in_another_case_uses_the_first(tmp_path):
    """Header names match ignoring case, so `email` and `EMAIL` are one column said twice:
    the first is read, with a warning, as for an exact repeat."""
    customers = (
        "customer_id,joined_at,email,EMAIL,Joined_At\n"
        "C1,2026-01-01 10:00,a@x.example,b@x.example,2026-02-01 10:00\n"
    )
    files = {"customers.csv": customers, "orders.csv": HEADER}
    con, result = load(tmp_path, files, base())
    assert rows(con, result.tables["customers"], "customer_id, email, joined_at") == [
        ("C1", "a@x.example", datetime(2026, 1, 1, 10, 0))
    ]
    assert result.warnings == [
        "customers.csv: the header repeats 'email'/'EMAIL', 'joined_at'/'Joined_At'; "
        "the first of each is used"
    ]


def test_a_header_repeating_a_column_but_for_case_and_spaces_uses_the_first(tmp_path):
    """`Customer_Id` and `CUSTOMER_ID ` both match `customer_id` (case and surrounding
    spaces are ignored): a repeat, read from the first with a warning, as `email`/`EMAIL`
    is; it was a D602 saying the required column was missing."""
    customers = "Customer_Id,CUSTOMER_ID ,joined_at\nC1,C9,2026-01-01 10:00\n"
    files = {"customers.csv": customers, "orders.csv": HEADER}
    con, result = load(tmp_path, files, base())
    assert rows(con, result.tables["customers"], "customer_id") == [("C1",)]
    assert result.warnings == [
        "customers.csv: the header repeats 'Customer_Id'/'CUSTOMER_ID '; the first of each is used"
    ]
