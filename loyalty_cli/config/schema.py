"""JSON-Schema checks of program and workflow files, reported with file:line:col.

The schemas in `schemas/` are the published contract; a copy ships inside the package.
"""

from __future__ import annotations

import difflib
import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from loyalty_cli.config.yamlload import YamlDoc, format_path
from loyalty_cli.diagnostics import Diagnostic


@cache
def load_schema(kind: str) -> dict:
    """The packaged schema for `program` or `workflow`."""
    text = resources.files("loyalty_cli.schemas").joinpath(f"{kind}.schema.json").read_text()
    return json.loads(text)


@cache
def _validator(kind: str) -> Draft202012Validator:
    return Draft202012Validator(load_schema(kind))


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
        for key in error.instance:
            if key in allowed:
                continue
            kp = doc.key_pos((*path, key))
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"Did you mean '{close[0]}'? " if close else ""
            hint += f"Allowed keys here: {', '.join(allowed)}." if allowed else ""
            out.append(
                Diagnostic(
                    code="S201",
                    path=doc.path,
                    line=kp.line if kp else None,
                    col=kp.col if kp else None,
                    where=format_path((*path, key)),
                    message=f"unknown key '{key}'" + (f" in {where}" if where else ""),
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
