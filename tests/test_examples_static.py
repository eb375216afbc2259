"""Static checks of the example programs in examples/programs/.

Every example must be complete without data: its YAML parses strictly (YAML 1.2, no
duplicate keys) and matches the published schemas, every template a workflow step
sends exists for the step's channel and its fallback, every template renders against a
sample member using only the documented context, SMS stay within two segments, and
every expression passes the expression checker.
"""

from __future__ import annotations

import datetime as dt
import glob
import importlib
import json
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "programs"
SCHEMAS = ROOT / "schemas"

EXPECTED = {"starter", "fashion", "cosmetics", "travel", "engagement", "scoring"}

# Template files per channel (SPEC 7).
CHANNEL_PARTS = {"email": ("subject", "html", "txt"), "sms": ("sms",)}

# Event types in the sample exports the project ships.
SAMPLE_EVENT_TYPES = {
    "page_view",
    "email_open",
    "link_click",
    "add_to_cart",
    "product_like",
    "form_fill",
    "article_read",
    "newsletter_read",
    "unsubscribe",
    "cart_abandoned",
}

# GSM 03.38 basic set and the extension table (extension characters take two septets).
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXT = set("^{}\\[~]|€")


def examples() -> list[Path]:
    return sorted(p for p in EXAMPLES.iterdir() if p.is_dir())


def load_yaml(path: Path) -> Any:
    """Strict round-trip load: YAML 1.2, duplicate keys are errors."""
    yaml = YAML(typ="rt")
    yaml.version = (1, 2)
    yaml.allow_duplicate_keys = False
    return yaml.load(path.read_text(encoding="utf-8"))


def plain(node: Any) -> Any:
    """ruamel's round-trip objects -> JSON data (dates as ISO strings)."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, (dt.date, dt.datetime)):
        return node.isoformat()
    return str(node)


def program_of(folder: Path) -> dict:
    return plain(load_yaml(folder / "program.yaml"))


def workflow_files(folder: Path) -> list[Path]:
    program = program_of(folder)
    patterns = program.get("workflows", ["workflows/*.yaml"])
    if isinstance(patterns, str):
        patterns = [patterns]
    found: list[Path] = []
    for pattern in patterns:
        found += [Path(p) for p in sorted(glob.glob(str(folder / pattern)))]
    return found


def templates_dir(folder: Path) -> Path:
    return folder / program_of(folder).get("templates", "templates/")


def sends(workflow: dict) -> list[dict]:
    return [step["send"] for step in workflow["workflow"]["steps"] if "send" in step]


def all_cases() -> list[tuple[str, Path]]:
    return [(folder.name, wf) for folder in examples() for wf in workflow_files(folder)]


# --- files and YAML -----------------------------------------------------------------


def test_the_six_examples_exist() -> None:
    assert {p.name for p in examples()} == EXPECTED


@pytest.mark.parametrize("folder", examples(), ids=lambda p: p.name)
def test_example_has_program_workflows_templates_readme(folder: Path) -> None:
    assert (folder / "program.yaml").is_file()
    assert (folder / "README.md").is_file()
    assert workflow_files(folder), f"{folder.name}: no workflow matches the program's `workflows`"
    assert templates_dir(folder).is_dir()


def yaml_files() -> list[Path]:
    return sorted(EXAMPLES.rglob("*.yaml")) + sorted(EXAMPLES.rglob("*.yml"))


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_yaml_parses_without_duplicate_keys(path: Path) -> None:
    data = load_yaml(path)
    assert data["version"] == 1
    assert ("program" in data) != ("workflow" in data)


@pytest.mark.parametrize(("example", "path"), all_cases(), ids=lambda v: getattr(v, "stem", v))
def test_workflow_templates_exist_for_channel_and_fallback(example: str, path: Path) -> None:
    folder = EXAMPLES / example
    tdir = templates_dir(folder)
    workflow = plain(load_yaml(path))
    assert sends(workflow), f"{path.name}: a workflow without a message"
    for send in sends(workflow):
        for channel in filter(None, (send["channel"], send.get("fallback"))):
            for part in CHANNEL_PARTS[channel]:
                name = f"{send['template']}.{part}.j2"
                assert (tdir / name).is_file(), f"{path.name}: missing template {name}"


@pytest.mark.parametrize(("example", "path"), all_cases(), ids=lambda v: getattr(v, "stem", v))
def test_workflow_references_exist_in_program(example: str, path: Path) -> None:
    program = program_of(EXAMPLES / example)
    workflow = plain(load_yaml(path))["workflow"]
    pools = {p["id"] for p in program.get("coupons", {}).get("pools", [])}
    for step in workflow["steps"]:
        if "coupon" in step:
            assert step["coupon"]["pool"] in pools
    trigger = workflow["trigger"]
    if isinstance(trigger, dict):
        ((kind, params),) = trigger.items()
        params = params or {}
        if kind in ("segment_enter", "segment_exit"):
            segments = {s["id"]: s for s in program.get("segments", [])}
            assert params["segment"] in segments
            segment = segments[params["segment"]]
            if "group" in params and segment["type"] == "rfm":
                assert params["group"] in segment["groups"]
            if "group" in params and segment["type"] == "churn":
                assert params["group"] in segment["levels"]
        if kind in ("tier_up", "tier_down") and "to" in params:
            assert params["to"] in {lvl["id"] for lvl in program["tiers"]["levels"]}
        if kind == "redemption" and "reward" in params:
            assert params["reward"] in {r["id"] for r in program["rewards"]}


@pytest.mark.parametrize("folder", examples(), ids=lambda p: p.name)
def test_program_references_and_sample_data_fit(folder: Path) -> None:
    program = program_of(folder)
    assert program["program"]["currency"] == "PLN"
    assert program["program"]["timezone"] == "Europe/Warsaw"
    for name, source in program["sources"].items():
        assert "columns" not in source, f"{name}: the sample exports use canonical column names"
    pools = {p["id"]: p for p in program.get("coupons", {}).get("pools", [])}
    levels = {lvl["id"] for lvl in program["tiers"]["levels"]}
    for reward in program["rewards"]:
        assert reward.get("coupon_pool") in (None, *pools)
        assert reward.get("min_tier") in (None, *levels)
    for pool in pools.values():
        if pool["source"] == "file":
            rows = (folder / pool["path"]).read_text(encoding="utf-8").splitlines()
            assert rows[0] == "code,valid_until"
            codes = [row.split(",")[0] for row in rows[1:]]
            assert codes and len(codes) == len(set(codes))
            for row in rows[1:]:
                dt.date.fromisoformat(row.split(",")[1])
    for rule in program["earning"].get("rules", []):
        if rule["on"] == "event":
            assert "events" in program["sources"]
            quoted = {t for t in SAMPLE_EVENT_TYPES if f"'{t}'" in str(rule.get("when", ""))}
            assert quoted, f"{rule['id']}: matches no event type of the sample data"
    if "discount-20" not in {r["id"] for r in program["rewards"]}:
        pytest.fail("each example offers the sample data's `discount-20` reward")


# --- schemas ------------------------------------------------------------------------


def schema_validator(kind: str):
    path = SCHEMAS / f"{kind}.schema.json"
    assert path.is_file(), f"{path} is missing"
    from jsonschema import Draft202012Validator

    schema = json.loads(path.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _errors(validator, data: Any) -> list[str]:
    return [
        f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
        for e in validator.iter_errors(data)
    ]


@pytest.mark.parametrize("folder", examples(), ids=lambda p: p.name)
def test_program_matches_schema(folder: Path) -> None:
    validator = schema_validator("program")
    assert _errors(validator, program_of(folder)) == []


@pytest.mark.parametrize(("example", "path"), all_cases(), ids=lambda v: getattr(v, "stem", v))
def test_workflow_matches_schema(example: str, path: Path) -> None:
    validator = schema_validator("workflow")
    assert _errors(validator, plain(load_yaml(path))) == []


# --- templates ----------------------------------------------------------------------


def sample_context(program: dict, *, long_values: bool = False) -> dict:
    """The documented template context (SPEC 7), filled with a plausible member."""
    levels = program["tiers"]["levels"]
    first = "Aleksandra-Magdalena" if long_values else "Ola"
    return {
        "customer": {
            "customer_id": "C000123",
            "email": "ola@example.com",
            "phone": "+48600100200",
            "first_name": first,
            "last_name": "Kowalska",
            "birth_date": dt.date(1990, 5, 17),
            "joined_at": dt.datetime(2025, 3, 2, 10, 15),
            "locale": "pl-PL",
        },
        "program": {
            "id": program["program"]["id"],
            "name": program["program"]["name"],
            "currency": program["program"]["currency"],
            "point_value": Decimal(str(program["program"].get("point_value", 0))),
        },
        "balance": 123456 if long_values else 2450,
        "pending": 1200,
        "tier": {"id": levels[0]["id"], "name": levels[0]["name"]},
        "next_tier": {"id": levels[1]["id"], "name": levels[1]["name"]},
        "points_to_next_tier": 550,
        "expiring_points": 12345 if long_values else 300,
        "expiring_on": dt.date(2026, 12, 31),
        "coupon": {
            "code": "ABCD-EFGH23JKLM" if long_values else "WB15-7KQ2MZ9XRT",
            "valid_until": dt.date(2026, 12, 31),
            "discount": {"percent": 15},
        },
        "reward": {"id": "discount-20", "name": "20 PLN off", "cost": 2000},
    }


def context_variants(program: dict) -> list[dict]:
    """The sample member, then the optional values absent, then long values."""
    full = sample_context(program)
    bare = dict(full, next_tier=None, points_to_next_tier=None, coupon=None, reward=None)
    bare["customer"] = dict(full["customer"], first_name=None, locale=None)
    english = dict(full, customer=dict(full["customer"], locale="en-GB"))
    return [full, bare, english, sample_context(program, long_values=True)]


def sms_segments(text: str) -> int:
    """SMS segments of a text: GSM-7 160/153 septets, else UCS-2 70/67 characters."""
    if all(c in GSM7_BASIC or c in GSM7_EXT for c in text):
        units, single, multi = sum(2 if c in GSM7_EXT else 1 for c in text), 160, 153
    else:
        units, single, multi = len(text.encode("utf-16-be")) // 2, 70, 67
    return 1 if units <= single else -(-units // multi)


VOID_ELEMENTS = {"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr"}


class _TagBalance(HTMLParser):
    """Collects tags that are closed out of order or never closed."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in VOID_ELEMENTS:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()
        else:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")


def unbalanced_tags(html: str) -> list[str]:
    parser = _TagBalance()
    parser.feed(html)
    parser.close()
    return parser.problems + [f"<{tag}> not closed" for tag in parser.stack]


def template_cases() -> list[tuple[str, Path]]:
    return [
        (folder.name, path)
        for folder in examples()
        for path in sorted(templates_dir(folder).glob("*.j2"))
    ]


@pytest.mark.parametrize(("example", "path"), template_cases(), ids=lambda v: getattr(v, "name", v))
def test_template_renders_with_the_documented_context(example: str, path: Path) -> None:
    program = program_of(EXAMPLES / example)
    source = path.read_text(encoding="utf-8")
    assert "|safe" not in source.replace(" ", ""), "autoescape is on: never mark data safe"
    # Block tags on a line of their own leave no blank line, as in the product's renderer.
    env = SandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=path.name.endswith(".html.j2"),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    template = env.from_string(source)
    for context in context_variants(program):
        out = template.render(**context)
        assert out.strip(), f"{path.name} renders empty"
        if path.name.endswith(".subject.j2"):
            assert "\n" not in out.strip() and len(out.strip()) <= 120
        if path.name.endswith(".sms.j2"):
            assert sms_segments(out.strip()) <= 2, f"{path.name}: too long: {out!r}"
        if path.name.endswith(".html.j2"):
            assert out.lstrip().startswith("<!DOCTYPE html>")
            assert unbalanced_tags(out) == [], path.name


def test_an_example_exercises_ucs2_sms() -> None:
    texts = [p.read_text(encoding="utf-8") for _, p in template_cases() if p.suffixes[-2] == ".sms"]
    assert any(any(c in "ąćęłńóśźżĄĆĘŁŃÓŚŹŻ" for c in t) for t in texts)


# --- expressions and semantics ---------------------------------------------------------


def expressions(folder: Path) -> list[tuple[str, Any, str | None, str, bool]]:
    """(where, expression, rule `on` or None for the member view, kind, in a workflow)."""
    program = program_of(folder)
    found: list[tuple[str, Any, str | None, str, bool]] = []
    for i, rule in enumerate(program["earning"].get("rules", [])):
        found.append((f"earning.rules[{i}].points", rule["points"], rule["on"], "value", False))
        if "when" in rule:
            found.append((f"earning.rules[{i}].when", rule["when"], rule["on"], "condition", False))
    for i, bonus in enumerate(program.get("bonuses", [])):
        if bonus.get("trigger") == "challenge":
            found.append((f"bonuses[{i}].when", bonus["when"], bonus["on"], "condition", False))
            if "sum" in bonus["goal"]:
                sum_ = bonus["goal"]["sum"]
                found.append((f"bonuses[{i}].goal.sum", sum_, bonus["on"], "value", False))
    for i, segment in enumerate(program.get("segments", [])):
        if segment["type"] == "rule":
            found.append((f"segments[{i}].when", segment["when"], None, "condition", False))
        for group, rule in (segment.get("groups") or {}).items():
            found.append((f"segments[{i}].groups.{group}", rule, None, "condition", False))
    for wf in workflow_files(folder):
        workflow = plain(load_yaml(wf))["workflow"]
        for key in ("audience", "exit_when"):
            if key in workflow:
                found.append((f"{wf.name}: {key}", workflow[key], None, "condition", True))
        for i, step in enumerate(workflow["steps"]):
            if "if" in step:
                found.append((f"{wf.name}: steps[{i}].if", step["if"], None, "condition", True))
    return found


@pytest.mark.parametrize("folder", examples(), ids=lambda p: p.name)
def test_expressions_pass_the_expression_checker(folder: Path) -> None:
    expr = importlib.import_module("loyalty_cli.expr")
    has_rfm = any(s["type"] == "rfm" for s in program_of(folder).get("segments", []))
    found = expressions(folder)
    assert found
    problems = []
    for where, text, on, kind, in_workflow in found:
        ctx = expr.ExprContext.for_rule(on, {}, rfm=has_rfm, workflow=in_workflow)
        checked = expr.check_expression(text, ctx, kind=kind)
        problems += [f"{where}: {p.code} {p.message}" for p in checked.problems]
    assert problems == []


def _validator():
    """The project's own `loyalty validate`."""
    from loyalty_cli.config.validate import validate_paths

    return validate_paths


@pytest.mark.parametrize("folder", examples(), ids=lambda p: p.name)
def test_example_passes_loyalty_validate(folder: Path) -> None:
    """Schema, references, every expression and every template, as `loyalty validate` sees them."""
    validate_paths = _validator()
    report = validate_paths([str(folder / "program.yaml")])
    problems = [f"{d.location()}: {d.code} {d.message}" for d in report.errors]
    assert problems == []
    assert report.usage_errors == []
    checked = {Path(f).resolve() for f in report.files}
    assert {wf.resolve() for wf in workflow_files(folder)} <= checked
