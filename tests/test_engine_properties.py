"""Properties of runs over generated shops (hypothesis), beyond hand-picked cases.

- Exports overlap from night to night (SPEC 3, 9.2): a run over the whole history files,
  whose rows after the run's day wait, gives the same points as a run over that night's
  rows only.
- Within a run, rows are taken in timestamp order, then by key (9.3): the order of the lines
  in an export changes nothing but entry numbers.
- Times written in UTC or with offsets are their local wall times (9.1), also around the
  change of the clocks.
- One shop's exports as CSV, typed Parquet or JSON lines book the same points.
- After every run, each member's balances equal their lots and their ledger (enginekit).

The shops are small (four members, six nights) and every row is valid and dated after its
member joined, so no row is rejected and both ways of exporting see the same rows. Some
events have properties, and some no event_id (keyed by a hash of the row).
"""

from __future__ import annotations

import datetime as dt
import json
import random
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest
from enginekit import HEADERS, Shop, customer, event, hunt_settings, item, order
from hypothesis import given
from hypothesis import strategies as st
from test_engine_reference import A as REFERENCE_PROGRAM

from loyalty_cli import state
from loyalty_cli.columns import DUCKDB_TYPES, SOURCE_COLUMNS
from loyalty_cli.engine.sources import TIME_COLUMN

# The reference model's first program (pending points, caps, bonuses, tiers, a coupon pool).
PROGRAM = REFERENCE_PROGRAM.program

START = dt.date(2026, 3, 2)  # a Monday: the six nights cross no ISO week boundary but one
NIGHTS = 6
DAYS = [START + dt.timedelta(days=i) for i in range(NIGHTS)]
MEMBERS = ["C1", "C2", "C3", "C4"]


def _at(day: dt.date, second: int, hour: int = 8) -> str:
    """A local time on day, second seconds after `hour` o'clock (by the clock on the wall)."""
    t = dt.datetime.combine(day, dt.time(hour)) + dt.timedelta(seconds=second)
    return t.strftime("%Y-%m-%d %H:%M:%S")


@st.composite
def shops(
    draw, start: dt.date = START, hour: int = 8, span: int = 6 * 3600
) -> dict[str, list[dict]]:
    """Rows of a small shop over six nights from start, each dated after its member joined,
    at times from `hour` o'clock to `span` seconds later (08:00 to 14:00, well clear of any
    change of the clocks, unless told otherwise)."""
    days = [start + dt.timedelta(days=i) for i in range(NIGHTS)]
    joined = {cid: draw(st.integers(-3, NIGHTS - 1), label=f"join day of {cid}") for cid in MEMBERS}
    rows: dict[str, list[dict]] = {k: [] for k in ("customers", "orders", "order_items")}
    rows.update({k: [] for k in ("returns", "events", "redemptions", "adjustments")})
    for cid, j in joined.items():
        rows["customers"].append(customer(cid, joined=_at(start + dt.timedelta(days=j), 0, hour)))

    def when(cid: str) -> tuple[dt.date, int]:
        day = draw(st.integers(max(joined[cid], 0), NIGHTS - 1))
        return days[day], draw(st.integers(1, span))

    for n in range(draw(st.integers(1, 8))):
        cid = draw(st.sampled_from(MEMBERS))
        day, sec = when(cid)
        cents = draw(st.integers(0, 30000))
        total = Decimal(cents) / 100
        status = draw(st.sampled_from(["completed"] * 5 + ["cancelled"]))
        oid = f"O{n}"
        rows["orders"].append(order(oid, cid, _at(day, sec, hour), f"{total:.2f}", status=status))
        for k in range(draw(st.integers(0, 2))):
            tags = draw(st.sampled_from(["new", "", "new;sale", "sale"]))
            rows["order_items"].append(item(oid, f"S{n}-{k}", "1", "5.00", tags=tags))
        if status == "completed" and cents and draw(st.booleans()):
            back = draw(st.integers(0, NIGHTS - 1 - days.index(day)))
            amount = Decimal(draw(st.integers(1, cents))) / 100
            rows["returns"].append(
                {
                    "order_id": oid,
                    "returned_at": _at(day + dt.timedelta(days=back), sec + 60, hour),
                    "amount": f"{amount:.2f}",
                }
            )
    for n in range(draw(st.integers(1, 14))):
        cid = draw(st.sampled_from(MEMBERS))
        day, sec = when(cid)
        kind = draw(st.sampled_from(["page_view"] * 4 + ["email_open"] * 2 + ["unsubscribe"]))
        row = event(f"E{n}", cid, _at(day, sec, hour), kind)
        if draw(st.integers(0, 2)) == 0:
            row["properties"] = json.dumps({"page": f"/p{n}", "n": draw(st.integers(0, 3))})
        if draw(st.integers(0, 3)) == 0:  # keyed by a hash of the row (9.21)
            row["event_id"] = ""
        rows["events"].append(row)
    for n in range(draw(st.integers(1, 4))):
        cid = draw(st.sampled_from(MEMBERS))
        day, sec = when(cid)
        reward = draw(st.sampled_from(["small", "big", "vip", "nope"]))
        rows["redemptions"].append(
            {
                "redemption_id": f"R{n}",
                "customer_id": cid,
                "reward_id": reward,
                "requested_at": _at(day, sec, hour),
            }
        )
    for n in range(draw(st.integers(0, 2))):
        cid = draw(st.sampled_from(MEMBERS))
        day, sec = when(cid)
        rows["adjustments"].append(
            {
                "adjustment_id": f"A{n}",
                "customer_id": cid,
                "points": str(draw(st.integers(-30, 30).filter(bool))),
                "reason": "service",
                "created_at": _at(day, sec, hour),
            }
        )
    return rows


def _day_of(source: str, row: dict, orders_day: dict[str, str]) -> str | None:
    """The local day a row belongs to in a nightly delta (None: in every night's file)."""
    if source == "customers":
        return None
    if source == "order_items":
        return orders_day[row["order_id"]]
    return row[TIME_COLUMN[source]][:10]


def outcome(shop: Shop, item_numbers: bool = True) -> dict[str, list[tuple]]:
    """What a run decides, without entry and lot numbers (they follow export positions).

    Without `item_numbers`, an item's source id is its order's: items have no key, so
    `O1#2` is the second item line of O1 in the export."""
    source_id = "source_id" if item_numbers else "regexp_replace(source_id, '#[0-9]+$', '')"
    con = state.connect(shop.state, read_only=True)
    try:
        return {
            "ledger": con.execute(
                f"""SELECT run_on, customer_id, kind, points, pending, rule_id, {source_id},
                          occurred_on, reason, shortfall FROM ledger ORDER BY ALL"""
            ).fetchall(),
            "lots": con.execute(
                """SELECT customer_id, earned_on, available_on, expires_on, amount, remaining,
                          status, order_id, kind, rule_id FROM lots ORDER BY ALL"""
            ).fetchall(),
            "tiers": con.execute("SELECT * FROM tier_changes ORDER BY ALL").fetchall(),
            "redemptions": con.execute(
                "SELECT redemption_id, status, reason, cost FROM redemptions ORDER BY ALL"
            ).fetchall(),
            "badges": con.execute("SELECT * FROM badges ORDER BY ALL").fetchall(),
        }
    finally:
        con.close()


SETTINGS = hunt_settings(3)


@SETTINGS
@given(rows=shops())
def test_full_exports_and_nightly_deltas_give_the_same_points(tmp_path_factory, rows):
    root: Path = tmp_path_factory.mktemp("shop")
    full = Shop(root / "full", PROGRAM)
    for source, source_rows in rows.items():
        full.add(source, *source_rows)
    delta = Shop(root / "delta", PROGRAM)
    orders_day = {o["order_id"]: o["ordered_at"][:10] for o in rows["orders"]}
    for day in DAYS:
        full.run(day.isoformat())
        for source, source_rows in rows.items():
            delta.rows[source] = [
                r for r in source_rows if _day_of(source, r, orders_day) in (None, str(day))
            ]
        delta.export()
        delta.run(day.isoformat())
    assert outcome(full) == outcome(delta)
    last = DAYS[-1].isoformat()
    assert full.csv(last, "balances.csv") == delta.csv(last, "balances.csv")


@SETTINGS
@given(rows=shops(), seed=st.integers(0, 2**32 - 1))
def test_the_order_of_export_lines_changes_nothing(tmp_path_factory, rows, seed):
    root: Path = tmp_path_factory.mktemp("shop")
    shuffled_rows = {k: list(v) for k, v in rows.items()}
    for source_rows in shuffled_rows.values():
        random.Random(seed).shuffle(source_rows)
    shops_ = []
    for name, data in (("as-written", rows), ("shuffled", shuffled_rows)):
        shop = Shop(root / name, PROGRAM)
        for source, source_rows in data.items():
            shop.add(source, *source_rows)
        shop.backfill(DAYS[0].isoformat(), DAYS[-1].isoformat())
        shops_.append(shop)
    a, b = shops_
    assert outcome(a, item_numbers=False) == outcome(b, item_numbers=False)
    for day in DAYS:
        assert a.csv(str(day), "balances.csv") == b.csv(str(day), "balances.csv")


def _written_as(local: str, style: str) -> str:
    """A local time of Europe/Warsaw in March before the 29th (UTC+1), written another way."""
    t = dt.datetime.fromisoformat(local)
    if style == "T":
        return t.isoformat()
    if style == "Z":
        return (t - dt.timedelta(hours=1)).isoformat() + "Z"
    if style == "+01:00":
        return t.isoformat() + "+01:00"
    # New York, UTC-5 until its own DST change on 8 March 2026, UTC-4 after it.
    offset = 4 if t.date() >= dt.date(2026, 3, 8) else 5
    return (t - dt.timedelta(hours=1 + offset)).isoformat() + f"-0{offset}:00"


@SETTINGS
@given(rows=shops(), data=st.data())
def test_times_written_in_utc_or_with_offsets_are_the_same_local_times(
    tmp_path_factory, rows, data
):
    """9.1: a timestamp with `Z` or an offset is converted to the program's timezone, so a
    shop exported in UTC or with offsets books what it books with local times; events
    without an id get the same key (a hash of the local time) either way."""
    root: Path = tmp_path_factory.mktemp("shop")
    styles = st.sampled_from(["T", "Z", "+01:00", "-05:00"])
    no_ids = data.draw(st.sets(st.integers(0, 15)), label="events without an id")
    rows = {k: [dict(r) for r in v] for k, v in rows.items()}
    for n, e in enumerate(rows["events"]):
        if n in no_ids:
            e["event_id"] = ""
    restamped = {k: [dict(r) for r in v] for k, v in rows.items()}
    for source, column in TIME_COLUMN.items():
        for r in restamped[source]:
            r[column] = _written_as(r[column], data.draw(styles, label=f"{source} time"))
    shops_ = []
    for name, export in (("local", rows), ("restamped", restamped)):
        shop = Shop(root / name, PROGRAM)
        for source, source_rows in export.items():
            shop.add(source, *source_rows)
        shop.backfill(DAYS[0].isoformat(), DAYS[-1].isoformat())
        shops_.append(shop)
    a, b = shops_
    assert outcome(a) == outcome(b)
    assert a.csv(str(DAYS[-1]), "balances.csv") == b.csv(str(DAYS[-1]), "balances.csv")


WARSAW = ZoneInfo("Europe/Warsaw")


def _written_in_zones(local: str, style: str, fold: int) -> str:
    """A wall time of Europe/Warsaw written in UTC or with an offset. A time the clocks
    skip (the spring gap) is written with the offset before the change, which puts it the
    gap's length later; a time that happens twice is written as its occurrence `fold`."""
    t = dt.datetime.fromisoformat(local)
    fold = (
        fold
        if t.replace(tzinfo=WARSAW, fold=0).utcoffset()
        != t.replace(tzinfo=WARSAW, fold=1).utcoffset()
        and _exists(t)
        else 0
    )
    aware = t.replace(tzinfo=WARSAW, fold=fold)
    if style == "Z":
        return aware.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == "offset":
        return aware.isoformat()
    return aware.astimezone(ZoneInfo("America/New_York")).isoformat()


def _exists(t: dt.datetime) -> bool:
    """Whether a wall time happens in Warsaw (not in the spring gap)."""
    aware = t.replace(tzinfo=WARSAW)
    return aware.astimezone(dt.UTC).astimezone(WARSAW).replace(tzinfo=None) == t


@pytest.mark.parametrize(
    "start", [dt.date(2026, 3, 26), dt.date(2026, 10, 22)], ids=["spring-gap", "autumn-fold"]
)
@SETTINGS
@given(data=st.data())
def test_night_times_around_a_change_of_the_clocks_written_in_utc(tmp_path_factory, start, data):
    """9.1 around the change of the clocks: rows between 00:00 and 04:00, on nights that
    include the last Sunday of March or October. Written in UTC or with offsets they book
    what their wall times book: a time in the spring gap moves on by the gap, either
    way; a time of the repeated autumn hour is its wall time, whichever occurrence."""
    rows = data.draw(shops(start, hour=0, span=4 * 3600), label="rows")
    days = [start + dt.timedelta(days=i) for i in range(NIGHTS)]
    root: Path = tmp_path_factory.mktemp("shop")
    styles = st.sampled_from(["Z", "offset", "New York"])
    restamped = {k: [dict(r) for r in v] for k, v in rows.items()}
    for source, column in TIME_COLUMN.items():
        for r in restamped[source]:
            style = data.draw(styles, label=f"{source} time")
            r[column] = _written_in_zones(r[column], style, data.draw(st.integers(0, 1)))
    shops_ = []
    for name, export in (("local", rows), ("restamped", restamped)):
        shop = Shop(root / name, PROGRAM)
        for source, source_rows in export.items():
            shop.add(source, *source_rows)
        shop.backfill(days[0].isoformat(), days[-1].isoformat())
        shops_.append(shop)
    a, b = shops_
    assert outcome(a) == outcome(b)
    assert a.csv(str(days[-1]), "balances.csv") == b.csv(str(days[-1]), "balances.csv")


def _typed(source: str, column: str) -> str:
    """The column of a source's CSV (read as text) as the data contract's type: what a shop's
    Parquet export holds (tags as a list, times without a zone)."""
    kind = SOURCE_COLUMNS[source][column][0]
    quoted = f'"{column}"'
    if kind == "list":
        return f"CASE WHEN {quoted} <> '' THEN string_split({quoted}, ';') END AS {quoted}"
    if kind == "json":
        return f"CAST({quoted} AS JSON) AS {quoted}"
    return f"CAST(nullif({quoted}, '') AS {DUCKDB_TYPES[kind]}) AS {quoted}"


def _convert(shop: Shop, fmt: str) -> None:
    """Rewrite the shop's CSV exports as typed Parquet or as JSON lines (every value as the
    text the CSV holds, JSON as a nested object, empty ones left out), and point its
    program at them."""
    con = duckdb.connect()
    for source, header in HEADERS.items():
        csv = shop.data / f"{source}.csv"
        read = f"read_csv('{csv}', all_varchar=true, header=true, columns=" + (
            "{" + ", ".join(f"'{c}': 'VARCHAR'" for c in header) + "})"
        )
        if fmt == "parquet":
            cols = ", ".join(_typed(source, c) for c in header)
            con.execute(f"COPY (SELECT {cols} FROM {read}) TO '{shop.data / source}.parquet'")
        else:
            rows = con.execute(f"SELECT * FROM {read}").fetchall()
            nested = {c for c in header if SOURCE_COLUMNS[source][c][0] == "json"}
            with (shop.data / f"{source}.jsonl").open("w") as fh:
                for row in rows:
                    values = {
                        c: json.loads(v) if c in nested else v
                        for c, v in zip(header, row, strict=True)
                        if v
                    }
                    fh.write(json.dumps(values) + "\n")
        csv.unlink()
    con.close()
    shop.program.write_text(shop.program.read_text().replace(".csv}", f".{fmt}}}"))


@SETTINGS
@given(rows=shops())
def test_csv_parquet_and_json_lines_exports_give_the_same_points(tmp_path_factory, rows):
    """One shop's history exported as CSV, as typed Parquet and as JSON lines: each run
    books the same points, tiers, redemptions and badges."""
    root: Path = tmp_path_factory.mktemp("shop")
    outcomes = []
    for fmt in ("csv", "parquet", "jsonl"):
        shop = Shop(root / fmt, PROGRAM)
        for source, source_rows in rows.items():
            shop.add(source, *source_rows)
        if fmt != "csv":
            _convert(shop, fmt)
        shop.backfill(DAYS[0].isoformat(), DAYS[-1].isoformat())
        balances = [shop.csv(str(day), "balances.csv") for day in DAYS]
        outcomes.append((outcome(shop), balances))
    assert outcomes[1] == outcomes[0], "parquet"
    assert outcomes[2] == outcomes[0], "json lines"
