"""Checked programs remembered between runs (loyalty_cli.config.progcache)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import pytest

from loyalty_cli import exprbase
from loyalty_cli.config import progcache, validate
from loyalty_cli.config.model import load_program
from loyalty_cli.diagnostics import LoyaltyError

PROGRAM = """\
version: 1
program:
  id: cache-club
  name: Cache Club
  currency: PLN
  timezone: Europe/Warsaw
  starts_on: 2026-04-01
sources:
  customers: {path: customers.csv}
  orders: {path: orders.csv}
earning:
  rules:
    - {id: base, on: order, points: order.total * 2, when: "order.total >= 10"}
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("LOYALTY_CACHE_DIR", str(folder))
    return folder


def checks_forgotten(monkeypatch) -> None:
    """As in a new process: no expression checked yet, and no check may happen."""
    monkeypatch.setattr(exprbase, "_CHECKED", {})

    def refuse(paths):
        raise AssertionError(f"the program was checked again: {paths}")

    monkeypatch.setattr(validate, "validate_paths", refuse)


def test_a_checked_program_is_used_again_without_checking(tmp_path, cache, monkeypatch):
    path = tmp_path / "program.yaml"
    path.write_text(PROGRAM)
    first = load_program(path)
    assert len(list(cache.glob("program-*.json"))) == 1

    checks_forgotten(monkeypatch)
    again = load_program(path)
    assert again.data == first.data
    assert again.data["program"]["starts_on"] == "2026-04-01"  # YAML 1.2: text
    assert again.rules[0]["points"] == "order.total * 2"
    # The expressions compile from memory, to the SQL the checker made.
    ctx = exprbase.ExprContext.for_rule("order")
    assert exprbase.memo_key("order.total * 2", ctx, "value") in exprbase._CHECKED
    assert exprbase.compile_expression("order.total * 2", ctx) == '"order"."total" * 2'


def test_a_remembered_program_keeps_the_order_of_its_mappings(tmp_path, cache, monkeypatch):
    """rfm groups are tried in the order written: a cached program that sorted its keys
    tried `low: "true"` before `top`, and placed everyone in `low`."""
    path = tmp_path / "program.yaml"
    path.write_text(
        PROGRAM
        + "segments:\n  - id: rfm\n    type: rfm\n    scores: 2\n"
        + '    groups: {top: "r >= 2", mid: "f >= 2", low: "true"}\n'
    )
    load_program(path)
    checks_forgotten(monkeypatch)
    again = load_program(path)
    assert list(again.data["segments"][0]["groups"]) == ["top", "mid", "low"]
    assert list(again.data["program"])[:2] == ["id", "name"]


def test_dates_and_numbers_keep_their_types():
    data = {"a": dt.date(2026, 2, 28), "b": dt.datetime(2026, 2, 28, 9, 30), "c": [1, 2.5, True]}
    back = progcache._decode(json.loads(json.dumps(progcache._encode(data))))
    assert back == data
    assert [type(v) for v in back["c"]] == [int, float, bool]
    with pytest.raises(progcache._Unsupported):
        progcache._encode({"x": {1, 2}})


def test_a_changed_program_is_checked_again(tmp_path, cache):
    path = tmp_path / "program.yaml"
    path.write_text(PROGRAM)
    load_program(path)
    path.write_text(PROGRAM.replace("order.total * 2", "order.totl * 2"))
    with pytest.raises(LoyaltyError) as err:
        load_program(path)
    assert "totl" in str(err.value.diagnostics)


def test_the_same_text_elsewhere_and_other_code_are_not_taken(tmp_path, cache, monkeypatch):
    path = tmp_path / "program.yaml"
    path.write_text(PROGRAM)
    load_program(path)
    [entry] = cache.glob("program-*.json")
    saved = json.loads(entry.read_text())
    entry.write_text(json.dumps({**saved, "code": "another version"}))
    assert progcache.lookup(path, path.read_bytes()) is None
    other = tmp_path / "copy" / "program.yaml"
    other.parent.mkdir()
    other.write_text(PROGRAM)
    assert progcache.lookup(other, other.read_bytes()) is None


WORKFLOW = """\
version: 1
workflow:
  id: hello
  trigger: {segment_enter: {segment: big}}
  steps:
    - {id: hi, send: {channel: email, template: hi}}
"""


def test_a_program_with_workflows_is_kept_until_a_file_it_reads_changes(
    tmp_path, cache, monkeypatch
):
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "w.yaml").write_text(WORKFLOW)
    (tmp_path / "templates").mkdir()
    for part in ("subject", "html", "txt"):
        (tmp_path / "templates" / f"hi.{part}.j2").write_text("Hi {{ customer.first_name }}")
    (tmp_path / "codes.csv").write_text("code\nA1\n")
    path = tmp_path / "program.yaml"
    path.write_text(
        PROGRAM
        + "segments:\n  - {id: big, type: rule, when: 'orders_count >= 1'}\n"
        + "coupons:\n  pools:\n    - {id: p, source: file, path: codes.csv}\n"
        + "workflows: ['workflows/*.yaml']\n"
    )
    first = load_program(path)
    assert len(list(cache.glob("program-*.json"))) == 1
    with monkeypatch.context() as m:
        checks_forgotten(m)
        again = load_program(path)
    assert again.data == first.data
    assert [w for _, w in again.workflows] == [w for _, w in first.workflows]
    assert [p.resolve() for p, _ in again.workflows] == [tmp_path / "workflows" / "w.yaml"]

    text = path.read_bytes()

    def remembered() -> bool:
        return progcache.lookup(path, text) is not None

    assert remembered()
    # A template changed (a broken one must be found by the check).
    (tmp_path / "templates" / "hi.txt.j2").write_text("Hi {{ customer.frist_name }")
    assert not remembered()
    (tmp_path / "templates" / "hi.txt.j2").write_text("Hi {{ customer.first_name }}")
    assert remembered()
    # Another file in the templates folder (it could be included).
    (tmp_path / "templates" / "base.j2").write_text("x")
    assert not remembered()
    (tmp_path / "templates" / "base.j2").unlink()
    # A workflow file changed, or a new one matches the glob.
    (tmp_path / "workflows" / "w.yaml").write_text(WORKFLOW.replace("id: hello", "id: hey"))
    assert not remembered()
    (tmp_path / "workflows" / "w.yaml").write_text(WORKFLOW)
    assert remembered()
    (tmp_path / "workflows" / "x.yaml").write_text(WORKFLOW.replace("id: hello", "id: x"))
    assert not remembered()
    (tmp_path / "workflows" / "x.yaml").unlink()
    # The coupon pool's file is gone.
    (tmp_path / "codes.csv").unlink()
    assert not remembered()
    with pytest.raises(LoyaltyError) as err:
        load_program(path)
    assert "codes.csv" in str(err.value.diagnostics)


def test_an_empty_cache_dir_turns_the_cache_off(tmp_path, monkeypatch):
    monkeypatch.setenv("LOYALTY_CACHE_DIR", "")
    assert progcache.cache_dir() is None
    path = tmp_path / "program.yaml"
    path.write_text(PROGRAM)
    load_program(path)
    assert list(tmp_path.glob("**/program-*.json")) == []


def test_a_bad_entry_is_ignored(tmp_path, cache):
    path = tmp_path / "program.yaml"
    path.write_text(PROGRAM)
    load_program(path)
    [entry] = cache.glob("program-*.json")
    entry.write_text("{not json")
    assert load_program(path).id == "cache-club"


def test_a_remembered_program_loads_without_the_checkers(tmp_path, cache):
    path = tmp_path / "program.yaml"
    path.write_text(PROGRAM)
    load_program(path)
    code = (
        "import sys\n"
        "import loyalty_cli.cli, loyalty_cli.engine.run\n"
        "from loyalty_cli.config.model import load_program\n"
        "from loyalty_cli import exprbase\n"
        f"p = load_program({str(path)!r})\n"
        "ctx = exprbase.ExprContext.for_rule('order')\n"
        "print(exprbase.compile_expression(\"order.total >= 10\", ctx, kind='condition'))\n"
        "print(sorted(m for m in ('sqlglot', 'jsonschema', 'ruamel.yaml') if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**__import__("os").environ, "LOYALTY_CACHE_DIR": str(cache)},
    ).stdout.splitlines()
    assert out == ['COALESCE(("order"."total" >= 10), FALSE)', "[]"]


def test_member_names_without_a_row_are_kept(tmp_path, cache, monkeypatch):
    path = tmp_path / "program.yaml"
    path.write_text(PROGRAM + "segments:\n  - {id: big, type: rule, when: 'orders_count >= 1'}\n")
    load_program(path)
    checks_forgotten(monkeypatch)
    load_program(path)
    ctx = exprbase.ExprContext.for_rule(None)
    [found] = [c for c in exprbase._CHECKED.values() if c.source == "orders_count >= 1"]
    assert found.columns == {(None, "orders_count")}
    assert exprbase.memo_key("orders_count >= 1", ctx, "condition") in exprbase._CHECKED


def test_a_check_is_not_kept_when_a_file_it_read_changed_meanwhile(tmp_path, cache, monkeypatch):
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "w.yaml").write_text(WORKFLOW)
    (tmp_path / "templates").mkdir()
    for part in ("subject", "html", "txt"):
        (tmp_path / "templates" / f"hi.{part}.j2").write_text("Hi")
    path = tmp_path / "program.yaml"
    path.write_text(
        PROGRAM
        + "segments:\n  - {id: big, type: rule, when: 'orders_count >= 1'}\n"
        + "workflows: ['workflows/*.yaml']\n"
    )
    real = validate.validate_paths

    def check_while_a_template_changes(paths):
        report = real(paths)
        (tmp_path / "templates" / "hi.txt.j2").write_text("Hi {{ nobody }}")
        return report

    monkeypatch.setattr(validate, "validate_paths", check_while_a_template_changes)
    load_program(path)
    assert list(cache.glob("program-*.json")) == []
