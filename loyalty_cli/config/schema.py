"""JSON-Schema checks of program and workflow files, reported with file:line:col.

The schemas in `schemas/` are the published contract; a copy ships inside the package.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from loyalty_cli.config.yamlload import YamlDoc, format_path
from loyalty_cli.diagnostics import Diagnostic


@cache
def load_schema(kind: str) -> dict:
    """The packaged schema for `program` or `workflow`."""
    text = resources.files("loyalty_cli.schemas").joinpath(f"{kind}.schema.json").read_text()
    return json.loads(text)


NOT_FINITE = "not a finite number"


def _not_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def _numeric_only(types: Any) -> bool:
    """A number or integer key, as opposed to an expression (which may also be a number and
    whose `.nan` the expression checker reports)."""
    types = types if isinstance(types, list) else [types]
    return ("number" in types or "integer" in types) and "string" not in types


def _type(validator: Any, types: Any, instance: Any, schema: dict) -> Iterator[ValidationError]:
    """`type`, and a number key given .inf, .nan or a number too large for a float (1e309):
    one error that says so, instead of a wrong type or none at all (NaN passes every bound)."""
    if _not_finite(instance) and _numeric_only(types):
        yield ValidationError(NOT_FINITE, validator="type", validator_value=types)
        return
    yield from _BASE.VALIDATORS["type"](validator, types, instance, schema)


def _bound(keyword: str):
    def check(validator: Any, value: Any, instance: Any, schema: dict) -> Iterator[ValidationError]:
        if _not_finite(instance):
            return  # reported once, by `type`
        yield from _BASE.VALIDATORS[keyword](validator, value, instance, schema)

    return check


_BASE = Draft202012Validator
_Validator = validators.extend(
    _BASE,
    {
        "type": _type,
        **{k: _bound(k) for k in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")},
    },
)


@cache
def _validator(kind: str) -> Any:
    return _Validator(load_schema(kind))


def _leaf_errors(error: ValidationError) -> list[ValidationError]:
    """For oneOf/anyOf, the errors of the branch that got furthest, else the error itself."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        # Prefer the branch whose errors are deepest (the one the user meant).
        by_branch: dict[int, list[ValidationError]] = {}
        for sub in error.context:
            by_branch.setdefault(sub.schema_path[0] if sub.schema_path else 0, []).append(sub)
        best = max(
            by_branch.values(),
            key=lambda errs: (max(len(e.absolute_path) for e in errs), -len(errs)),
        )
        out: list[ValidationError] = []
        for sub in best:
            out.extend(_leaf_errors(sub))
        return out
    return [error]


def _schema_at(schema: dict, error: ValidationError) -> dict:
    sch = error.schema if isinstance(error.schema, dict) else {}
    return sch


def _describe_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if value is None:
        return "empty (null)"
    return type(value).__name__


def _to_diagnostics(doc: YamlDoc, error: ValidationError, kind: str) -> list[Diagnostic]:
    path = tuple(error.absolute_path)
    where = format_path(path)
    sch = _schema_at(load_schema(kind), error)
    v = error.validator
    if v == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted((sch.get("properties") or {}).keys())
        out = []
        patterns = list((sch.get("patternProperties") or {}).keys())
        for key in error.instance:
            if key in allowed or any(re.search(p, key) for p in patterns):
                continue
            kp = doc.key_pos((*path, key))
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"Did you mean '{close[0]}'? " if close else ""
            hint += f"Allowed keys here: {', '.join(allowed)}." if allowed else ""
            message = f"unknown key '{key}'" + (f" in {where}" if where else "")
            if patterns and not allowed:
                # A mapping of names (extra columns, rfm groups, churn levels): the name breaks
                # the pattern names must match.
                message = f"'{key}' is not allowed as a name" + (f" in {where}" if where else "")
                hint = " ".join(
                    _PATTERN_WORDS.get(p, f"A name here must match {p}.") for p in patterns
                )
            out.append(
                Diagnostic(
                    code="S201",
                    path=doc.path,
                    line=kp.line if kp else None,
                    col=kp.col if kp else None,
                    where=format_path((*path, key)),
                    message=message,
                    hint=hint.strip(),
                )
            )
        return out
    pos = doc.pos(path)
    line, col = (pos.line, pos.col) if pos else (None, None)

    def at(code: str, message: str, hint: str, line=line, col=col) -> list[Diagnostic]:
        """One diagnostic at the value (or the given position) of this error."""
        return [
            Diagnostic(
                code=code,
                path=doc.path,
                line=line,
                col=col,
                where=where,
                message=message,
                hint=hint,
            )
        ]

    if v == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        desc = ((sch.get("properties") or {}).get(missing) or {}).get("description", "")
        kp = doc.key_pos(path) if path else None
        if kp:
            line, col = kp.line, kp.col
        return at(
            "S203",
            f"missing required key '{missing}'" + (f" in {where}" if where else ""),
            f"Add '{missing}:'." + (f" ({desc})" if desc else ""),
            line=line or 1,
            col=col or 1,
        )
    if v == "type" and error.message == NOT_FINITE:
        value = error.instance
        if math.isnan(value):
            shown = ".nan is"
        else:
            sign = "-" if value < 0 else ""
            shown = f"{sign}.inf (or a number too large to hold, such as {sign}1e309) is"
        return at("S205", f"{where or 'value'}: {shown} {NOT_FINITE}", _with_range(sch))
    if v in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return at("S205", f"{where or 'value'}: {_short(error.message)}", _with_range(sch))
    if v == "type":
        expected = sch.get("type")
        exp = " or ".join(expected) if isinstance(expected, list) else str(expected)
        return at(
            "S202",
            f"{where or 'document'} should be {exp}, not {_describe_type(error.instance)}",
            sch.get("description", ""),
        )
    if v in ("enum", "const"):
        allowed = sch.get("enum") or [sch.get("const")]
        shown = ", ".join(json.dumps(a) for a in allowed)
        close = (
            difflib.get_close_matches(str(error.instance), [str(a) for a in allowed], n=1)
            if isinstance(error.instance, str)
            else []
        )
        hint = f"Did you mean {close[0]!r}? " if close else ""
        return at(
            "S204",
            f"{where or 'value'}: {json.dumps(error.instance, default=str)} is not "
            f"allowed; use one of {shown}",
            (hint + sch.get("description", "")).strip(),
        )
    if v == "pattern" and "day|days" in str(error.validator_value):
        from loyalty_cli.config.durations import DURATION_HINT

        return at(
            "R304",
            f"malformed duration {error.instance!r} at {where}",
            DURATION_HINT + " At most 4 digits.",
        )
    if v == "not" and isinstance(error.validator_value, dict):
        why = error.validator_value.get("description")
        kp = doc.key_pos(path) if path else None
        if kp:
            line, col = kp.line, kp.col
        if why:
            return at(
                "S201" if path else "S205",
                f"{where or 'value'}: {why}",
                "Remove this key or change the entry's type.",
                line=line,
                col=col,
            )
    return at(
        "S205",
        f"{where or 'value'}: {_short(error.message)}",
        sch.get("description", ""),
        line=line,
        col=col,
    )


# The name patterns of the schemas, in words (for a key that breaks one).
_PATTERN_WORDS = {
    "^[A-Za-z_][A-Za-z0-9_]*$": "A name here is letters (A-Z, a-z), digits and '_', "
    "starting with a letter or '_', without spaces or other characters, e.g. "
    "'newsletter_segment'.",
    "^[A-Za-z0-9][A-Za-z0-9_.-]*$": "A name here is letters (A-Z, a-z), digits, '_', '.' "
    "and '-', starting with a letter or digit, without spaces, quotes or other "
    "characters, e.g. 'at_risk' or 'high-value'.",
}


def _number(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)


def _with_range(sch: dict) -> str:
    """The key's description and the numbers it allows, e.g. 'Allowed: 1 to 1,000,000,000.'"""
    low = high = ""
    if "minimum" in sch:
        low = f"from {_number(sch['minimum'])}"
    elif "exclusiveMinimum" in sch:
        low = f"above {_number(sch['exclusiveMinimum'])}"
    if "maximum" in sch:
        high = f"up to {_number(sch['maximum'])}"
    allowed = " ".join(x for x in (low, high) if x)
    desc = str(sch.get("description", "")).strip()
    whole = " (a whole number)" if sch.get("type") == "integer" else ""
    text = f"Allowed: {allowed}{whole}." if allowed else "Write a finite number."
    return f"{desc} {text}".strip()


def _short(message: str) -> str:
    return message if len(message) < 200 else message[:197] + "..."


def check_schema(doc: YamlDoc, kind: str) -> list[Diagnostic]:
    """All schema problems of a document, each at its key or value."""
    out: list[Diagnostic] = []
    seen: set[tuple] = set()
    errors = sorted(_validator(kind).iter_errors(doc.data), key=lambda e: list(map(str, e.path)))
    for error in errors:
        for leaf in _leaf_errors(error):
            for d in _to_diagnostics(doc, leaf, kind):
                key = (d.code, d.line, d.col, d.message)
                if key not in seen:
                    seen.add(key)
                    out.append(d)
    return out
