"""Checked programs remembered between runs, so a nightly run does not check its program again.

Checking a program (YAML, JSON Schema, every expression parsed with sqlglot, every
template rendered for a sample member) and importing what that takes cost a nightly run
about 0.15 s of its 2, and 0.45 s with five workflows. The outcome depends only on the
program file's bytes and on the code that checks it, so once a program has passed, its
loaded form (the data with defaults, and the compiled SQL of its expressions) is kept in
a small JSON file and used as long as both are the same:

- the program file, byte for byte (its SHA-256) and at the same absolute path;
- the code: this package's files and the checking libraries (sqlglot, jsonschema,
  ruamel.yaml, duckdb, jinja2, phonenumbers), by size and modification time, and the
  Python version;

- the other files the check reads: the workflow files the program's globs match (their
  paths and bytes), every file of the templates folder when there are workflows (their
  paths and bytes), and whether each coupon pool's file exists.

A program is checked every time when the cache folder cannot be written.

The folder is ``$LOYALTY_CACHE_DIR``, else ``$XDG_CACHE_HOME/loyalty``, else
``~/.cache/loyalty``; ``LOYALTY_CACHE_DIR=`` (empty) turns the cache off. `loyalty validate`
never uses it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
import os
import sys
from pathlib import Path

FORMAT = 3
# Libraries whose behaviour decides a check; found without importing them.
CHECKERS = ("sqlglot", "jsonschema", "ruamel.yaml", "duckdb", "jinja2", "phonenumbers")


def cache_dir() -> Path | None:
    """The cache folder, or None when the cache is turned off."""
    configured = os.environ.get("LOYALTY_CACHE_DIR")
    if configured is not None:
        return Path(configured) if configured.strip() else None
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "loyalty"


def _files_fingerprint(program: Path, data: dict) -> str:
    """The files a program's check reads besides the program: see the module's docstring."""
    import glob

    base = program.parent
    h = hashlib.sha256()

    def add(path: Path) -> None:
        try:
            h.update(f"{path}\n".encode() + path.read_bytes() + b"\n")
        except OSError:
            h.update(f"{path}: unreadable\n".encode())

    patterns = data.get("workflows") or []
    for pattern in patterns if isinstance(patterns, list) else [patterns]:
        h.update(f"workflows {pattern}\n".encode())
        for name in sorted(glob.glob(str(base / str(pattern)))):
            if Path(name).is_file():
                add(Path(name))
    if patterns:
        templates = base / str(data.get("templates") or "templates/")
        for dirpath, dirnames, filenames in os.walk(templates):
            dirnames.sort()
            for name in sorted(filenames):
                add(Path(dirpath) / name)
    for pool in (data.get("coupons") or {}).get("pools") or []:
        if isinstance(pool, dict) and pool.get("source") == "file":
            where = base / str(pool.get("path"))
            h.update(f"pool {where} {where.is_file()}\n".encode())
    return h.hexdigest()


def _code_fingerprint() -> str:
    """Size and modification time of every file of this package and of the checkers."""
    h = hashlib.sha256(f"{FORMAT}\n{sys.version}\n".encode())
    package = Path(__file__).resolve().parent.parent
    roots = [package]
    for name in CHECKERS:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        origin = spec.origin if spec is not None else None
        h.update(f"{name}={origin}\n".encode())
        if origin:
            roots.append(Path(origin).parent)
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for name in sorted(filenames):
                if name.endswith((".py", ".json", ".so", ".pyd")):
                    st = os.stat(os.path.join(dirpath, name))
                    h.update(f"{dirpath}/{name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _entry_path(folder: Path, program: Path) -> Path:
    return folder / f"program-{hashlib.sha256(str(program).encode()).hexdigest()[:32]}.json"


# -- values of the program's data -------------------------------------------------------------


class _Unsupported(Exception):
    pass


def _encode(value: object) -> object:
    """The program's data as JSON; dates tagged; anything else is refused (not kept)."""
    if value is None or type(value) is bool:
        return value
    if type(value).__name__ == "ScalarBoolean":  # ruamel's anchored boolean, an int
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise _Unsupported("a mapping key that is not text")
        if any(k in ("$date", "$datetime") for k in value):
            raise _Unsupported("a key that reads as a tag")
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    raise _Unsupported(type(value).__name__)


def _decode(value: object) -> object:
    if isinstance(value, dict):
        if set(value) == {"$date"}:
            return dt.date.fromisoformat(value["$date"])
        if set(value) == {"$datetime"}:
            return dt.datetime.fromisoformat(value["$datetime"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


# -- lookup and store ---------------------------------------------------------------------------


def lookup(program: Path, text: bytes):
    """The remembered Program for this file's bytes, or None. Fills the expression memo."""
    folder = cache_dir()
    if folder is None:
        return None
    where = program.resolve()
    try:
        entry = json.loads(_entry_path(folder, where).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or entry.get("format") != FORMAT:
        return None
    if entry.get("path") != str(where):
        return None
    if entry.get("source") != hashlib.sha256(text).hexdigest():
        return None
    if entry.get("code") != _code_fingerprint():
        return None
    try:
        from loyalty_cli import exprbase
        from loyalty_cli.config.model import Program

        checks = {}
        for key, source, sql, columns, kind in entry["checks"]:
            checks[tuple(key)] = exprbase.CheckedExpr(
                source, sql, [], {(row, col) for row, col in columns}, kind
            )
        data = _decode(entry["data"])
        if not isinstance(data, dict):
            return None
        if entry.get("files") != _files_fingerprint(where, data):
            return None
        workflows = []
        for p, w in entry["workflows"]:
            doc = _decode(w)
            if not isinstance(doc, dict):
                return None
            workflows.append((Path(p), doc))
        found = Program(path=program, data=data, workflows=workflows)
    except (KeyError, TypeError, ValueError):
        return None
    exprbase._CHECKED.update(checks)
    return found


def _column_order(column: list) -> tuple[str, str]:
    row, name = column
    return (row or "", name)  # a bare member-view name has no row


def files_before_check(program: Path, text: bytes) -> str | None:
    """The other files' fingerprint as the check is about to read them (None when the
    program does not parse): `store` keeps the check only if they are the same after it."""
    from ruamel.yaml import YAML

    try:
        data = YAML(typ="safe", pure=True).load(text)
    except Exception:  # noqa: BLE001 - the check reports it; nothing is kept
        return None
    if not isinstance(data, dict):
        return None
    return _files_fingerprint(program.resolve(), data)


def store(program_obj, text: bytes, files_before: str | None = None) -> None:
    """Remember a program that passed its check (with every check made so far)."""
    from loyalty_cli import exprbase

    folder = cache_dir()
    if folder is None:
        return
    try:
        data = _encode(program_obj.data)
        workflows = [[str(Path(p).resolve()), _encode(w)] for p, w in program_obj.workflows]
    except _Unsupported:
        return
    if _decode(json.loads(json.dumps(data))) != program_obj.data:
        return
    if [_decode(json.loads(json.dumps(w))) for _, w in workflows] != [
        w for _, w in program_obj.workflows
    ]:
        return
    files = _files_fingerprint(Path(program_obj.path).resolve(), program_obj.data)
    if files != files_before:  # a workflow, template or pool file changed during the check
        return
    checks = [
        [list(key), c.source, c.sql, sorted(map(list, c.columns), key=_column_order), c.kind]
        for key, c in exprbase._CHECKED.items()
        if c.ok and c.sql is not None
    ]
    entry = {
        "format": FORMAT,
        "path": str(Path(program_obj.path).resolve()),
        "source": hashlib.sha256(text).hexdigest(),
        "code": _code_fingerprint(),
        "data": data,
        "workflows": workflows,
        "files": files,
        "checks": checks,
    }
    target = _entry_path(folder, Path(program_obj.path).resolve())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        # Keys in the program's order: rfm groups are tried in the order written (sorted
        # keys made a cached program try them alphabetically).
        tmp.write_text(json.dumps(entry), encoding="utf-8")
        os.replace(tmp, target)
    except OSError:
        return
