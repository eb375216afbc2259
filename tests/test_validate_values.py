"""`loyalty validate` on values that are each well-formed but that a run cannot use.

Numbers that are not finite (.inf, .nan, 1e309), beyond their documented range, impossible
dates, durations longer than 100 years, expressions that fail on every row: each is an
error at its place, and `validate` never crashes on them (it used to, on the workflows'
templates: the sample member was built from the program's numbers).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loyalty_cli.config.validate import validate_paths

PROGRAM = """\
version: 1
program: {id: shop, name: Shop, currency: PLN, timezone: UTC}
sources:
  customers: {path: customers.csv}
  orders: {path: orders.csv}
earning:
  rules:
    - {id: base, on: order, points: order.total}
"""

WORKFLOW = """\
version: 1
workflow:
  id: hello
  trigger: joined
  steps:
    - send: {channel: email, template: hello}
"""


def write(tmp_path: Path, program: str, workflow: str | None = None) -> Path:
    """A program folder with one workflow whose email templates exist."""
    (tmp_path / "templates").mkdir(exist_ok=True)
    for part in ("subject", "html", "txt"):
        (tmp_path / "templates" / f"hello.{part}.j2").write_text(
            "Hi {{ customer.first_name }}, {{ balance }} points\n", encoding="utf-8"
        )
    if workflow is not None:
        (tmp_path / "workflows").mkdir(exist_ok=True)
        (tmp_path / "workflows" / "hello.yaml").write_text(workflow, encoding="utf-8")
        program += 'workflows: ["workflows/*.yaml"]\n'
    path = tmp_path / "program.yaml"
    path.write_text(program, encoding="utf-8")
    return path


def problems(tmp_path: Path, program: str, workflow: str | None = None) -> list[tuple]:
    """(code, file, line, col, message, hint) of every diagnostic."""
    report = validate_paths([str(write(tmp_path, program, workflow))])
    return [
        (d.code, Path(d.path).name, d.line, d.col, d.message, d.hint)
        for d in report.diagnostics
        if d.severity != "info"
    ]


MONEY = "An amount of money in the program currency, e.g. 0.02 or 500."
TIERS = "tiers:\n  levels:\n    - {id: a, name: A, min: 0}\n"
NOT_FINITE_INF = ".inf (or a number too large to hold, such as 1e309) is not a finite number"


@pytest.mark.parametrize(
    ("snippet", "line", "col", "message", "hint"),
    [
        (
            TIERS + "    - {id: b, name: B, min: .inf}\n",
            12,
            29,
            f"tiers.levels[1].min: {NOT_FINITE_INF}",
            "Basis over the window needed for this level (money for spend, points for "
            "points). The lowest level's min is 0. Allowed: from 0 up to 1,000,000,000,000.",
        ),
        (
            TIERS + "    - {id: b, name: B, min: .nan}\n",
            12,
            29,
            "tiers.levels[1].min: .nan is not a finite number",
            "Basis over the window needed for this level (money for spend, points for "
            "points). The lowest level's min is 0. Allowed: from 0 up to 1,000,000,000,000.",
        ),
        (
            TIERS + "    - {id: b, name: B, min: 1e300}\n",
            12,
            29,
            "tiers.levels[1].min: 1e+300 is greater than the maximum of 1000000000000",
            "Basis over the window needed for this level (money for spend, points for "
            "points). The lowest level's min is 0. Allowed: from 0 up to 1,000,000,000,000.",
        ),
        (
            "rewards: [{id: r, name: R, cost: .nan}]\n",
            9,
            34,
            "rewards[0].cost: .nan is not a finite number",
            "Points the reward costs. Allowed: from 1 up to 1,000,000,000 (a whole number).",
        ),
        (
            "rewards: [{id: r, name: R, cost: 1e300}]\n",
            9,
            34,
            "rewards[0].cost: 1e+300 is greater than the maximum of 1000000000",
            "Points the reward costs. Allowed: from 1 up to 1,000,000,000 (a whole number).",
        ),
        (
            "coupons:\n  pools:\n    - {id: p, source: generate, length: 8, count: 10,"
            " valid_days: 100000000000}\n",
            11,
            67,
            "coupons.pools[0].valid_days: 100000000000 is greater than the maximum of 36500",
            "generate pools: number of days a code stays valid after it is assigned; no end "
            "date when absent. Allowed: from 1 up to 36,500 (a whole number).",
        ),
    ],
)
def test_numbers_that_crashed_validate_are_errors(
    tmp_path: Path, snippet: str, line: int, col: int, message: str, hint: str
) -> None:
    """These crashed `validate` itself (an internal error) when a workflow sends a message."""
    assert problems(tmp_path, PROGRAM + snippet, WORKFLOW) == [
        ("S205", "program.yaml", line, col, message, hint)
    ]


def test_a_bad_number_does_not_abort_the_other_files(tmp_path: Path) -> None:
    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir()
    good.mkdir()
    write(bad, PROGRAM + "rewards: [{id: r, name: R, cost: .nan}]\n", WORKFLOW)
    write(good, PROGRAM + "rewards: [{id: r, name: R, cost: 1 PLN}]\n")
    report = validate_paths([str(tmp_path)])
    assert [(d.code, Path(d.path).parent.name, d.line) for d in report.errors] == [
        ("S205", "bad", 9),
        ("S202", "good", 9),
    ]


@pytest.mark.parametrize(
    ("snippet", "line", "col", "message"),
    [
        ("  point_value: .inf\n", 3, 16, f"program.point_value: {NOT_FINITE_INF}"),
        ("  point_value: 1e309\n", 3, 16, f"program.point_value: {NOT_FINITE_INF}"),
        ("  point_value: .nan\n", 3, 16, "program.point_value: .nan is not a finite number"),
        (
            "  point_value: 1e26\n",
            3,
            16,
            "program.point_value: 1e+26 is greater than the maximum of 1000000000000",
        ),
    ],
)
def test_point_value_is_finite_money(
    tmp_path: Path, snippet: str, line: int, col: int, message: str
) -> None:
    text = PROGRAM.replace(
        "program: {id: shop, name: Shop, currency: PLN, timezone: UTC}\n",
        "program:\n  id: shop\n  name: Shop\n  currency: PLN\n  timezone: UTC\n",
    )
    text = text.replace("  timezone: UTC\n", "  timezone: UTC\n" + snippet)
    hint = f"{MONEY} Allowed: from 0 up to 1,000,000,000,000."
    got = problems(tmp_path, text)
    assert got == [("S205", "program.yaml", line + 4, col, message, hint)]


@pytest.mark.parametrize(
    ("snippet", "line", "col", "message", "hint"),
    [
        (
            "bonuses: [{id: w, trigger: joined, points: 1e300}]\n",
            9,
            44,
            "bonuses[0].points: 1e+300 is greater than the maximum of 1000000000",
            "Points granted: a whole number; for referral a mapping {referrer, referee}. "
            "Allowed: up to 1,000,000,000.",
        ),
        (
            "bonuses: [{id: w, trigger: joined, points: 10000000000000000000000}]\n",
            9,
            44,
            "bonuses[0].points: 10000000000000000000000 is greater than the maximum of 1000000000",
            "Points granted: a whole number; for referral a mapping {referrer, referee}. "
            "Allowed: up to 1,000,000,000.",
        ),
        (
            "segments: [{id: c, type: churn, model: interval, levels: {low: 0, mid: .nan}}]\n",
            9,
            72,
            "segments[0].levels.mid: .nan is not a finite number",
            "The lowest churn value of this level. Allowed: from 0 up to 1,000,000.",
        ),
        (
            "segments: [{id: c, type: churn, model: bgnbd, levels: {low: 0, hi: .inf}}]\n",
            9,
            68,
            f"segments[0].levels.hi: {NOT_FINITE_INF}",
            "The lowest churn value of this level. Allowed: from 0 up to 1,000,000.",
        ),
        (
            "data: {max_reject_rate: .nan}\n",
            9,
            25,
            "data.max_reject_rate: .nan is not a finite number",
            "Largest share (0 to 1) of a source's new rows that may be rejected before the "
            "run is refused. Allowed: from 0 up to 1.",
        ),
        (
            "tiers: {levels: [{id: a, name: A, min: 0, multiplier: .nan}]}\n",
            9,
            55,
            "tiers.levels[0].multiplier: .nan is not a finite number",
            "Factor applied to order and order_item rule points of members at this level. "
            "Allowed: above 0 up to 100.",
        ),
        (
            "tiers: {levels: [{id: a, name: A, min: 0, multiplier: 1e300}]}\n",
            9,
            55,
            "tiers.levels[0].multiplier: 1e+300 is greater than the maximum of 100",
            "Factor applied to order and order_item rule points of members at this level. "
            "Allowed: above 0 up to 100.",
        ),
    ],
)
def test_numbers_a_run_cannot_use_are_errors(
    tmp_path: Path, snippet: str, line: int, col: int, message: str, hint: str
) -> None:
    assert problems(tmp_path, PROGRAM + snippet) == [
        ("S205", "program.yaml", line, col, message, hint)
    ]


def test_an_impossible_date_is_an_error(tmp_path: Path) -> None:
    text = PROGRAM.replace("timezone: UTC}", "timezone: UTC, starts_on: 2026-02-30}")
    assert problems(tmp_path, text) == [
        (
            "S205",
            "program.yaml",
            2,
            74,
            "program.starts_on: '2026-02-30' is not a day of the calendar",
            "Write a real date as YYYY-MM-DD, e.g. '2026-02-28' (months have 28 to 31 days).",
        )
    ]


@pytest.mark.parametrize(
    ("snippet", "col", "where", "value"),
    [
        ("tiers: {window: 9999 years, levels: [{id: a, name: A, min: 0}]}\n", 17, "tiers.window",
         "9999 years"),
        ("segments: [{id: r, type: rfm, window: 1201 months, groups: {a: 'true'}}]\n", 39,
         "segments[0].window", "1201 months"),
        ("expiry: {after: 1 year, notify_before: 5201 weeks}\n", 40, "expiry.notify_before",
         "5201 weeks"),
    ],
)  # fmt: skip
def test_durations_are_at_most_100_years(
    tmp_path: Path, snippet: str, col: int, where: str, value: str
) -> None:
    assert problems(tmp_path, PROGRAM + snippet) == [
        (
            "S205",
            "program.yaml",
            9,
            col,
            f"{where}: duration '{value}' is longer than 100 years",
            "A duration is at most 100 years: 9999 days, 5200 weeks, 1200 months or 100 years.",
        )
    ]


def test_longest_durations_are_valid(tmp_path: Path) -> None:
    snippet = (
        "expiry: {after: 9999 days, inactivity: 100 years, notify_before: 5200 weeks}\n"
        "tiers: {window: 1200 months, levels: [{id: a, name: A, min: 0}]}\n"
    )
    assert problems(tmp_path, PROGRAM + snippet) == []


def test_wait_of_zero_days_is_an_error(tmp_path: Path) -> None:
    workflow = WORKFLOW + "    - wait: 0 days\n    - send: {channel: email, template: hello}\n"
    assert problems(tmp_path, PROGRAM, workflow) == [
        (
            "S205",
            "hello.yaml",
            7,
            13,
            "workflow.steps[1].wait: duration '0 days' is shorter than a day",
            "A wait is at least '1 day': a step's wait ends on a later run. Remove the step "
            "to go on at once.",
        )
    ]


# -- expressions that pass DuckDB's binder but fail on every row, or when the run starts ----

REGEX_HINT = (
    "write an RE2 regular expression (docs/expressions.md); escape ( ) [ ] { } . * + ? | "
    "with a backslash to match the character itself"
)
DIVIDE_HINT = "divide by a number other than 0, or by nullif(x, 0) where a divisor may be 0"


@pytest.mark.parametrize(
    ("when", "col", "message", "hint"),
    [
        (
            "regexp_matches(customer.email, '(')",
            78,
            "earning.rules[0].when: the regular expression '(' is refused by DuckDB: missing ): (",
            REGEX_HINT,
        ),
        (
            "regexp_full_match(customer.email, '[')",
            81,
            "earning.rules[0].when: the regular expression '[' is refused by DuckDB: missing ]: [",
            REGEX_HINT,
        ),
        (
            "regexp_matches(customer.email, 'a{1000000}')",
            78,
            "earning.rules[0].when: the regular expression 'a{1000000}' is refused by "
            "DuckDB: invalid repetition size: {1000000}",
            REGEX_HINT,
        ),
        (
            "customer.email like 'a%' escape 'ab'",
            79,
            "earning.rules[0].when: the escape of `like` 'ab' is refused by DuckDB: Invalid "
            "escape string. Escape string must be empty or one character.",
            "the escape is one character, e.g. `like 'a!%' escape '!'`",
        ),
    ],
)
def test_constant_arguments_duckdb_refuses(
    tmp_path: Path, when: str, col: int, message: str, hint: str
) -> None:
    text = PROGRAM.replace("points: order.total}", f'points: 1, when: "{when}"}}')
    assert problems(tmp_path, text) == [("E409", "program.yaml", 8, col, message, hint)]


@pytest.mark.parametrize(
    ("points", "col", "message", "hint"),
    [
        (
            "1/0",
            38,
            "earning.rules[0].points: `1/0` fails whenever it is computed: the result is "
            "infinite (a division by zero, or a number too large)",
            "fix the value, or use try_cast(...) and nullif(x, 0) where a value may not "
            "convert or a divisor may be 0",
        ),
        (
            "order.total % 0",
            38,
            "earning.rules[0].points: `order.total % 0` divides by zero on every row",
            DIVIDE_HINT,
        ),
        (
            "order.total / 0.0",
            38,
            "earning.rules[0].points: `order.total / 0.0` divides by zero on every row",
            DIVIDE_HINT,
        ),
        (
            "case when order.total > 1 then 'a' else 1 end",
            69,
            "earning.rules[0].points: 'a' cannot be set beside the other results, which are "
            "integer: DuckDB makes them one type and the text does not convert",
            "give every result the same kind, e.g. all numbers or all text (`else '1'`)",
        ),
        (
            "order.total + 1e400",
            52,
            "earning.rules[0].points: the number 1e400 is too large to compute with",
            "write a number below 1e308; points and money are far smaller",
        ),
        (
            "10000000000000000000000",
            38,
            "earning.rules[0].points: 10000000000000000000000 points is more than the most a "
            "rule may give (1,000,000,000)",
            "write a number of points from -1,000,000,000 to 1,000,000,000",
        ),
    ],
)
def test_constant_values_that_fail_the_run(
    tmp_path: Path, points: str, col: int, message: str, hint: str
) -> None:
    text = PROGRAM.replace("points: order.total}", f'points: "{points}"}}')
    assert problems(tmp_path, text) == [("E409", "program.yaml", 8, col, message, hint)]


def test_expressions_that_only_look_alike_are_valid(tmp_path: Path) -> None:
    rules = (
        "    - {id: a, on: order, points: 1, when: \"regexp_matches(customer.email, '\\\\(')\"}\n"
        "    - {id: b, on: order, points: order.total / 2}\n"
        '    - {id: c, on: order, points: "case when order.total > 1 then 1 else 2 end"}\n'
        "    - {id: d, on: order, points: 1, when: \"customer.email like 'a!%' escape '!'\"}\n"
        "    - {id: e, on: order, points: 1000000000}\n"
    )
    assert problems(tmp_path, PROGRAM + rules) == []


def test_json_output_of_a_batch_with_a_bad_number(tmp_path: Path) -> None:
    """`-f json` printed an internal error instead of JSON, and one file aborted the batch."""
    import json

    from typer.testing import CliRunner

    from loyalty_cli.cli import app

    bad, good = tmp_path / "bad", tmp_path / "good"
    bad.mkdir()
    good.mkdir()
    write(bad, PROGRAM + TIERS + "    - {id: b, name: B, min: .inf}\n", WORKFLOW)
    write(good, PROGRAM, WORKFLOW)
    result = CliRunner().invoke(app, ["validate", str(tmp_path), "--format", "json"])
    assert result.exit_code == 1, result.output
    payload = json.loads(result.stdout)
    assert payload["summary"] == {"files": 4, "errors": 1, "warnings": 0}
    assert [(d["code"], d["where"]) for d in payload["diagnostics"]] == [
        ("S205", "tiers.levels[1].min")
    ]
