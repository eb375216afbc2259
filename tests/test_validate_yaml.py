"""Reading program and workflow files: YAML 1.2 core-schema numbers (SPEC 9.18) and
YAML problems reported at their place, in words, without Python's internals."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_validate_values import PROGRAM, problems

from loyalty_cli.config.yamlload import load_yaml_text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("14", 14),
        ("014", 14),  # YAML 1.2 core: decimal, leading zeros allowed
        ("-014", -14),
        ("+7", 7),
        ("0o14", 12),  # octal is 0o...
        ("0x1F", 31),
        ("1_0", "1_0"),  # no underscores in YAML 1.2 core: text
        ("1_000.5", "1_000.5"),
        ("0b101", "0b101"),  # no binary in YAML 1.2 core
        ("1e3", 1000.0),
        (".5", 0.5),
        ("'014'", "014"),
    ],
)
def test_numbers_are_read_as_yaml_1_2_core(text: str, value: object) -> None:
    doc, diags = load_yaml_text(f"a: {text}\n", "x.yaml")
    assert diags == [] and doc is not None
    assert doc.data == {"a": value} and type(doc.data["a"]) is type(value)


def test_pending_days_with_an_underscore_is_text(tmp_path: Path) -> None:
    text = PROGRAM.replace("earning:\n", "earning:\n  pending_days: 1_0\n")
    assert problems(tmp_path, text) == [
        (
            "S202",
            "program.yaml",
            7,
            17,
            "earning.pending_days should be integer, not a string",
            "Days order points stay pending before they become available (0 = at once).",
        )
    ]


def test_pending_days_with_a_leading_zero_is_a_number(tmp_path: Path) -> None:
    text = PROGRAM.replace("earning:\n", "earning:\n  pending_days: 014\n")
    assert problems(tmp_path, text) == []


def yaml_problems(text: str) -> list[tuple]:
    doc, diags = load_yaml_text(text, "p.yaml")
    assert doc is None
    return [(d.code, d.line, d.col, d.message, d.hint) for d in diags]


def test_a_complex_key_is_shown_as_written(tmp_path: Path) -> None:
    text = PROGRAM.replace("timezone: UTC}", "timezone: UTC, ? [a, b] : x}")
    got = [
        (code, line, col, message) for code, _, line, col, message, _ in problems(tmp_path, text)
    ]
    assert got == [("S201", 2, 65, "unknown key '[a, b]' in program")]


def test_a_null_key_is_shown_as_written(tmp_path: Path) -> None:
    text = PROGRAM.replace("timezone: UTC}", "timezone: UTC, null: x, 014: y}")
    got = [
        (code, line, col, message) for code, _, line, col, message, _ in problems(tmp_path, text)
    ]
    assert got == [
        ("S201", 2, 63, "unknown key 'null' in program"),
        ("S201", 2, 72, "unknown key '014' in program"),
    ]


def test_deep_brackets_are_nesting_not_aliases() -> None:
    assert yaml_problems("a: " + "[" * 1000 + "]" * 1000 + "\n") == [
        (
            "Y103",
            1,
            54,  # the 51st bracket
            "the document is nested more than 50 levels deep here",
            "A program is a few levels deep; look for brackets [ or { that are opened again "
            "and again, or never closed.",
        )
    ]


def test_a_nul_byte_is_reported_at_its_place() -> None:
    assert yaml_problems("version: 1\nprogram:\n  id: x\x00\n") == [
        (
            "Y101",
            3,
            8,
            "YAML syntax error: the file holds the control character #x0000 (NUL), which "
            "YAML does not allow",
            "Remove the character; a program file is plain text (NUL bytes often mean the "
            "file was saved as UTF-16 or is not text).",
        )
    ]


def test_two_documents() -> None:
    assert yaml_problems("version: 1\nprogram: {id: x}\n---\nversion: 1\n") == [
        (
            "Y101",
            3,
            1,
            "YAML syntax error: a second document starts here; a program or workflow file "
            "holds one document",
            "Remove this `---` line and what follows it, or move the second document to a "
            "file of its own.",
        )
    ]


def test_an_unclosed_quote_is_reported_at_the_quote() -> None:
    assert yaml_problems('version: 1\nprogram:\n  id: "x\n') == [
        (
            "Y101",
            3,
            7,
            'YAML syntax error: this " is never closed (found unexpected end of stream)',
            'Add the closing " at the end of the text (inside it, write \\" for a quote).',
        )
    ]
    assert yaml_problems("version: 1\nprogram:\n  id: 'x\n") == [
        (
            "Y101",
            3,
            7,
            "YAML syntax error: this ' is never closed (found unexpected end of stream)",
            "Add the closing ' at the end of the text (inside it, write '' for a single quote).",
        )
    ]


def test_an_error_at_the_end_of_the_file_points_inside_it() -> None:
    ((code, line, col, _, _),) = yaml_problems("version: 1\nprogram: [\n\n\n")
    assert (code, line, col) == ("Y101", 2, 11)
