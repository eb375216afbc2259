"""Exports damaged at random: a run books what it can or says what is wrong, never crashes.

A small shop's valid exports, as CSV or as JSON lines, get a few random edits (bytes
inserted, deleted or replaced with quotes, separators, line breaks, NUL, invalid UTF-8, a
BOM, formula signs, odd numbers and dates). Whatever the damage, `run` must either finish
(ok, or refused for too many rejects) with the balance invariants holding and every row it
read accounted for, or raise a LoyaltyError whose every diagnostic names a file. Any other
exception is a bug: the CLI would show it as an internal error.

Accounted for: per source, rows read = held back + rejected + repeated in the export +
loaded, and each rejected row is a line of rejects.csv with its file, a line number inside
that file, and a reason.
"""

from __future__ import annotations

import csv
import datetime as dt
import json

import hypothesis
import pytest
from enginekit import Shop, check_invariants, customer, event, hunt_settings, item, order
from hypothesis import given
from hypothesis import strategies as st
from test_engine_reference import A

from loyalty_cli.diagnostics import LoyaltyError
from loyalty_cli.engine.run import run

DAY = dt.date(2026, 3, 6)

ROWS = {
    "customers": [
        customer("C1", joined="2026-03-01 09:00:00", birth_date="1990-03-06"),
        customer("C2", joined="2026-03-02 09:00:00", referred_by="C1"),
        customer("C3", joined="2026-03-05 09:00:00"),
    ],
    "orders": [
        order("O1", "C1", "2026-03-05 10:00:00", "120.00"),
        order("O2", "C2", "2026-03-05 11:30:00", "35.50", status="completed"),
        order("O3", "C3", "2026-03-06 08:15:00+01:00", "60.00", channel="web"),
        order("O4", "C1", "2026-03-07 08:00:00", "10.00"),  # after the day: held back
    ],
    "order_items": [
        item("O1", "S1", "2", "30.00", tags="new"),
        item("O1", "S2", "1", "60.00", tags="sale;new"),
        item("O2", "S3", "1", "35.50"),
        item("O3", "S1", "3", "20.00", category="shoes"),
    ],
    "returns": [{"order_id": "O1", "returned_at": "2026-03-06 12:00:00", "amount": "30.00"}],
    "events": [
        event("E1", "C1", "2026-03-05 10:00:00"),
        event("E2", "C2", "2026-03-05 12:00:00", "email_open", properties='{"campaign": "x"}'),
        event("E3", "C3", "2026-03-06T09:00:00Z", "unsubscribe"),
        event("", "C1", "2026-03-06 10:00:00", properties='{"url": "/p/1"}'),
    ],
    "redemptions": [
        {
            "redemption_id": "R1",
            "customer_id": "C1",
            "reward_id": "small",
            "requested_at": "2026-03-06 18:00:00",
        }
    ],
    "adjustments": [
        {
            "adjustment_id": "A1",
            "customer_id": "C2",
            "points": "15",
            "reason": "=goodwill",
            "created_at": "2026-03-06 09:00:00",
        }
    ],
}

# What the damage is made of.
PIECES = [
    b'"',
    b",",
    b"\n",
    b"\r\n",
    b"\r",
    b"\x00",
    b"\xff\xfe",
    b"\xc3",
    b"\xef\xbb\xbf",
    b";",
    b" ",
    b"\t",
    b"=",
    b"-",
    b"{",
    b"}",
    b"9",
    b"0",
    b".",
    b"1e400",
    b"NaN",
    b"-0",
    b"2026-02-30",
    b"24:00:00",
    b"+25:00",
    b"\\",
    b"\xe2\x80\x8b",  # a zero-width space
    b"O1",
    b"C1",
]


@st.composite
def damage(draw) -> tuple[str, bool, list[tuple[float, str, bytes]]]:
    """A source, whether its header may be hit too (else only the rows are), and a few
    edits: (where, as a share of the length; what; bytes)."""
    source = draw(st.sampled_from(list(ROWS)))
    header = draw(st.integers(0, 7)) == 0
    edits = draw(
        st.lists(
            st.tuples(
                st.floats(0, 1),
                st.sampled_from(["insert", "delete", "replace"]),
                st.sampled_from(PIECES),
            ),
            min_size=1,
            max_size=4,
        )
    )
    return source, header, edits


def _apply(data: bytes, start: int, edits: list[tuple[float, str, bytes]]) -> bytes:
    """The bytes with each edit made at its share of the length after `start` (the bytes
    before `start`, a CSV header, stay as they are)."""
    for where, what, piece in edits:
        at = start + int(where * (len(data) - start))
        if what == "insert":
            data = data[:at] + piece + data[at:]
        elif what == "delete":
            data = data[:at] + data[at + len(piece) :]
        else:
            data = data[:at] + piece + data[at + len(piece) :]
    return data


def _write_jsonl(shop: Shop) -> None:
    """The shop's exports as JSON lines instead of CSV (empty values left out, as in CSV)."""
    for name, rows in ROWS.items():
        (shop.data / f"{name}.csv").unlink()
        lines = [json.dumps({k: v for k, v in r.items() if v != ""}) + "\n" for r in rows]
        (shop.data / f"{name}.jsonl").write_text("".join(lines), encoding="utf-8")
    text = shop.program.read_text(encoding="utf-8")
    shop.program.write_text(text.replace(".csv}", ".jsonl}"), encoding="utf-8")


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@hunt_settings(30)
@given(case=damage())
def test_a_damaged_export_is_booked_or_named_never_a_crash(tmp_path_factory, fmt, case):
    source, header, edits = case
    # every rejected row counts: a few rows make a high share of rejects
    shop = Shop(
        tmp_path_factory.mktemp("fuzz") / "shop", A.program + "data:\n  max_reject_rate: 1\n"
    )
    for name, rows in ROWS.items():
        shop.rows[name] = list(rows)
    shop.export()
    first = 2  # the first line of a row
    if fmt == "jsonl":
        _write_jsonl(shop)
        first = 1
    path = shop.data / f"{source}.{fmt}"
    text = path.read_bytes()
    damaged = _apply(text, 0 if header else text.index(b"\n") + 1, edits)
    path.write_bytes(damaged)
    lines = damaged.count(b"\n") + (not damaged.endswith(b"\n"))
    try:
        results = run(shop.program, shop.data, DAY, shop.state, shop.out)
    except LoyaltyError as err:
        hypothesis.event(f"refused: {err.diagnostics[0].code}")
        for diag in err.diagnostics:
            assert diag.path, f"{diag.code}: {diag.message} names no file"
        return
    result = results[-1]
    hypothesis.event(f"{result.status}, rejects: {min(result.rejects, 2)}")
    check_invariants(shop.state)
    counts = result.counts.get("sources", {})
    for name in ROWS:
        c = {k.split(".", 1)[1]: v for k, v in counts.items() if k.startswith(f"{name}.")}
        parts = ("held_back", "rejected", "duplicates_in_export", "loaded")
        assert c.get("rows_read", 0) == sum(c.get(k, 0) for k in parts), (name, c)
    if result.status != "ok":
        return
    with (shop.out / str(DAY) / "rejects.csv").open(newline="", encoding="utf-8") as fh:
        rejects = list(csv.DictReader(fh))
    for name in ROWS:
        mine = [r for r in rejects if r["source"] == name]
        # rejects.csv also has rows the engine turned down (an item of an unknown order)
        assert len(mine) >= counts.get(f"{name}.rejected", 0), (name, mine)
        for r in mine:
            assert r["file"] == f"{name}.{fmt}" and r["reason"], r
            limit = lines if name == source else len(ROWS[name]) + first - 1
            assert first <= int(r["line"]) <= limit, (r, limit)
