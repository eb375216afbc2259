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
            "Each step needs its own id; a step without one is step-1, step-2, ... by its "
            "position, so give the other step an id that is not one of those.",
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
            "Each step needs its own id; a step without one is step-1, step-2, ... by its "
            "position, so give the other step an id that is not one of those.",
        )
    ]


def test_default_ids_that_do_not_collide_are_valid(tmp_path: Path) -> None:
    workflow = WF_HEAD + f"    - {{id: step-2, {SEND}}}\n    - {{id: other, {SEND}}}\n"
    workflow += f"    - {{{SEND}}}\n"
    assert problems(tmp_path, PROGRAM, workflow) == []
