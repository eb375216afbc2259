"""Program expressions as the engine uses them: contexts, checked results, compiled SQL.

The checker itself (`loyalty_cli.expr`, built on sqlglot) is imported only when an
expression has not been checked yet in this process: a run whose program's checks were
remembered (`loyalty_cli.config.progcache`) compiles every expression from memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from loyalty_cli.columns import (
    MEMBER_COLUMNS,
    RFM_COLUMNS,
    ROW_SOURCES,
    ROWS_FOR_ON,
    SOURCE_COLUMNS,
    WORKFLOW_COLUMNS,
)
from loyalty_cli.diagnostics import Diagnostic

KINDS = ("value", "condition")
MEMBER_ALIAS = "member"

# What the rule's `on` is called in messages.
_WHERE = {
    "order": "an order rule",
    "order_item": "an order_item rule",
    "event": "an event rule",
    None: "a member-level expression (segment or workflow)",
}


# --------------------------------------------------------------------------- contexts


@dataclass
class ExprContext:
    """What an expression may reference: rows with their columns, and bare member-view names."""

    rows: dict[str, dict[str, str]]
    bare: dict[str, str]
    where: str = "this expression"

    @classmethod
    def for_rule(
        cls,
        on: str | None,
        extras: dict[str, dict[str, str]] | None = None,
        member: bool = True,
        rfm: bool = False,
        workflow: bool = False,
    ) -> ExprContext:
        """The context of a rule with this `on` (None: a member-level expression).

        `extras` are the columns declared in ``sources.<name>.extra``; they join their source's row.
        """
        if on is None:
            row_names: tuple[str, ...] = ("customer",)
        elif on in ROWS_FOR_ON:
            row_names = ROWS_FOR_ON[on]
        else:
            raise ValueError(f"unknown rule target {on!r}; expected one of {sorted(ROWS_FOR_ON)}")
        extras = extras or {}
        rows: dict[str, dict[str, str]] = {}
        for row in row_names:
            source = ROW_SOURCES[row]
            columns = {name: typ for name, (typ, _required) in SOURCE_COLUMNS[source].items()}
            columns.update(extras.get(source) or {})
            rows[row] = columns
        bare: dict[str, str] = {}
        if member:
            bare.update(MEMBER_COLUMNS)
        if rfm:
            bare.update(RFM_COLUMNS)
        if workflow:
            bare.update(WORKFLOW_COLUMNS)
        return cls(rows=rows, bare=bare, where=_WHERE[on])


@dataclass
class ExprProblem:
    """One problem in an expression, positioned inside the expression text (1-based)."""

    code: str
    message: str
    line: int
    col: int
    hint: str = ""

    def to_diagnostic(
        self,
        path: str = "",
        where: str = "",
        start_line: int | None = None,
        start_col: int | None = None,
        indent: int = 0,
    ) -> Diagnostic:
        """A Diagnostic placed in the file whose expression starts at (start_line, start_col).

        Lines after the first are taken to start at column ``indent + 1`` of their file line
        (the indentation of a YAML block scalar).
        """
        line: int | None = None
        col: int | None = None
        if start_line is not None:
            line = start_line + self.line - 1
            if self.line == 1:
                col = (start_col or 1) + self.col - 1
            else:
                col = indent + self.col
        return Diagnostic(
            code=self.code,
            message=self.message,
            path=path,
            line=line,
            col=col,
            hint=self.hint,
            where=where,
        )


@dataclass
class CheckedExpr:
    """The result of checking one expression: compiled SQL, or the problems found."""

    source: str
    sql: str | None
    problems: list[ExprProblem]
    columns: set[tuple[str | None, str]] = field(default_factory=set)
    kind: str = "value"

    @property
    def ok(self) -> bool:
        return not self.problems


# --------------------------------------------------------------------------- memo


_CHECKED: dict[tuple, CheckedExpr] = {}


def memo_key(text: str | int | float | bool, ctx: ExprContext, kind: str) -> tuple[str, ...]:
    """The key of an expression's check: its text, kind and every name its context allows."""
    return (
        repr(text),
        kind,
        ctx.where,
        repr(sorted((row, sorted(cols.items())) for row, cols in ctx.rows.items())),
        repr(sorted(ctx.bare.items())),
    )


def check_expression_cached(
    text: str | int | float | bool, ctx: ExprContext, *, kind: str = "value"
) -> CheckedExpr:
    """check_expression, remembered for the process: a program's expressions are checked
    when it is loaded and compiled again by the run (and programs repeat expressions)."""
    key = memo_key(text, ctx, kind)
    found = _CHECKED.get(key)
    if found is None:
        from loyalty_cli.expr import check_expression  # sqlglot: only for a new expression

        if len(_CHECKED) > 10_000:
            _CHECKED.clear()
        found = _CHECKED[key] = check_expression(text, ctx, kind=kind)
    return found


def compile_expression(text: str | int | float | bool, ctx: ExprContext, **kw: str) -> str:
    """The DuckDB SQL of an expression; ValueError listing the problems when it has any."""
    checked = check_expression_cached(text, ctx, **kw)
    if not checked.ok:
        listed = "; ".join(
            f"{p.line}:{p.col} {p.code} {p.message}" + (f" ({p.hint})" if p.hint else "")
            for p in checked.problems
        )
        raise ValueError(f"invalid expression {checked.source!r}: {listed}")
    assert checked.sql is not None
    return checked.sql


def condition_sql(sql: str) -> str:
    """Wrap a boolean SQL expression so that NULL (a missing value) counts as false."""
    return f"COALESCE(({sql}), FALSE)"


def value_error(exc: BaseException) -> bool:
    """A DuckDB error that a value raised in an expression (a cast that fails, a division
    by zero with `//` or `%`, a number too large), not a fault of the engine."""
    if isinstance(exc, duckdb.ConversionException | duckdb.OutOfRangeException):
        return True
    return isinstance(exc, duckdb.InvalidInputException) and "Division by zero" in str(exc)
