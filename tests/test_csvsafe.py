"""Spreadsheet-safe CSV (SPEC 8): formula text neutralised, numbers and E.164 phones kept."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import pytest

from loyalty_cli.csvsafe import csv_text, is_e164, neutralise, write_csv


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('=HYPERLINK("http://x")', '\'=HYPERLINK("http://x")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("-", "'-"),
        ("+", "'+"),
        ("+48 601 234 567", "'+48 601 234 567"),  # not E.164: spaces
        ("+0123456", "'+0123456"),  # country codes do not start with 0
        ("+1234567890123456", "'+1234567890123456"),  # 16 digits: too long for E.164
        ("+48601234567", "+48601234567"),
        ("+12015550123", "+12015550123"),
        ("Anna", "Anna"),
        (" =1", " =1"),
        ("a=1", "a=1"),
        ("'quoted", "'quoted"),
        ("", ""),
        ("Zażółć", "Zażółć"),
        (-5, -5),
        (3.5, 3.5),
        (Decimal("-12.50"), Decimal("-12.50")),
        (None, None),
        (True, True),
        (date(2026, 1, 2), date(2026, 1, 2)),
    ],
)
def test_neutralise(value, expected):
    assert neutralise(value) == expected
    assert type(neutralise(value)) is type(expected)


def test_is_e164():
    assert is_e164("+48601234567")
    assert is_e164("+12")
    assert not is_e164("+1")
    assert not is_e164("48601234567")
    assert not is_e164("+48601234567 ")
    assert not is_e164("+48-601")


def test_write_csv_neutralises_every_text_cell(tmp_path):
    path = tmp_path / "sub" / "people.csv"
    write_csv(
        path,
        ["customer_id", "name", "phone", "points", "balance", "joined", "vip", "note"],
        [
            [
                "c1",
                "=cmd|' /C calc'!A0",
                "+48601234567",
                -50,
                Decimal("1E+2"),
                date(2026, 1, 2),
                True,
                None,
            ],
            [
                "-c2",
                'Anna, "Ania"',
                "+48 601",
                7,
                Decimal("0.10"),
                datetime(2026, 1, 2, 3, 4, 5),
                False,
                "line1\nline2",
            ],
        ],
    )
    assert path.read_bytes() == (
        b"customer_id,name,phone,points,balance,joined,vip,note\n"
        b"c1,'=cmd|' /C calc'!A0,+48601234567,-50,100,2026-01-02,true,\n"
        b'\'-c2,"Anna, ""Ania""",\'+48 601,7,0.10,2026-01-02T03:04:05,false,"line1\nline2"\n'
    )


def test_write_csv_only_named_text_columns(tmp_path):
    path = tmp_path / "out.csv"
    write_csv(
        path,
        ["customer_id", "formula"],
        [{"customer_id": "=id", "formula": "=1+1"}, {"customer_id": "@x"}],
        text_columns=["customer_id"],
    )
    assert path.read_text(encoding="utf-8") == "customer_id,formula\n'=id,=1+1\n'@x,\n"


def test_write_csv_empty_and_utf8(tmp_path):
    path = tmp_path / "e.csv"
    write_csv(path, ["a"], [])
    assert path.read_bytes() == b"a\n"
    write_csv(path, ["name"], [["Łukasz"]])
    assert path.read_bytes() == "name\nŁukasz\n".encode()
    assert [p.name for p in tmp_path.iterdir()] == ["e.csv"]  # no temporary file left


def test_csv_text_rejects_bad_rows_and_columns():
    with pytest.raises(ValueError, match="2 cells"):
        csv_text(["a"], [["x", "y"]])
    with pytest.raises(ValueError, match="not in header"):
        csv_text(["a"], [], text_columns=["b"])


def test_formula_ranges_pick_the_same_text_as_the_first_character_test():
    import duckdb

    from loyalty_cli.engine.outputs import FORMULA_RANGES, FORMULA_START

    values = ["=a", "=", "+1", "-x", "@h", "\tq", "\rz", "A", "a", "1", ">", ",", ".", "?"]
    values += ["\n", "\x0e", "", "ą", "é=", " =", "!", "C000123", "<", "*", "\x08", "\x0c"]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (v VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?)", [[v] for v in values])
    by_start = con.execute(f"SELECT v FROM t WHERE left(v, 1) IN {FORMULA_START} ORDER BY v")
    expected = sorted(["=a", "=", "+1", "-x", "@h", "\tq", "\rz"])
    assert [v for (v,) in by_start.fetchall()] == expected
    by_range = con.execute(f"SELECT v FROM t WHERE {FORMULA_RANGES.format(col='v')} ORDER BY v")
    assert [v for (v,) in by_range.fetchall()] == expected
