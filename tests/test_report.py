"""`loyalty report` on a small shop whose figures are worked out by hand."""

from __future__ import annotations

import datetime as dt
import json

from enginekit import Shop, customer, order
from typer.testing import CliRunner

from loyalty_cli import state
from loyalty_cli.cli import app
from loyalty_cli.engine.report import report

PROGRAM = """
earning:
  rules:
    - {id: base, on: order, points: order.total}
tiers:
  basis: spend
  levels:
    - {id: bronze, name: Bronze, min: 0}
    - {id: gold, name: Gold, min: 100}
rewards:
  - {id: r, name: Reward, cost: 50}
segments:
  - {id: active, type: rule, when: orders_count >= 1}
"""


def make_shop(tmp_path) -> Shop:
    shop = Shop(tmp_path, PROGRAM)
    shop.add(
        "customers",
        customer("A", "2026-01-05 10:00:00"),
        customer("B<b>", "2026-01-05 10:00:00"),
        customer("C", "2026-02-20 10:00:00"),
    )
    shop.add(
        "orders",
        order("O1", "A", "2026-01-10 10:00:00", "120.00"),
        order("O2", "B<b>", "2026-02-03 10:00:00", "40.00"),
    )
    shop.add(
        "redemptions",
        # A has 120 points: accepted. B has 40: insufficient_points.
        {
            "redemption_id": "R1",
            "customer_id": "A",
            "reward_id": "r",
            "requested_at": "2026-02-15 10:00:00",
        },
        {
            "redemption_id": "R2",
            "customer_id": "B<b>",
            "reward_id": "r",
            "requested_at": "2026-02-16 10:00:00",
        },
    )
    shop.run("2026-03-01")
    shop.run("2026-03-02")  # the rule segment reads the member view of the run's start
    return shop


def figures(shop: Shop, as_of: dt.date | None = None) -> dict:
    con = state.connect(shop.state, read_only=True)
    try:
        return report(con, as_of)
    finally:
        con.close()


def test_report_figures(tmp_path):
    f = figures(make_shop(tmp_path))
    assert (f["as_of"], f["last_run"]) == ("2026-03-02", "2026-03-02")
    assert f["program"] == {
        "id": "test-club",
        "name": "Test Club",
        "currency": "PLN",
        "point_value": "0.01",
    }
    # A: 120 earned - 50 redeemed = 70 (gold); B 40 and C 0 (bronze); 0.01 PLN a point.
    assert (f["members"], f["available"], f["liability"]) == (3, 110, "1.10")
    assert f["tiers"] == [
        {"tier": "bronze", "members": 2, "points": 40, "pending": 0, "liability": "0.40"},
        {"tier": "gold", "members": 1, "points": 70, "pending": 0, "liability": "0.70"},
    ]
    # Everyone joined within the year: all `new`.
    assert f["tier_movement"] == {
        "since": "2025-03-02",
        "rows": [
            {"from": "new", "to": "bronze", "members": 2},
            {"from": "new", "to": "gold", "members": 1},
        ],
    }
    assert f["monthly"] == [
        {"month": "2026-01", "earned": 120, "returned": 0, "redeemed": 0, "expired": 0},
        {"month": "2026-02", "earned": 40, "returned": 0, "redeemed": 50, "expired": 0},
    ]
    assert f["redemption"] == {
        "earned": 160,
        "redeemed": 50,
        "rate": "0.3125",
        "accepted": 1,
        "rejected": 1,
    }
    [segment] = f["segments"]
    assert (segment["segment_id"], segment["group"], segment["members"]) == ("active", "active", 2)
    assert str(segment["revenue"]) == "160.00"
    # Two buyers: the top 10% is one member, A, with 120 of 160.
    assert f["top_share"] == {
        "buyers": 2,
        "top": 1,
        "revenue": "160.00",
        "top_revenue": "120.00",
        "share": "0.7500",
    }
    assert f["leaderboards"] == {
        "2026-03": [],
        "year": [{"customer_id": "A", "earned": 120}, {"customer_id": "B<b>", "earned": 40}],
    }


def test_report_as_of_an_earlier_day(tmp_path):
    f = figures(make_shop(tmp_path), dt.date(2026, 2, 10))
    # Points are those of runs up to the day: none before the first run on 03-01.
    assert (f["as_of"], f["members"], f["available"]) == ("2026-02-10", 2, 0)
    assert f["monthly"] == []


def test_report_cli_text_json_and_html(tmp_path):
    shop = make_shop(tmp_path)
    html = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["report", "--state", str(shop.state), "--html", str(html)])
    assert res.exit_code == 0, res.output
    assert "members 3 | available 110 points | liability 1.10 PLN" in res.output
    assert "redemption rate 31.2%: 50 of 160 points earned were redeemed" in res.output
    page = html.read_text()
    assert "B&lt;b&gt;" in page and "B<b>" not in page
    assert "<script" not in page and "http" not in page
    res = CliRunner().invoke(app, ["report", "--state", str(shop.state), "-f", "json"])
    assert json.loads(res.output)["available"] == 110

    empty = tmp_path / "empty.duckdb"
    state.connect(empty).close()
    res = CliRunner().invoke(app, ["report", "--state", str(empty)])
    assert res.exit_code == 1 and "the state holds no run yet" in res.output
    res = CliRunner().invoke(app, ["report", "--state", str(tmp_path / "missing.duckdb")])
    assert res.exit_code == 2 and "no state file here" in res.output


def test_report_of_a_program_without_tiers(tmp_path):
    shop = Shop(tmp_path, "earning:\n  rules:\n    - {id: base, on: order, points: order.total}\n")
    shop.add("customers", customer("A", "2026-01-05 10:00:00"), customer("B", "2026-01-05"))
    shop.add("orders", order("O1", "A", "2026-01-10 10:00:00", "30.00"))
    shop.run("2026-03-01")
    f = figures(shop)
    assert [(t["tier"], t["members"], t["points"]) for t in f["tiers"]] == [(None, 2, 30)]
    html = tmp_path / "report.html"
    res = CliRunner().invoke(app, ["report", "--state", str(shop.state), "--html", str(html)])
    assert res.exit_code == 0, res.output
    assert "(no tiers)       2     30" in res.output
    assert "Tier movement" not in res.output
    page = html.read_text()
    assert "<td>(no tiers)</td><td>2</td><td>30</td>" in page
    assert "Tier movement" not in page


def plain(output: str) -> str:
    """The CLI's output with rich's error box taken away and the lines joined."""
    return " ".join(output.replace("│", "").replace("╭", "").replace("╰", "").split())


def test_report_html_never_replaces_what_is_not_a_report(tmp_path, monkeypatch):
    import os

    monkeypatch.setenv("COLUMNS", "400")  # the usage error's box keeps paths on one line
    shop = make_shop(tmp_path)
    st = str(shop.state)
    ledger = shop.state.read_bytes()

    def html(target) -> tuple[int, str]:
        res = CliRunner().invoke(app, ["report", "--state", st, "--html", str(target)])
        return res.exit_code, plain(res.output)

    code, out = html(shop.state)
    assert code == 2
    assert f"Invalid value for --html: {st!r} is the state file; name another file" in out
    assert shop.state.read_bytes() == ledger
    code, out = html(tmp_path)
    assert code == 2
    assert f"--html: {str(tmp_path)!r} is a folder; name the HTML file to write" in out
    notes = tmp_path / "notes.html"
    notes.write_text("<p>mine</p>")
    code, out = html(notes)
    assert code == 2
    assert f"{str(notes)!r} exists and is not an HTML report written by loyalty" in out
    assert notes.read_text() == "<p>mine</p>"
    link = tmp_path / "link.html"
    link.symlink_to(notes)
    code, out = html(link)
    assert (code, link.is_symlink()) == (2, True)
    assert f"{str(link)!r} is a symbolic link; name the file itself" in out
    fifo = tmp_path / "fifo.html"
    os.mkfifo(fifo)
    code, out = html(fifo)
    assert code == 2
    assert f"{str(fifo)!r} is not a regular file (a FIFO, socket or device)" in out
    assert (tmp_path / "fifo.html").exists() and not (tmp_path / "fifo.html").is_file()
    under_a_file = notes / "report.html"
    code, out = html(under_a_file)
    assert code == 2 and f"its folder cannot be made: {str(notes)!r} is not a folder" in out

    # A report written by loyalty is replaced, and so is an empty file; new folders are made.
    page = tmp_path / "reports" / "report.html"
    assert html(page)[0] == 0
    first = page.read_text()
    assert first.startswith('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n')
    assert '<meta name="generator" content="loyalty report">' in first
    assert html(page)[0] == 0 and page.read_text() == first
    empty = tmp_path / "empty.html"
    empty.write_text("")
    assert html(empty)[0] == 0 and empty.read_text() == first
    assert sorted(p.name for p in page.parent.iterdir()) == ["report.html"]  # no temp file


def test_report_days_out_of_range_are_usage_errors(tmp_path):
    shop = make_shop(tmp_path)
    for day in ("0001-01-01", "1899-12-31", "3000-01-01", "9999-12-31"):
        res = CliRunner().invoke(app, ["report", "--state", str(shop.state), "--as-of", day])
        assert res.exit_code == 2
        assert (
            f"Invalid value for --as-of: {day} is out of range; days from 1900-01-01 to "
            "2999-12-31 are accepted" in plain(res.output)
        )
    res = CliRunner().invoke(app, ["report", "--state", str(shop.state), "--as-of", "1900-01-01"])
    assert res.exit_code == 0 and "as of 1900-01-01" in res.output


def test_report_simulate_and_explain_offer_text_and_json_only(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    for command in ("report", "simulate", "explain"):
        res = CliRunner().invoke(app, [command, "--help"])
        assert "<text|json>" in res.output, command
        assert "github" not in res.output
        res = CliRunner().invoke(app, [command, "-f", "github"])
        assert res.exit_code == 2
        assert (
            "Invalid value for '--format' / '-f': Value error, 'github' is not one of 'text', "
            "'json'." in plain(res.output)
        )


def test_the_movement_matrix_has_a_row_for_a_level_nobody_is_on_now(tmp_path):
    """B was silver a year before 2027-02-01 and is demoted to base that day: the matrix
    has a silver row though nobody is silver on the day, and the tiers table lists silver
    with 0 members."""
    shop = Shop(
        tmp_path,
        """
earning:
  rules:
    - {id: base, on: order, points: order.total}
tiers:
  basis: spend
  levels:
    - {id: base, name: Base, min: 0}
    - {id: silver, name: Silver, min: 1000}
""",
    )
    shop.add("customers", customer("A", "2026-01-01 10:00:00"), customer("B", "2026-01-01"))
    shop.add("orders", order("O1", "B", "2026-01-10 10:00:00", "1500.00"))
    shop.run("2026-01-10")
    shop.run("2027-02-01", catch_up=False)
    f = figures(shop)
    assert [(t["tier"], t["members"]) for t in f["tiers"]] == [("base", 2), ("silver", 0)]
    res = CliRunner().invoke(app, ["report", "--state", str(shop.state)])
    assert res.exit_code == 0, res.output
    matrix = res.output.split("Tier movement since 2026-02-01")[1].splitlines()
    rows = [line.split() for line in matrix if line.strip() and "─" not in line][:3]
    assert rows == [["from", "\\", "to", "base"], ["base", "1"], ["silver", "1"]]
