"""`loyalty init`: the starter program for the answers given, checked, with sample data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from typer.testing import CliRunner

from loyalty_cli.cli import app
from loyalty_cli.config.model import load_program
from loyalty_cli.engine.run import run
from loyalty_cli.init import Answers, init, render, slug

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "programs" / "starter"


def files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "__pycache__" not in p.parts
    }


def test_the_default_answers_give_the_starter_example(tmp_path):
    program = init(tmp_path / "club", Answers(sample_data=False))
    written = files(program.parent)
    example = files(EXAMPLE)
    # The README's commands name the exports' folder: `data` here, the shipped demo there.
    assert written.pop("README.md") == render(Answers(), "data")["README.md"].encode()
    assert example.pop("README.md") == render(Answers(), "../../data/demo")["README.md"].encode()
    assert written == example


def test_answers_and_sample_data_make_a_program_that_runs(tmp_path):
    answers = Answers(
        name="Café & Co: the club",
        currency="eur",
        timezone="Europe/Berlin",
        from_email="Café <club@cafe.example>",
        sms_sender="CAFE",
        region="",
    )
    program = init(tmp_path / "cafe", answers, today=dt.date(2026, 11, 24))
    loaded = load_program(program)
    assert loaded.data["program"]["id"] == "cafe-co-the-club"
    assert loaded.data["program"]["name"] == "Café & Co: the club"
    assert (loaded.currency, loaded.timezone) == ("EUR", "Europe/Berlin")
    assert loaded.data["messaging"] == {
        "max_per_week": 2,
        "from_email": "Café <club@cafe.example>",
        "sms_sender": "CAFE",
    }
    assert loaded.data["rewards"][0]["name"] == "20 EUR off"
    # 18 months of exports up to yesterday, in the program's currency.
    orders = (program.parent / "data" / "orders.csv").read_text().splitlines()
    assert orders[0].startswith("order_id,customer_id,ordered_at,total,currency")
    assert all(",EUR," in line for line in orders[1:])
    assert max(line.split(",")[2][:10] for line in orders[1:]) <= "2026-11-23"
    [result] = run(
        program,
        program.parent / "data",
        dt.date(2026, 11, 23),
        tmp_path / "state.duckdb",
        tmp_path / "out",
    )
    assert result.status == "ok" and result.rejects == 0
    assert result.counts["earning"]["base.points"] > 0
    assert result.summary["currency"] == "EUR"


def test_init_refuses_a_folder_with_files_and_a_bad_answer(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    res = CliRunner().invoke(app, ["init", str(busy), "--yes"])
    assert res.exit_code == 2 and "D615" in res.output
    assert [p.name for p in busy.iterdir()] == ["notes.txt"]

    res = CliRunner().invoke(
        app, ["init", str(tmp_path / "mars"), "--timezone", "Mars/Olympus", "--yes"]
    )
    assert res.exit_code == 1 and "R307" in res.output
    assert f"{tmp_path / 'mars' / 'program.yaml'}:" in res.output
    assert not (tmp_path / "mars").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["busy"]  # no temporary folder left

    # An empty folder is fine; without --yes and without a terminal nothing is asked.
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(app, ["init", str(empty), "--no-sample-data", "--name", "Shop Club"])
    assert res.exit_code == 0, res.output
    assert load_program(empty / "program.yaml").id == "shop-club"
    assert not (empty / "data").exists()


def test_slug():
    assert slug("Fashion Club") == "fashion-club"
    assert slug("  Łódź Loyalty! ") == "lodz-loyalty"
    assert slug("***") == "loyalty-club"


def test_init_asks_in_a_terminal_for_what_the_options_do_not_give(tmp_path, monkeypatch):
    import loyalty_cli.cli as cli

    monkeypatch.setattr(cli, "_interactive", lambda: True)
    # name, id (Enter: the slug), currency, time zone, email sender, SMS sender, region
    answers = "Bike Club\n\nEUR\nEurope/Berlin\nclub@bike.example\nBIKE\nDE\n"
    res = CliRunner().invoke(
        app, ["init", str(tmp_path / "bike"), "--no-sample-data"], input=answers
    )
    assert res.exit_code == 0, res.output
    assert "Program id (letters, digits and dashes) [bike-club]:" in res.output
    loaded = load_program(tmp_path / "bike" / "program.yaml")
    assert (loaded.id, loaded.currency, loaded.timezone) == ("bike-club", "EUR", "Europe/Berlin")
    assert loaded.data["messaging"] == {
        "max_per_week": 2,
        "from_email": "club@bike.example",
        "sms_sender": "BIKE",
        "default_region": "DE",
    }
    # An option given is not asked again.
    res = CliRunner().invoke(
        app,
        ["init", str(tmp_path / "two"), "--no-sample-data", "--name", "Two", "--currency", "USD"],
        input="\n\n\n\n\n",
    )
    assert res.exit_code == 0, res.output
    assert "Program name" not in res.output and "Currency" not in res.output
    assert load_program(tmp_path / "two" / "program.yaml").id == "two"
