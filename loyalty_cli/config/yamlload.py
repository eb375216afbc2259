"""Read YAML 1.2 files into plain data, keeping the line and column of every key and value.

Problems (syntax errors, duplicate keys, alias bombs, unreadable files) come back as
diagnostics instead of exceptions, so `validate` can report every file in one pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

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

    def value_at(self, path: PathKey) -> Any:
        node = self.data
        for part in path:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return None
        return node

    def expression_pos(self, path: PathKey, line: int, col: int) -> tuple[int, int]:
        """Map a 1-based position inside the scalar at `path` to a file position."""
        value = self.value_at(path)
        if not isinstance(value, str):
            value = str(value) if value is not None else ""
        lines = value.split("\n")
        line = max(1, min(line, len(lines)))
        index = sum(len(x) + 1 for x in lines[: line - 1]) + max(0, col - 1)
        return self.offset_pos(path, index)

    def offset_pos(self, path: PathKey, index: int) -> tuple[int, int]:
        """File position of character `index` of the (parsed) scalar at `path`.

        Walks the source text from the scalar's start, matching the parsed characters in
        order, so quotes, '' escapes, folded lines and block indentation are accounted for.
        """
        pos = self.pos(path)
        if pos is None:
            return 1, 1
        value = self.value_at(path)
        if not isinstance(value, str):
            return pos.line, pos.col + max(0, index)
        text = self.text
        line_starts = [0]
        for i, ch in enumerate(text):
            if ch == "\n":
                line_starts.append(i + 1)
        if pos.line - 1 >= len(line_starts):
            return pos.line, pos.col
        j = line_starts[pos.line - 1] + pos.col - 1
        if pos.style == "quoted":
            j += 1
        elif pos.style == "block":
            j = line_starts[pos.line] if pos.line < len(line_starts) else len(text)
        index = max(0, min(index, len(value) - 1)) if value else 0
        for k, ch in enumerate(value):
            while j < len(text) and text[j] != ch and not (ch == " " and text[j] == "\n"):
                j += 1
            if j >= len(text):
                return pos.line, pos.col
            if k == index:
                break
            j += 1
        import bisect

        row = bisect.bisect_right(line_starts, j) - 1
        return row + 1, j - line_starts[row] + 1


class _TooBig(Exception):
    def __init__(self, path: PathKey):
        super().__init__("too big")
        self.path = path


def format_path(path: PathKey) -> str:
    """`('earning', 'rules', 2, 'when')` -> `earning.rules[2].when`."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


_STYLES = {"'": "quoted", '"': "quoted", "|": "block", ">": "block"}


class _Duplicates(Exception):
    def __init__(self, found: list[tuple[str, Any, Any]]):
        super().__init__("duplicate keys")
        self.found = found  # (key, first key node, duplicate key node)


def _scalar(node: ScalarNode) -> Any:
    """A scalar by its YAML 1.2 core-schema tag (dates stay ISO text)."""
    tag, value = node.tag or "", node.value
    if node.style:
        return value
    if tag.endswith(":null"):
        return None
    if tag.endswith(":bool"):
        return value.lower() == "true"
    if tag.endswith(":int"):
        try:
            return int(value.replace("_", ""), 0)
        except ValueError:
            return value
    if tag.endswith(":float"):
        low = value.lower()
        if low in (".inf", "+.inf"):
            return float("inf")
        if low == "-.inf":
            return float("-inf")
        if low == ".nan":
            return float("nan")
        try:
            return float(value.replace("_", ""))
        except ValueError:
            return value
    return value


def _convert(node: Any, path: PathKey, doc: YamlDoc, budget: list[int]) -> Any:
    """Plain data from composed nodes, recording positions; aliases count every time."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig(path)
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        first: dict[str, Any] = {}
        dups: list[tuple[str, Any, Any]] = []
        for knode, vnode in node.value:
            key = _scalar(knode) if isinstance(knode, ScalarNode) else str(knode.value)
            skey = key if isinstance(key, str) else str(key)
            if skey in first:
                dups.append((skey, first[skey], knode))
                continue
            first[skey] = knode
            child = (*path, skey)
            doc.keys[child] = Pos(knode.start_mark.line + 1, knode.start_mark.column + 1)
            style = _STYLES.get(getattr(vnode, "style", None) or "", "plain")
            doc.values[child] = Pos(vnode.start_mark.line + 1, vnode.start_mark.column + 1, style)
            out[skey] = _convert(vnode, child, doc, budget)
        if dups:
            raise _Duplicates(dups)
        return out
    if isinstance(node, SequenceNode):
        items = []
        for i, vnode in enumerate(node.value):
            child = (*path, i)
            style = _STYLES.get(getattr(vnode, "style", None) or "", "plain")
            doc.values[child] = Pos(vnode.start_mark.line + 1, vnode.start_mark.column + 1, style)
            items.append(_convert(vnode, child, doc, budget))
        return items
    return _scalar(node)


@cache
def _yaml() -> YAML:
    # The C parser when ruamel.yaml.clib is installed (much faster); same nodes either way.
    y = YAML(typ="safe", pure=False)
    y.version = (1, 2)
    return y


def load_yaml_text(text: str, path: str) -> tuple[YamlDoc | None, list[Diagnostic]]:
    """Parse YAML text; returns the document or the diagnostics that stopped it."""
    doc = YamlDoc(path=path, data=None, text=text)
    try:
        raw = _yaml().compose(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        col = mark.column + 1 if mark is not None else None
        problem = (exc.problem or str(exc)).strip()
        context = (exc.context or "").strip()
        hint = (
            "Check indentation, colons after keys, and matching quotes and brackets "
            "around this line."
        )
        ctx_mark = exc.context_mark
        if ctx_mark is not None and ("flow sequence" in context or "flow mapping" in context):
            # An unclosed [ or {: point at the bracket that is never closed.
            line, col = ctx_mark.line + 1, ctx_mark.column + 1
            bracket = "[" if "sequence" in context else "{"
            closing = "]" if bracket == "[" else "}"
            return None, [
                Diagnostic(
                    code="Y101",
                    path=path,
                    line=line,
                    col=col,
                    message=f"YAML syntax error: this '{bracket}' is never closed ({problem})",
                    hint=f"Add the missing '{closing}', or separate the items with commas.",
                )
            ]
        if "mapping values are not allowed" in problem and line is not None:
            # Usually a key indented deeper than its siblings: point at the key.
            lines = text.splitlines()
            if 0 < line <= len(lines):
                raw = lines[line - 1]
                col = len(raw) - len(raw.lstrip(" ")) + 1
            problem = "this key is indented deeper than the keys before it"
            hint = (
                "Keys of one mapping start in the same column; remove the extra spaces "
                "(or quote a value that contains ': ')."
            )
        elif "tab" in problem.lower():
            hint = "YAML indentation uses spaces, never tabs."
        shown = f" {context}" if context and "mapping values" not in problem else ""
        return None, [
            Diagnostic(
                code="Y101",
                path=path,
                line=line,
                col=col,
                message=f"YAML syntax error: {problem}{shown}",
                hint=hint,
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
        doc.data = _convert(raw, (), doc, [MAX_NODES]) if raw is not None else None
    except _Duplicates as exc:
        return None, [
            Diagnostic(
                code="Y102",
                path=path,
                line=dup.start_mark.line + 1,
                col=dup.start_mark.column + 1,
                message=f"duplicate key {key!r} "
                f"(first defined on line {first.start_mark.line + 1})",
                hint="Each key may appear once per mapping; merge the two entries or rename one.",
            )
            for key, first, dup in exc.found
        ]
    except (_TooBig, RecursionError) as exc:
        where = getattr(exc, "path", ())
        keys = [i for i, part in enumerate(where) if isinstance(part, str)]
        pos = doc.key_pos(where[: keys[-1] + 1]) if keys else None
        return None, [
            Diagnostic(
                code="Y103",
                path=path,
                line=pos.line if pos else 1,
                col=pos.col if pos else 1,
                message=f"the document expands to more than {MAX_NODES:,} values "
                "(anchors and aliases repeated inside each other)",
                hint="Remove the nested aliases (*name); a program never needs them.",
            )
        ]
    return doc, []


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
