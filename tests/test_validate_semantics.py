"""`loyalty validate`: settings that are each valid but do not fit together, or that can
never take effect, and paths that leave the program's folder."""

from __future__ import annotations

from pathlib import Path

from test_validate_values import PROGRAM, problems

WF_HEAD = """\
version: 1
workflow:
  id: hello
  trigger: joined
  steps:
"""
SEND = "send: {channel: email, template: hello}"


def test_a_step_id_equal_to_a_later_default_id_is_a_duplicate(tmp_path: Path) -> None:
    """Both steps were `step-2`: they shared message ids and one message was lost."""
    workflow = WF_HEAD + f"    - {{id: step-2, {SEND}}}\n    - {{{SEND}}}\n"
    assert problems(tmp_path, PROGRAM, workflow) == [
        (
            "R301",
            "hello.yaml",
            7,
            7,
            "step 2 has no id, so its id is 'step-2', which step 1 on line 6 already has",
            "Each step needs its own id and a step without an id is step-1, step-2, ... by "
            "its position: rename step 1, or give this step an id of its own.",
        )
    ]


def test_a_step_id_equal_to_an_earlier_default_id_is_a_duplicate(tmp_path: Path) -> None:
    workflow = WF_HEAD + f"    - {{{SEND}}}\n    - {{id: step-1, {SEND}}}\n"
    assert problems(tmp_path, PROGRAM, workflow) == [
        (
            "R301",
            "hello.yaml",
            7,
            12,
            "step id 'step-1' is also the default id of step 1 on line 6, which has no id",
            "Each step needs its own id and a step without an id is step-1, step-2, ... by "
            "its position: rename this step.",
        )
    ]


def test_default_ids_that_do_not_collide_are_valid(tmp_path: Path) -> None:
    workflow = WF_HEAD + f"    - {{id: step-2, {SEND}}}\n    - {{id: other, {SEND}}}\n"
    workflow += f"    - {{{SEND}}}\n"
    assert problems(tmp_path, PROGRAM, workflow) == []


# -- warnings: settings that can never take effect ---------------------------------------------


def test_rules_on_rows_the_program_never_reads(tmp_path: Path) -> None:
    rules = (
        "    - {id: items, on: order_item, points: 1}\n"
        "    - {id: opens, on: event, points: 1}\n"
        "bonuses:\n"
        "  - {id: c, trigger: challenge, period: week, on: event, goal: {count: 2}, points: 5}\n"
    )
    assert problems(tmp_path, PROGRAM + rules) == [
        (
            "R308",
            "program.yaml",
            9,
            23,
            "rule 'items' is on order_item rows, but the program has no `order_items` "
            "source: it never earns",
            "Add `sources.order_items` with the path of the export, or change `on`.",
        ),
        (
            "R308",
            "program.yaml",
            10,
            23,
            "rule 'opens' is on event rows, but the program has no `events` source: it never earns",
            "Add `sources.events` with the path of the export, or change `on`.",
        ),
        (
            "R308",
            "program.yaml",
            12,
            51,
            "challenge 'c' is on event rows, but the program has no `events` source: it "
            "is never reached",
            "Add `sources.events` with the path of the export, or change `on`.",
        ),
    ]


def test_rules_on_rows_the_program_reads_are_fine(tmp_path: Path) -> None:
    text = PROGRAM.replace(
        "  orders: {path: orders.csv}\n",
        "  orders: {path: orders.csv}\n  order_items: {path: i.csv}\n  events: {path: e.csv}\n",
    )
    rules = "    - {id: items, on: order_item, points: 1}\n    - {id: e, on: event, points: 1}\n"
    assert problems(tmp_path, text + rules) == []


def workflow_with(trigger: str) -> str:
    return WF_HEAD.replace("  trigger: joined\n", f"  trigger: {trigger}\n") + f"    - {SEND}\n"


TIERS = (
    "tiers:\n  levels:\n    - {id: base, name: Base, min: 0}\n"
    "    - {id: gold, name: Gold, min: 9}\n"
)


def test_points_expiring_without_expiry(tmp_path: Path) -> None:
    assert problems(tmp_path, PROGRAM, workflow_with("points_expiring")) == [
        (
            "R308",
            "hello.yaml",
            4,
            12,
            "trigger points_expiring never fires: the program has no `expiry`, so points "
            "never expire",
            "Add `expiry:` to the program, or use another trigger.",
        )
    ]
    assert (
        problems(tmp_path, PROGRAM + "expiry: {after: 1 year}\n", workflow_with("points_expiring"))
        == []
    )


def test_tier_triggers_without_tiers(tmp_path: Path) -> None:
    assert problems(tmp_path, PROGRAM, workflow_with("tier_down")) == [
        (
            "R308",
            "hello.yaml",
            4,
            12,
            "trigger tier_down never fires: the program has no tiers",
            "Add `tiers:` to the program, or use another trigger.",
        )
    ]
    assert problems(tmp_path, PROGRAM, workflow_with("{tier_up: {}}")) == [
        (
            "R308",
            "hello.yaml",
            4,
            13,
            "trigger tier_up never fires: the program has no tiers",
            "Add `tiers:` to the program, or use another trigger.",
        )
    ]


def test_tier_up_to_the_lowest_tier(tmp_path: Path) -> None:
    assert problems(tmp_path, PROGRAM + TIERS, workflow_with("{tier_up: {to: base}}")) == [
        (
            "R308",
            "hello.yaml",
            4,
            27,
            "trigger tier_up never fires: no member moves up to 'base', the lowest tier",
            "Name another tier (gold), or leave out `to:` for any move up.",
        )
    ]
    assert problems(tmp_path, PROGRAM + TIERS, workflow_with("{tier_down: {to: gold}}")) == [
        (
            "R308",
            "hello.yaml",
            4,
            29,
            "trigger tier_down never fires: no member moves down to 'gold', the top tier",
            "Name another tier (base), or leave out `to:` for any move down.",
        )
    ]
    for trigger in ("{tier_up: {to: gold}}", "{tier_down: {to: base}}", "tier_up"):
        assert problems(tmp_path, PROGRAM + TIERS, workflow_with(trigger)) == [], trigger


def test_generate_pool_with_more_codes_than_its_length_allows(tmp_path: Path) -> None:
    pools = "coupons:\n  pools:\n    - {id: p, source: generate, length: 4, count: 500000}\n"
    assert problems(tmp_path, PROGRAM + pools) == [
        (
            "R308",
            "program.yaml",
            11,
            51,
            "coupon pool 'p': 500,000 codes of 4 characters would be more than half of the "
            "923,521 possible ones, so `loyalty coupons generate` refuses them (codes would "
            "be easy to guess)",
            "Raise the pool's `length` (each character multiplies the codes by 31), or lower "
            "`count`.",
        )
    ]
    fits = pools.replace("count: 500000", "count: 461760")
    assert problems(tmp_path, PROGRAM + fits) == []


# -- paths that leave the program's folder ---------------------------------------------------


def test_templates_outside_the_program_folder(tmp_path: Path) -> None:
    hint = (
        "Templates are kept with the program: write a folder relative to the program file "
        "without '..', such as 'templates/'."
    )
    for folder in ("../../etc", str(tmp_path / "templates")):
        text = PROGRAM + f"templates: {folder}\n"
        assert problems(tmp_path, text, workflow=WF_HEAD + f"    - {SEND}\n") == [
            (
                "R306",
                "program.yaml",
                9,
                12,
                f"templates folder {folder!r} leaves the program's folder",
                hint,
            )
        ]


def test_templates_inside_the_program_folder(tmp_path: Path) -> None:
    text = PROGRAM + "templates: ./templates\n"
    assert problems(tmp_path, text, workflow=WF_HEAD + f"    - {SEND}\n") == []


def test_a_coupon_file_outside_the_folder_is_said_to_leave_it(tmp_path: Path) -> None:
    (tmp_path / "outside.csv").write_text("code\nA1\n", encoding="utf-8")
    program_dir = tmp_path / "a" / "b"
    program_dir.mkdir(parents=True)
    pools = "coupons:\n  pools:\n    - {id: p, source: file, path: ../../outside.csv}\n"
    assert problems(program_dir, PROGRAM + pools) == [
        (
            "R306",
            "program.yaml",
            11,
            35,
            "coupon file '../../outside.csv' leaves the program's folder",
            "Coupon files are kept with the program: write a path relative to the program "
            "file without '..', such as 'coupons/reward20.csv'.",
        )
    ]


# -- names that break the pattern of their mapping ------------------------------------------


def test_a_group_or_column_name_that_breaks_the_pattern_says_what_names_are(
    tmp_path: Path,
) -> None:
    text = PROGRAM.replace(
        "  orders: {path: orders.csv}\n",
        "  orders: {path: orders.csv, extra: {sel ect: integer}}\n",
    )
    text += "segments: [{id: r, type: rfm, groups: {\"it's\": 'r >= 4', a: 'true'}}]\n"
    assert problems(tmp_path, text) == [
        (
            "S201",
            "program.yaml",
            5,
            38,
            "'sel ect' is not allowed as a name in sources.orders.extra",
            "A name here is letters (A-Z, a-z), digits and '_', starting with a letter or "
            "'_', without spaces or other characters, e.g. 'newsletter_segment'.",
        ),
        (
            "S201",
            "program.yaml",
            9,
            40,
            "'it's' is not allowed as a name in segments[0].groups",
            "A name here is letters (A-Z, a-z), digits, '_', '.' and '-', starting with a "
            "letter or digit, without spaces, quotes or other characters, e.g. 'at_risk' or "
            "'high-value'.",
        ),
    ]


def test_every_name_pattern_is_told_in_words() -> None:
    import json

    from loyalty_cli.config.schema import _PATTERN_WORDS, load_schema

    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            found.update(node.get("patternProperties") or {})
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for kind in ("program", "workflow"):
        walk(json.loads(json.dumps(load_schema(kind))))
    assert found and found <= set(_PATTERN_WORDS)


# -- templates of a redemption's message ------------------------------------------------------

REWARDS = """\
rewards:
  - {id: code, name: Code, cost: 10, coupon_pool: p}
  - {id: gift, name: Gift, cost: 20}
coupons:
  pools:
    - {id: p, source: generate, length: 8, count: 100}
"""


def _redemption_workflow(tmp_path: Path, trigger: str, text: str) -> str:
    for part in ("subject", "html", "txt"):
        (tmp_path / "templates").mkdir(exist_ok=True)
        (tmp_path / "templates" / f"done.{part}.j2").write_text(text, encoding="utf-8")
    return (
        f"version: 1\nworkflow:\n  id: hello\n  trigger: {trigger}\n  steps:\n"
        "    - send: {channel: email, template: done}\n"
    )


def test_a_redemptions_message_is_checked_with_and_without_its_code(tmp_path: Path) -> None:
    """Templates of a `redemption` workflow see the code the redemption got as `coupon`: a
    reward with a pool gives one, a reward without none; each is rendered as it can be."""
    code_only = _redemption_workflow(tmp_path, "{redemption: {reward: code}}", "{{ coupon.code }}")
    assert problems(tmp_path, PROGRAM + REWARDS, code_only) == []
    any_reward = _redemption_workflow(tmp_path, "redemption", "{{ coupon.code }}")
    found = problems(tmp_path, PROGRAM + REWARDS, any_reward)
    assert sorted((code, file, line) for code, file, line, *_ in found) == [
        ("T503", "done.html.j2", 1),
        ("T503", "done.subject.j2", 1),
        ("T503", "done.txt.j2", 1),
    ]
    guarded = _redemption_workflow(
        tmp_path, "redemption", "{% if coupon %}{{ coupon.code }}{% else %}no code{% endif %}"
    )
    assert problems(tmp_path, PROGRAM + REWARDS, guarded) == []


def test_tier_names_checked_in_rule_points_and_challenges(tmp_path: Path) -> None:
    """`tier = 'platinum'` names no level wherever it is: a rule's points, a challenge's
    when and goal; and in a program without tiers no name can match."""
    program = PROGRAM.replace(
        "points: order.total}",
        "points: \"if(tier = 'platinum', 2, 1) * order.total\"}",
    ) + (
        "bonuses:\n"
        "  - {id: ch, trigger: challenge, on: order, period: month, points: 5,\n"
        "     when: \"tier = 'gold'\", goal: {sum: \"if(tier = 'silver', 1, 0)\", at_least: 1}}\n"
    )
    found = [(code, line, col, msg) for code, _, line, col, msg, _ in problems(tmp_path, program)]
    assert found == [
        ("R302", 8, 48, "earning.rules[0].points: tier 'platinum' is not a tier level"),
        ("R302", 11, 20, "bonuses[0].when: tier 'gold' is not a tier level"),
        ("R302", 11, 52, "bonuses[0].goal.sum: tier 'silver' is not a tier level"),
    ]
    hints = {hint for code, *_, hint in problems(tmp_path, program)}
    assert hints == {"The program has no tiers, so `tier` is always empty."}
    # With levels base and gold, 'gold' is one of them.
    with_tiers = problems(tmp_path, program + TIERS)
    assert [(d[0], d[4]) for d in with_tiers] == [
        ("R302", "earning.rules[0].points: tier 'platinum' is not a tier level"),
        ("R302", "bonuses[0].goal.sum: tier 'silver' is not a tier level"),
    ]
    assert {d[5] for d in with_tiers} == {"Tier levels are: base, gold."}


def test_an_rfm_group_comparing_a_score_out_of_its_range_never_matches(tmp_path: Path) -> None:
    groups = "{top: 'r >= 3 and f > 3', low: 'r < 1 or m = 1', rest: 'true'}"
    program = PROGRAM + f"segments:\n  - {{id: v, type: rfm, scores: 3, groups: {groups}}}\n"
    # f > 3 with scores 1..3 is never true, so `top` never matches; `low` can (m = 1).
    assert problems(tmp_path, program) == [
        (
            "R308",
            "program.yaml",
            10,
            49,
            "group 'top' never matches: `f > 3` is never true, and scores run from 1 to 3",
            "Compare r, f and m with numbers from 1 to `scores`.",
        )
    ]
    # With the default scores (5), f > 3 can be true.
    assert problems(tmp_path, program.replace("scores: 3, ", "")) == []


def test_a_workflow_checked_on_its_own_names_tiers_freely(tmp_path: Path) -> None:
    """A workflow given without its program is checked on its own (docs/validate.md): its
    tier names are checked when the program is, so `tier in ('gold', 'silver')` is no R302
    there, and with a program without tiers it is."""
    from loyalty_cli.config.validate import validate_paths

    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "version: 1\nworkflow:\n  id: hello\n  trigger: joined\n"
        "  audience: tier in ('gold', 'silver')\n  steps:\n    - wait: 1 day\n"
    )
    report = validate_paths([str(wf)])
    assert [d.code for d in report.diagnostics if d.severity != "info"] == []
    program = PROGRAM + "workflows: [wf.yaml]\n"
    found = [(code, msg) for code, _, _, _, msg, _ in problems(tmp_path, program, None)]
    assert ("R302", "workflow.audience: tier 'gold' is not a tier level") in found


def test_a_workflow_checked_on_its_own_may_read_rfm_scores(tmp_path: Path) -> None:
    """Alone, a workflow's `r >= 4` is fine (its program may score r, f, m); with a program
    that has no rfm segment, r is unknown (E402)."""
    from loyalty_cli.config.validate import validate_paths

    wf = tmp_path / "wf.yaml"
    wf.write_text(
        "version: 1\nworkflow:\n  id: hello\n  trigger: joined\n"
        "  audience: r >= 4 and f >= 2\n  steps:\n    - wait: 1 day\n"
    )
    report = validate_paths([str(wf)])
    assert [d.code for d in report.diagnostics if d.severity != "info"] == []
    program = PROGRAM + "workflows: [wf.yaml]\n"
    found = [code for code, *_ in problems(tmp_path, program, None)]
    assert "E402" in found
