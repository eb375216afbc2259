"""CSV output that is safe to open in a spreadsheet (SPEC 8).

Names, emails and free text come from the shop's exports, and a spreadsheet runs a cell
that begins with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return before one) as a
formula. Such text cells get a leading apostrophe, which spreadsheets show as text and do
not evaluate. Numbers are written as they are, and so are phone numbers in E.164
(``+48601234567``), which the ``+`` would otherwise spoil.

Every CSV the tool writes goes through :func:`write_csv`, so the files are identical from
one run to the next: UTF-8, ``\\n`` line endings, minimal quoting, and fixed spellings for
values that are not text (see :func:`cell_text`).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")

# E.164: a plus, a country code not starting with 0, at most 15 digits in all.
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


def is_e164(value: str) -> bool:
    """True for a phone number written in E.164: ``+`` and 2 to 15 digits, the first not 0."""
    return _E164.fullmatch(value) is not None


def neutralise(value: object) -> object:
    """The value with spreadsheet formulas disarmed.

    Text that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a
    leading apostrophe, unless it is an E.164 phone number. Anything that is not text
    (numbers, dates, None) is returned unchanged.
    """
    if not isinstance(value, str):
        return value
    if value.startswith(FORMULA_PREFIXES) and not is_e164(value):
        return "'" + value
    return value


def cell_text(value: object) -> str:
    """How a value is spelled in a CSV cell.

    None is an empty cell; booleans are ``true``/``false``; dates and timestamps use ISO
    8601; decimals are written in plain notation (``100``, never ``1E+2``).
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _cells(row: Sequence[object] | Mapping[str, object], header: Sequence[str]) -> list[object]:
    if isinstance(row, Mapping):
        return [row.get(name) for name in header]
    cells = list(row)
    if len(cells) != len(header):
        raise ValueError(f"row has {len(cells)} cells, header has {len(header)}: {cells!r}")
    return cells


def csv_text(
    header: Sequence[str],
    rows: Iterable[Sequence[object] | Mapping[str, object]],
    text_columns: Iterable[str] | None = None,
) -> str:
    """The CSV document for ``rows`` under ``header``, as written by :func:`write_csv`."""
    header = list(header)
    if text_columns is None:
        guarded = [True] * len(header)
    else:
        wanted = set(text_columns)
        unknown = wanted - set(header)
        if unknown:
            raise ValueError(f"text_columns not in header: {sorted(unknown)}")
        guarded = [name in wanted for name in header]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        cells = _cells(row, header)
        writer.writerow(
            cell_text(neutralise(cell) if guard else cell)
            for cell, guard in zip(cells, guarded, strict=True)
        )
    return buffer.getvalue()


def write_csv(
    path: str | os.PathLike[str],
    header: Sequence[str],
    rows: Iterable[Sequence[object] | Mapping[str, object]],
    text_columns: Iterable[str] | None = None,
) -> None:
    """Write a CSV file whose text cells are neutralised for spreadsheets.

    ``rows`` are sequences in header order or mappings keyed by column name (a missing
    key is an empty cell). Every text cell is neutralised, or only those in the columns
    named by ``text_columns`` when it is given (for files where some text must stay
    verbatim). The file is written to a temporary name and then renamed, so a reader
    never sees half a file; parent folders are created.
    """
    write_text_atomic(path, csv_text(header, rows, text_columns))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` through a temporary file and a rename."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
