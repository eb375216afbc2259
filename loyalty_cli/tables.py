"""Tables for people: they fit the terminal and never cut a value.

Rich's default cuts a value that does not fit its column (`O2025…`, `1,746…`), which in a
narrow terminal hides the very numbers and ids a table is for. These tables are compact
(no outer frame, one space between columns), wrap long values within their cells instead,
and keep short ones (dates, kinds, amounts) on one line, from the left, while the rest fits.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from decimal import Decimal

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Values up to this long (dates, kinds, amounts) stay on one line while the rest fits.
SHORT_VALUE = 13


def fitted_table(
    title: str,
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    console: Console,
    *,
    drop_empty: bool = False,
    zero_means_nothing: Collection[str] = (),
) -> Table:
    """A table of text cells for `console`'s width; numeric columns are right-aligned.

    With `drop_empty`, a column whose every cell is empty is left out, and so is one named
    in `zero_means_nothing` whose every cell is 0. Print it with ``soft_wrap=False``.
    """
    keep = [
        i
        for i, name in enumerate(header)
        if not drop_empty
        or any(r[i] and not (name in zero_means_nothing and _is_zero(r[i])) for r in rows)
    ]
    longest = {i: max((len(r[i]) for r in rows), default=0) for i in keep}
    short = [i for i in keep if longest[i] <= SHORT_VALUE]

    def table(whole: list[int], rows: Sequence[Sequence[str]] = rows) -> Table:
        t = Table(
            title=Text(title, style="bold") if title else None,
            title_justify="left",
            header_style="bold",
            box=box.SIMPLE_HEAD,
            show_edge=False,
            padding=0,
            pad_edge=False,
        )
        for i in keep:
            t.add_column(
                Text(header[i]),
                justify="right" if all(_is_number(r[i]) for r in rows if r[i]) else "left",
                overflow="fold",
                min_width=longest[i] if i in whole and longest[i] else None,
            )
        for r in rows:  # cells are text, never markup: ids and names come from the shop
            t.add_row(*(Text(r[i]) for i in keep))
        return t

    # A table's narrowest width is set, column by column, by its longest word: measuring the
    # rows that hold them is the same as measuring all the rows, and quick.
    probe = [_row_with_longest_word(rows, i) for i in keep] if rows else []
    unbounded = console.options.update(width=1_000_000)
    while short and console.measure(table(short, probe), options=unbounded).minimum > console.width:
        short.pop()
    return table(short)


def _row_with_longest_word(rows: Sequence[Sequence[str]], column: int) -> Sequence[str]:
    return max(rows, key=lambda row: _longest_word(row[column]))


def _longest_word(text: str) -> int:
    return max((len(word) for word in text.split()), default=0)


def _is_number(text: str) -> bool:
    try:
        Decimal(text.replace(",", ""))
    except ArithmeticError:
        return False
    return True


def _is_zero(text: str) -> bool:
    return _is_number(text) and Decimal(text.replace(",", "")) == 0
