"""Read YAML 1.2 files into plain data, keeping the line and column of every key and value.

Problems (syntax errors, duplicate keys, alias bombs, unreadable files) come back as
diagnostics instead of exceptions, so `validate` can report every file in one pass.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import (
    DoubleQuotedScalarString,
    FoldedScalarString,
    LiteralScalarString,
    SingleQuotedScalarString,
)

from loyalty_cli.diagnostics import Diagnostic

# A program file is small; anything bigger is a mistake, not a program.
MAX_FILE_BYTES = 2_000_000
# Alias expansion guard: a document expanding to more nodes than this is refused.
MAX_NODES = 200_000

PathKey = tuple[str | int, ...]


@dataclass(frozen=True)
class Pos:
    """1-based position of a value in a file, and how its text starts there."""

    line: int
    col: int
    # Offset of the scalar's first character from `col` (1 for quoted strings) or
    # "block" for literal/folded scalars whose text starts on the next line.
    style: str = "plain"


@dataclass
class YamlDoc:
    """A loaded YAML file: plain data plus positions of keys and values by path."""

    path: str
    data: Any
    text: str
    values: dict[PathKey, Pos] = field(default_factory=dict)
    keys: dict[PathKey, Pos] = field(default_factory=dict)

    def pos(self, path: PathKey) -> Pos | None:
        """Position of the value at `path`, or of the nearest enclosing value."""
        p = tuple(path)
        while True:
            if p in self.values:
                return self.values[p]
            if not p:
                return None
            p = p[:-1]

    def key_pos(self, path: PathKey) -> Pos | None:
        """Position of the key naming `path` (falls back to the value's position)."""
        return self.keys.get(tuple(path)) or self.pos(path)

    def expression_pos(self, path: PathKey, line: int, col: int) -> tuple[int, int]:
        """Map a 1-based position inside the scalar at `path` to a file position."""
        pos = self.pos(path)
        if pos is None:
            return line, col
        if pos.style == "block":
            text_line = pos.line + line
            src = self.text.splitlines()
            indent = 0
            if 0 < text_line <= len(src):
                raw = src[text_line - 1]
                indent = len(raw) - len(raw.lstrip(" "))
            return text_line, indent + col
        offset = 1 if pos.style == "quoted" else 0
        if line == 1:
            return pos.line, pos.col + offset + col - 1
        return pos.line + line - 1, col


class _TooBig(Exception):
    pass


def format_path(path: PathKey) -> str:
    """`('earning', 'rules', 2, 'when')` -> `earning.rules[2].when`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _style(value: Any) -> str:
    if isinstance(value, (SingleQuotedScalarString, DoubleQuotedScalarString)):
        return "quoted"
    if isinstance(value, (LiteralScalarString, FoldedScalarString)):
        return "block"
    return "plain"


def _convert(node: Any, path: PathKey, doc: YamlDoc, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        lc = getattr(node, "lc", None)
        for key, value in node.items():
            skey = key if isinstance(key, str) else str(key)
            child = (*path, skey)
            if lc is not None:
                try:
                    kl, kc = lc.key(key)
                    doc.keys[child] = Pos(kl + 1, kc + 1)
                    vl, vc = lc.value(key)
                    doc.values[child] = Pos(vl + 1, vc + 1, _style(value))
                except (KeyError, TypeError):
                    pass
            out[skey] = _convert(value, child, doc, budget)
        return out
    if isinstance(node, list):
        items = []
        lc = getattr(node, "lc", None)
        for i, value in enumerate(node):
            child = (*path, i)
            if lc is not None:
                try:
                    il, ic = lc.item(i)
                    doc.values[child] = Pos(il + 1, ic + 1, _style(value))
                except (KeyError, TypeError, IndexError):
                    pass
            items.append(_convert(value, child, doc, budget))
        return items
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, (dt.datetime, dt.date)):
        # Dates are written as ISO strings in the model; the schema checks their format.
        return node.isoformat()
    if isinstance(node, str):
        return str(node)
    return node


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.version = (1, 2)
    y.preserve_quotes = True
    y.allow_duplicate_keys = False
    return y


def load_yaml_text(text: str, path: str) -> tuple[YamlDoc | None, list[Diagnostic]]:
    """Parse YAML text; returns the document or the diagnostics that stopped it."""
    doc = YamlDoc(path=path, data=None, text=text)
    try:
        raw = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        col = mark.column + 1 if mark is not None else None
        is_dup = type(exc).__name__ == "DuplicateKeyError"
        if is_dup:
            first = exc.context_mark
            first_at = f" (first defined on line {first.line + 1})" if first is not None else ""
            key = _dup_key_name(text, line, col)
            return None, [
                Diagnostic(
                    code="Y102",
                    path=path,
                    line=line,
                    col=col,
                    message=f"duplicate key {key!r}{first_at}" if key else f"duplicate key{first_at}",
                    hint="Each key may appear once per mapping; merge the two entries or rename one.",
                )
            ]
        problem = (exc.problem or str(exc)).strip()
        context = f" {exc.context.strip()}" if exc.context else ""
        return None, [
            Diagnostic(
                code="Y101",
                path=path,
                line=line,
                col=col,
                message=f"YAML syntax error: {problem}{context}",
                hint="Check indentation, colons after keys, and matching quotes and brackets "
                "around this line.",
            )
        ]
    except YAMLError as exc:
        return None, [Diagnostic(code="Y101", path=path, message=f"YAML error: {exc}")]
    except RecursionError:
        return None, [
            Diagnostic(
                code="Y103",
                path=path,
                message="the document is nested too deeply",
                hint="A program is a few levels deep; check for recursive aliases.",
            )
        ]
    try:
        doc.data = _convert(raw, (), doc, [MAX_NODES])
    except (_TooBig, RecursionError):
        return None, [
            Diagnostic(
                code="Y103",
                path=path,
                line=1,
                col=1,
                message=f"the document expands to more than {MAX_NODES:,} values "
                "(anchors and aliases repeated inside each other)",
                hint="Remove the nested aliases (*name); a program never needs them.",
            )
        ]
    return doc, []


def _dup_key_name(text: str, line: int | None, col: int | None) -> str:
    if not line:
        return ""
    lines = text.splitlines()
    if line > len(lines):
        return ""
    rest = lines[line - 1][(col or 1) - 1 :]
    name = rest.split(":", 1)[0].strip().strip("'\"")
    return name if name and len(name) < 80 else ""


def load_yaml_file(path: str | Path) -> tuple[YamlDoc | None, list[Diagnostic]]:
    """Read and parse one YAML file."""
    p = Path(path)
    shown = str(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            return None, [
                Diagnostic(
                    code="Y104",
                    path=shown,
                    message=f"file is {size:,} bytes; the limit is {MAX_FILE_BYTES:,}",
                    hint="A program or workflow file is a few kilobytes; is this the right file?",
                )
            ]
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        return None, [
            Diagnostic(
                code="Y104",
                path=shown,
                message=f"file is not UTF-8 text (byte {exc.start})",
                hint="Save the file as UTF-8.",
            )
        ]
    except OSError as exc:
        return None, [
            Diagnostic(
                code="Y104",
                path=shown,
                message=f"cannot read file: {exc.strerror or exc}",
                hint="Check the path and its permissions.",
            )
        ]
    return load_yaml_text(text, shown)
