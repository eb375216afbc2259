"""`loyalty init`: the starter program for the answers given, checked, with sample data."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loyalty_cli.cli import app
from loyalty_cli.config.model import load_program
from loyalty_cli.diagnostics import LoyaltyError
from loyalty_cli.engine.run import run
from loyalty_cli.init import Answers, answer_problem, init, render, slug

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

    # A bad answer given as an option is a usage error naming the option, not a place in
    # a program.yaml that was never written.
    res = CliRunner().invoke(
        app, ["init", str(tmp_path / "mars"), "--timezone", "Mars/Olympus", "--yes"]
    )
    assert res.exit_code == 2
    assert (
        "Invalid value for '--timezone': unknown timezone 'Mars/Olympus' (Use an IANA name "
        "such as 'Europe/Warsaw' or 'UTC'.)" in " ".join(res.output.replace("│", "").split())
    )
    assert "program.yaml" not in res.output
    assert not (tmp_path / "mars").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["busy"]  # no temporary folder left
    # The core alone still checks the whole program and names the files it would write.
    with pytest.raises(LoyaltyError) as caught:
        init(tmp_path / "mars", Answers(timezone="Mars/Olympus"))
    assert caught.value.exit_code == 1
    assert [(d.code, d.path) for d in caught.value.diagnostics] == [
        ("R307", str(tmp_path / "mars" / "program.yaml"))
    ]
    assert [p.name for p in tmp_path.iterdir()] == ["busy"]

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
    # No default region: answered with a dash, since Enter takes the default (PL).
    res = CliRunner().invoke(
        app,
        ["init", str(tmp_path / "three"), "--no-sample-data", "--name", "Three"],
        input="\n\n\n\n\n-\n",
    )
    assert res.exit_code == 0, res.output
    assert "(- for none) [PL]:" in res.output
    messaging = load_program(tmp_path / "three" / "program.yaml").data["messaging"]
    assert "default_region" not in messaging


def plain(output: str) -> str:
    """The CLI's output with rich's error box taken away and the lines joined."""
    return " ".join(output.replace("│", "").replace("╭", "").replace("╰", "").split())


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--name", "", "Invalid value for '--name': '' should be non-empty"),
        ("--id", "-club", "Invalid value for '--id': '-club' does not match"),
        ("--currency", "EURO", "Invalid value for '--currency': 'EURO' does not match"),
        ("--timezone", "Mars/Base", "Invalid value for '--timezone': unknown timezone"),
        ("--from-email", "club", "Invalid value for '--from-email': 'club' does not match"),
        ("--sms-sender", "TOO LONG A NAME", "Invalid value for '--sms-sender'"),
        ("--region", "XX", "Invalid value for '--region': unknown phone region 'XX'"),
    ],
)
def test_a_bad_option_is_a_usage_error_naming_it(tmp_path, option, value, message):
    res = CliRunner().invoke(app, ["init", str(tmp_path / "club"), "--yes", option, value])
    assert res.exit_code == 2
    assert message in plain(res.output)
    assert list(tmp_path.iterdir()) == []


def test_several_bad_options_are_all_named(tmp_path):
    res = CliRunner().invoke(
        app, ["init", str(tmp_path / "club"), "--yes", "--name", "", "--region", "XX"]
    )
    assert res.exit_code == 2
    out = plain(res.output)
    assert "Invalid value for '--name': '' should be non-empty" in out
    assert "Invalid value for '--region': unknown phone region 'XX'" in out


def test_answer_problem():
    assert answer_problem("name", "Bike Club") is None
    assert answer_problem("region", "de") is None  # written in upper case
    assert answer_problem("region", "") is None  # no default region
    assert answer_problem("region", "XX") == (
        "unknown phone region 'XX' (Use a two-letter country code such as 'PL' or 'DE'.)"
    )


def test_the_wizard_asks_again_after_a_bad_answer(tmp_path, monkeypatch):
    import loyalty_cli.cli as cli

    monkeypatch.setattr(cli, "_interactive", lambda: True)
    # name, id, currency, then a bad time zone and a good one, senders, a bad region, DE
    answers = "Bike Club\n\nEUR\nMars/Base\nEurope/Berlin\n\n\nXX\nDE\n"
    res = CliRunner().invoke(
        app, ["init", str(tmp_path / "bike"), "--no-sample-data"], input=answers
    )
    assert res.exit_code == 0, res.output
    assert res.output.count("Time zone (IANA name)") == 2
    assert "error: unknown timezone 'Mars/Base'" in res.output
    assert "error: unknown phone region 'XX'" in res.output
    loaded = load_program(tmp_path / "bike" / "program.yaml")
    assert loaded.timezone == "Europe/Berlin"
    assert loaded.data["messaging"]["default_region"] == "DE"


def test_init_says_what_is_wrong_with_the_folder(tmp_path):
    afile = tmp_path / "program.yaml"
    afile.write_text("mine")
    res = CliRunner().invoke(app, ["init", str(afile), "--yes"])
    assert res.exit_code == 2
    assert f"{afile}: error[D615] is a file, not a folder" in res.output
    res = CliRunner().invoke(app, ["init", str(afile / "sub"), "--yes"])
    assert res.exit_code == 2
    assert f"error[D615] cannot be made: {str(afile)!r} is a file, not a folder" in res.output
    assert afile.read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir()] == ["program.yaml"]
    # A folder that cannot be written into, even as root: /proc takes no folders.
    if Path("/proc/self").is_dir():
        res = CliRunner().invoke(app, ["init", "/proc/loyalty-init-test/club", "--yes"])
        assert res.exit_code == 2
        assert "/proc/loyalty-init-test/club: error[D615] cannot be written: " in res.output


def test_without_sample_data_the_next_command_names_the_shops_exports(tmp_path):
    res = CliRunner().invoke(app, ["init", str(tmp_path / "club"), "--yes", "--no-sample-data"])
    assert res.exit_code == 0, res.output
    club = tmp_path / "club"
    assert res.output.splitlines()[1:] == [
        "next:",
        f"  loyalty validate {club / 'program.yaml'}",
        f"  loyalty run {club / 'program.yaml'} --data EXPORTS --state {club / 'loyalty.duckdb'}"
        f" --out {club / 'out'}",
        "(EXPORTS: the folder holding your shop's exports)",
    ]
