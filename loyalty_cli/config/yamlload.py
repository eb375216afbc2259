"""Read YAML 1.2 files into plain data, keeping the line and column of every key and value.

Problems (syntax errors, duplicate keys, alias bombs, unreadable files) come back as
diagnostics instead of exceptions, so `validate` can report every file in one pass.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError

from loyalty_cli.diagnostics import Diagnostic, first_line

# A program file is small; anything bigger is a mistake, not a program.
MAX_FILE_BYTES = 2_000_000
# Alias expansion guard: a document expanding to more nodes than this is refused.
MAX_NODES = 200_000
# Nesting guard: a program is a few levels deep; 1000 nested `[` is a broken file.
MAX_DEPTH = 50

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


class _TooDeep(Exception):
    def __init__(self, node: Any):
        super().__init__("too deep")
        self.node = node


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
    if tag.endswith((":int", ":float")):
        return _core_number(value)
    return value


# The YAML 1.2 core schema's numbers (https://yaml.org/spec/1.2.2/#1032-tag-resolution):
# ruamel also reads `1_000` (YAML 1.1) as a number and refuses `014`; the core schema has
# no underscores and reads `014` as 14 (octal is `0o14`).
_CORE_INT = re.compile(r"[-+]?[0-9]+")
_CORE_OCT = re.compile(r"0o[0-7]+")
_CORE_HEX = re.compile(r"0x[0-9a-fA-F]+")
_CORE_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_CORE_INF = re.compile(r"([-+]?)\.(inf|Inf|INF)")
_CORE_NAN = re.compile(r"\.(nan|NaN|NAN)")


def _core_number(value: str) -> int | float | str:
    """A plain scalar as the YAML 1.2 core schema reads it: an int, a float, else text."""
    if _CORE_INT.fullmatch(value):
        return int(value, 10)
    if _CORE_OCT.fullmatch(value):
        return int(value[2:], 8)
    if _CORE_HEX.fullmatch(value):
        return int(value[2:], 16)
    if _CORE_FLOAT.fullmatch(value):
        return float(value)
    inf = _CORE_INF.fullmatch(value)
    if inf:
        return float("-inf") if inf.group(1) == "-" else float("inf")
    if _CORE_NAN.fullmatch(value):
        return float("nan")
    return value


def _key_text(knode: Any, text: str) -> str:
    """A mapping key as text, as it is written: `1:` is '1', `null:` is 'null' (not
    'None'), and a complex key (`? [a, b]`) is its source text '[a, b]'."""
    if isinstance(knode, ScalarNode):
        return str(knode.value)
    start, end = knode.start_mark.index, knode.end_mark.index
    shown = " ".join(text[start:end].split()) if 0 <= start < end <= len(text) else ""
    return shown or "(a list or mapping)"


def _convert(node: Any, path: PathKey, doc: YamlDoc, budget: list[int], depth: int = 0) -> Any:
    """Plain data from composed nodes, recording positions; aliases count every time."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig(path)
    if depth > MAX_DEPTH:
        raise _TooDeep(node)
    if isinstance(node, MappingNode):
        out: dict[str, Any] = {}
        first: dict[str, Any] = {}
        dups: list[tuple[str, Any, Any]] = []
        for knode, vnode in node.value:
            skey = _key_text(knode, doc.text)
            if skey in first:
                dups.append((skey, first[skey], knode))
                continue
            first[skey] = knode
            child = (*path, skey)
            doc.keys[child] = Pos(knode.start_mark.line + 1, knode.start_mark.column + 1)
            style = _STYLES.get(getattr(vnode, "style", None) or "", "plain")
            doc.values[child] = Pos(vnode.start_mark.line + 1, vnode.start_mark.column + 1, style)
            out[skey] = _convert(vnode, child, doc, budget, depth + 1)
        if dups:
            raise _Duplicates(dups)
        return out
    if isinstance(node, SequenceNode):
        items = []
        for i, vnode in enumerate(node.value):
            child = (*path, i)
            style = _STYLES.get(getattr(vnode, "style", None) or "", "plain")
            doc.values[child] = Pos(vnode.start_mark.line + 1, vnode.start_mark.column + 1, style)
            items.append(_convert(vnode, child, doc, budget, depth + 1))
        return items
    return _scalar(node)


@cache
def _yaml() -> YAML:
    # The C parser when ruamel.yaml.clib is installed (much faster); same nodes either way.
    y = YAML(typ="safe", pure=False)
    y.version = (1, 2)
    return y


def _inside(text: str, line: int | None, col: int | None) -> tuple[int | None, int | None]:
    """A position past the last line (the end of the file) moved to the end of the last
    line with text, so a message never points below the file."""
    if line is None:
        return line, col
    lines = text.splitlines()
    if line <= len(lines):
        return line, col
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return 1, 1
    return len(lines), len(lines[-1]) + 1


def _too_deep(
    path: str, line: int = 1, col: int = 1, message: str = "the document is nested too deeply"
) -> Diagnostic:
    return Diagnostic(
        code="Y103",
        path=path,
        line=line,
        col=col,
        message=message,
        hint="A program is a few levels deep; look for brackets [ or { that are "
        "opened again and again, or never closed.",
    )


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
        if "another document" in problem:
            return None, [
                Diagnostic(
                    code="Y101",
                    path=path,
                    line=line,
                    col=col,
                    message="YAML syntax error: a second document starts here; a program or "
                    "workflow file holds one document",
                    hint="Remove this `---` line and what follows it, or move the second "
                    "document to a file of its own.",
                )
            ]
        if ctx_mark is not None and "quoted scalar" in context:
            # An unclosed quote: the problem is at the end of the file; point at the quote.
            quote = text[ctx_mark.index] if 0 <= ctx_mark.index < len(text) else '"'
            inside = "write '' for a single quote" if quote == "'" else 'write \\" for a quote'
            return None, [
                Diagnostic(
                    code="Y101",
                    path=path,
                    line=ctx_mark.line + 1,
                    col=ctx_mark.column + 1,
                    message=f"YAML syntax error: this {quote} is never closed ({problem})",
                    hint=f"Add the closing {quote} at the end of the text (inside it, {inside}).",
                )
            ]
        line, col = _inside(text, line, col)
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
    except ReaderError as exc:
        # A character YAML does not allow (NUL, other control characters), at its place.
        index = max(0, min(int(exc.position), len(text)))
        line = text.count("\n", 0, index) + 1
        col = index - (text.rfind("\n", 0, index) + 1) + 1
        char = exc.character
        code = ord(char) if isinstance(char, str) else int(char)
        name = " (NUL)" if code == 0 else ""
        return None, [
            Diagnostic(
                code="Y101",
                path=path,
                line=line,
                col=col,
                message=f"YAML syntax error: the file holds the control character "
                f"#x{code:04x}{name}, which YAML does not allow",
                hint="Remove the character; a program file is plain text (NUL bytes often "
                "mean the file was saved as UTF-16 or is not text).",
            )
        ]
    except YAMLError as exc:
        return None, [
            Diagnostic(
                code="Y101",
                path=path,
                line=1,
                col=1,
                message=f"YAML error: {first_line(str(exc))}",
                hint="Check that the file is a YAML text file.",
            )
        ]
    except RecursionError:
        return None, [_too_deep(path)]
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
    except _TooDeep as exc:
        mark = exc.node.start_mark
        return None, [
            _too_deep(
                path,
                mark.line + 1,
                mark.column + 1,
                f"the document is nested more than {MAX_DEPTH} levels deep here",
            )
        ]
    except RecursionError:
        return None, [_too_deep(path)]
    except _TooBig as exc:
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
