"""Program expressions: parse, check against a whitelist, compile to DuckDB SQL (SPEC 4, 9.17).

An expression in a program (`points`, `when`, a goal's `sum`, rfm group rules, workflow
`audience`, `if`, `exit_when`) is a SQL expression in DuckDB's dialect. It is never pasted
into a query as text: it is parsed with sqlglot, every node of the tree is checked against
a whitelist (anything not listed is refused, so the checker is safe by default), and the SQL
the engine runs is generated again from the checked tree with every identifier quoted.

Compiled names: ``order.total`` -> ``"order"."total"``, ``item.sku`` -> ``"item"."sku"``, a
member-view name such as ``tier`` -> ``"member"."tier"``. The engine runs the SQL with the
rows aliased that way (``FROM orders AS "order" JOIN member_view AS "member" ...``).

NULL rule (SPEC 9.17): a condition (kind ``"condition"``) compiles to
``COALESCE((<expr>), FALSE)``, so a condition that a missing value leaves undecided is false.
"""

from __future__ import annotations

import decimal
import difflib
import json
import logging
import math
import re
import threading
from collections.abc import Iterator

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.errors import ErrorLevel, ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from loyalty_cli.columns import (
    DUCKDB_TYPES,
    MEMBER_COLUMNS,
    RFM_COLUMNS,
    ROW_SOURCES,
    SOURCE_COLUMNS,
    WORKFLOW_COLUMNS,
)
from loyalty_cli.diagnostics import first_line
from loyalty_cli.exprbase import (  # noqa: F401 - re-exported: the public expression API
    KINDS,
    MEMBER_ALIAS,
    CheckedExpr,
    ExprContext,
    ExprProblem,
    check_expression_cached,
    compile_expression,
    condition_sql,
    value_error,
)


class _Dialect(DuckDB):
    """DuckDB, except that JSON paths stay the literal the user wrote.

    sqlglot rewrites ``j ->> 'a.b'`` to ``j ->> '$.a.b'``, but DuckDB reads a path without
    ``$`` as one key (``"a.b"``), so the rewrite would change the meaning.
    """

    def to_json_path(self, path):  # type: ignore[override]
        return path


_DIALECT = _Dialect()
# The base class of every sqlglot node (sqlglot 30 calls it Expr; older versions Expression).
_NODE: type[exp.Expr] = getattr(exp, "Expr", None) or exp.Expression


# --------------------------------------------------------------------------- whitelist


def _classes(*names: str) -> tuple[type, ...]:
    """sqlglot classes by name, skipping any a given sqlglot version does not have."""
    return tuple(getattr(exp, n) for n in names if hasattr(exp, n))


# Nodes that are always fine, whatever their parent (their children are checked too).
_PLAIN_NODES = _classes(
    "Literal", "Boolean", "Null", "Paren",
    "And", "Or", "Not",
    "EQ", "NEQ", "GT", "GTE", "LT", "LTE", "NullSafeEQ", "NullSafeNEQ",
    "Is", "Between", "Like", "ILike", "Escape",
    "Add", "Sub", "Mul", "Div", "IntDiv", "Mod", "Neg", "DPipe",
    "Array", "Bracket", "Interval", "In",
)  # fmt: skip

# Scalar functions, by the sqlglot class they parse to. Exact types only (no subclasses).
_FUNCTION_NODES = _classes(
    # text
    "Lower", "Upper", "Length", "Trim", "Substring", "Replace", "Concat", "StartsWith",
    "EndsWith", "Contains", "RegexpLike", "RegexpFullMatch", "SplitPart", "Left", "Right",
    "StrPosition",
    # numbers and logic
    "Abs", "Round", "Floor", "Ceil", "Sign", "Greatest", "Least", "Coalesce", "Nullif",
    "If", "Case",
    # lists
    "ArrayContains", "ArrayOverlaps", "ArrayContainsAll", "ArraySize",
    # dates and times
    "Extract", "TimestampTrunc", "DateTrunc", "DateDiff", "DayOfWeek", "DayOfWeekIso",
    "DayOfMonth", "DayOfYear", "Week", "WeekOfYear", "Quarter", "Year", "Month", "Day",
    "Hour", "Minute",
    # json
    "JSONExtract", "JSONExtractScalar",
    # types
    "Cast", "TryCast",
)  # fmt: skip

# Functions sqlglot does not model, allowed by name.
_ANONYMOUS_FUNCTIONS = frozenset(
    {"strlen", "list_has_all", "array_has_any", "date_part", "datepart", "isoyear"}
)

# The names a user may call, for hints and docs.
ALLOWED_FUNCTIONS: tuple[str, ...] = tuple(
    sorted(
        {
            *_ANONYMOUS_FUNCTIONS,
            *"lower upper length len trim ltrim rtrim substr substring replace concat".split(),
            *"starts_with ends_with contains regexp_matches regexp_full_match split_part".split(),
            *"left right strpos position instr abs round floor ceil ceiling sign".split(),
            *"greatest least coalesce ifnull nullif if list_contains list_has".split(),
            *"array_contains list_has_any array_has_all array_length extract".split(),
            *"date_trunc datediff date_diff dayofweek isodow dayofmonth dayofyear week".split(),
            *"weekofyear quarter year month day hour minute json_extract".split(),
            *"json_extract_string cast try_cast".split(),
        }
    )
)

_AGGREGATE_NODES = _classes("AggFunc")
_STATEMENT_NODES = _classes(
    "DDL", "DML", "Command", "Pragma", "Set", "Attach", "Detach", "Copy", "Install", "Use",
    "Describe", "Transaction", "Commit", "Rollback", "Create", "Drop", "Insert", "Update",
    "Delete", "Merge", "Alter", "Analyze", "Cache", "Uncache", "Refresh", "LoadData", "Show",
    "Kill", "Summarize", "Export",
)  # fmt: skip
_QUERY_NODES = _classes("Query", "Subquery", "Exists", "Values")
_TABLE_FUNCTION_NODES = _classes("ReadCSV", "ReadParquet", "Explode", "Unnest")
_PARAMETER_NODES = _classes("Placeholder", "Parameter", "SessionParameter")
# Constructs refused with a specific message (checked before functions: some are functions).
_REFUSED_NODES = _PARAMETER_NODES + _classes(
    "Alias", "Star", "Lambda", "Dot", "Collate", "ByteString", "RawString", "HexString",
    "National", "Struct", "Columns",
)  # fmt: skip
_CLOCK_NODES = _classes(
    "CurrentDate", "CurrentTime", "CurrentTimestamp", "CurrentDatetime", "CurrentTimestampLTZ",
    "Localtime", "Localtimestamp",
)  # fmt: skip
_RANDOM_NODES = _classes("Rand", "Randn", "Uuid")
_ENVIRONMENT_NODES = _classes("CurrentSchema", "CurrentUser", "Version")

_CLOCK_NAMES = frozenset(
    {
        "now", "today", "current_date", "current_time", "current_timestamp", "localtime",
        "localtimestamp", "current_localtime", "current_localtimestamp", "get_current_time",
        "get_current_timestamp", "transaction_timestamp", "statement_timestamp",
    }
)  # fmt: skip
_RANDOM_NAMES = frozenset(
    {"random", "rand", "setseed", "uuid", "gen_random_uuid", "nextval", "currval"}
)
_ENVIRONMENT_NAMES = frozenset(
    {
        "getenv", "current_setting", "version", "current_user", "current_database",
        "current_schema", "current_schemas", "current_catalog", "user", "session_user",
    }
)  # fmt: skip
_TABLE_FUNCTION_NAMES = frozenset(
    {
        "glob", "sniff_csv", "parquet_scan", "query", "query_table", "unnest", "range",
        "generate_series", "st_read", "json_execute_serialized_sql", "load_aws_credentials",
    }
)  # fmt: skip
_TABLE_FUNCTION_PREFIXES = (
    "read_", "parquet_", "duckdb_", "pragma_", "iceberg_", "delta_", "sqlite_", "postgres_",
    "mysql_", "json_each", "json_tree",
)  # fmt: skip
_TABLE_FUNCTION_SUFFIXES = ("_scan", "_metadata")

# Units of INTERVAL, date_trunc, date_diff, date_part, extract (DuckDB's names and aliases).
DATE_PARTS = frozenset(
    """
    year years y yr yrs quarter quarters month months mon mons week weeks w day days d
    hour hours h hr hrs minute minutes m min mins second seconds s sec secs
    millisecond milliseconds ms msec msecs microsecond microseconds us usec usecs
    decade decades dec century centuries c cent millennium millennia mil
    dow dayofweek weekday isodow doy dayofyear dayofmonth isoyear yearweek weekofyear epoch
    """.split()
)
# Where a unit (a sqlglot Var) may stand: (parent class, argument name).
_UNIT_SLOTS = {
    (cls, key)
    for cls, key in (
        (getattr(exp, "Interval", None), "unit"),
        (getattr(exp, "TimestampTrunc", None), "unit"),
        (getattr(exp, "DateTrunc", None), "unit"),
        (getattr(exp, "DateDiff", None), "unit"),
        (getattr(exp, "Extract", None), "this"),
    )
    if cls is not None
}

_CAST_TYPES = frozenset(
    {
        "TEXT", "VARCHAR", "CHAR", "NCHAR", "NVARCHAR", "BPCHAR", "NAME",
        "TINYINT", "SMALLINT", "INT", "BIGINT", "HUGEINT", "INT128", "UINT128", "UTINYINT",
        "USMALLINT", "UINT",
        "UBIGINT", "UHUGEINT", "DECIMAL", "DOUBLE", "FLOAT",
        "BOOLEAN", "DATE", "TIMESTAMP", "TIMESTAMPNTZ", "DATETIME", "TIMESTAMPTZ", "TIME",
        "INTERVAL", "JSON",
    }
)  # fmt: skip

_PREDICATE_NODES = _classes(
    "And", "Or", "Not", "EQ", "NEQ", "GT", "GTE", "LT", "LTE", "NullSafeEQ", "NullSafeNEQ",
    "Is", "In", "Between", "Like", "ILike", "Escape", "Boolean", "StartsWith", "EndsWith",
    "Contains", "RegexpLike", "RegexpFullMatch", "ArrayContains", "ArrayOverlaps",
    "ArrayContainsAll",
)  # fmt: skip
_ARITHMETIC_NODES = _classes("Add", "Sub", "Mul", "Div", "IntDiv", "Mod", "Neg")
_TEXT_NODES = _classes(
    "DPipe", "Concat", "Lower", "Upper", "Trim", "Replace", "Substring", "SplitPart",
    "JSONExtractScalar",
)  # fmt: skip

_REPRODUCIBLE_HINT = (
    "a run depends only on its --as-of day, so running a day again gives the same result; "
    "use the member view (e.g. days_since_last_order) or compare the row's own dates"
)


# --------------------------------------------------------------------------- entry points


def check_expression(
    text: str | int | float | bool, ctx: ExprContext, *, kind: str = "value"
) -> CheckedExpr:
    """Parse and check an expression; compile it when it has no problems.

    `kind` is ``"value"`` (points, a goal's sum) or ``"condition"`` (when, audience, if,
    exit_when, group rules). A condition compiles to ``COALESCE((<expr>), FALSE)``.
    Never raises for bad input: every problem is returned in ``problems``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown expression kind {kind!r}; expected one of {KINDS}")
    source, problem = _source_text(text)
    if problem is not None:
        return CheckedExpr(source, None, [problem], set(), kind)
    split = _split_operator(source)
    if split is not None:
        return CheckedExpr(source, None, [split], set(), kind)
    try:
        checked = _Checker(source, ctx, kind).run()
        if checked.ok:
            deep = _too_deep(source)
            if deep is not None:
                return CheckedExpr(source, None, [deep], checked.columns, kind)
        return checked
    except Exception as error:  # never a traceback for a program file
        problem = ExprProblem(
            "E401",
            f"the expression could not be checked (internal error: {type(error).__name__})",
            1,
            1,
            "simplify the expression and report this as a bug",
        )
        return CheckedExpr(source, None, [problem], set(), kind)


_COMPARISONS = {"GT", "LT", "EQ", "NEQ", "GTE", "LTE"}

# Function calls nested deeper than this are refused: DuckDB's planner slows down
# exponentially on some deep nestings (e.g. split_part in split_part ...), which would hang
# a nightly run.
MAX_FUNCTION_NESTING = 8


def _too_deep(source: str) -> ExprProblem | None:
    try:
        tree = sqlglot.parse_one(source, read="duckdb")
    except Exception:  # noqa: BLE001 - already checked by the parser
        return None

    def depth(node: exp.Expr) -> int:
        below = max((depth(child) for child in node.iter_expressions()), default=0)
        # sqlglot counts `and`, `or` and `xor` as functions; a long condition is no nesting.
        call = isinstance(node, exp.Func) and not isinstance(node, exp.Connector)
        return below + (1 if call else 0)

    if depth(tree) > MAX_FUNCTION_NESTING:
        return ExprProblem(
            "E408",
            f"function calls nested more than {MAX_FUNCTION_NESTING} deep",
            1,
            1,
            "split the logic: compute simpler expressions, or use a declared extra column",
        )
    return None


def _split_operator(source: str) -> ExprProblem | None:
    """Two comparison operators in a row (`a > > 1`): E401 at the second one.

    The parser would read `> >` as the shift operator `>>`, which is not what was meant.
    """
    try:
        tokens = sqlglot.tokenize(source, read="duckdb")
    except Exception:  # noqa: BLE001 - the parser reports syntax errors itself
        return None
    for first, second in zip(tokens, tokens[1:], strict=False):
        if first.token_type.name in _COMPARISONS and second.token_type.name in _COMPARISONS:
            before = source[: second.start]
            line = before.count("\n") + 1
            col = second.start - (before.rfind("\n") + 1) + 1
            return ExprProblem(
                "E401",
                f"two comparison operators in a row: '{first.text}' then '{second.text}'",
                line,
                col,
                "remove one of them, or put a value between them",
            )
    return None


def _source_text(text: object) -> tuple[str, ExprProblem | None]:
    """The expression as text; YAML numbers and booleans become their SQL literal."""
    if isinstance(text, bool):
        return ("true" if text else "false"), None
    if isinstance(text, int):
        return str(text), None
    if isinstance(text, float):
        if not math.isfinite(text):
            return str(text), ExprProblem(
                "E408", f"{text} is not a number an expression can use", 1, 1, "write a number"
            )
        return repr(text), None
    if isinstance(text, str):
        return text, None
    shown = "" if text is None else str(text)
    return shown, ExprProblem(
        "E401",
        f"expected an expression, got {type(text).__name__}",
        1,
        1,
        "write a SQL expression such as `order.total >= 100`",
    )


# --------------------------------------------------------------------------- the checker


class _Checker:
    """Checks one expression text against a context; `run` returns the CheckedExpr."""

    def __init__(self, source: str, ctx: ExprContext, kind: str):
        self.source = source
        self.ctx = ctx
        self.kind = kind
        self.problems: list[ExprProblem] = []
        self.columns: set[tuple[str | None, str]] = set()
        self.tokens: list[Token] = []
        self.claimed: set[int] = set()
        # lower-case name -> declared name, per row and for bare names
        self.row_names = {row.lower(): row for row in ctx.rows}
        self.row_columns = {row: {c.lower(): c for c in cols} for row, cols in ctx.rows.items()}
        self.bare_names = {c.lower(): c for c in ctx.bare}

    # ---- positions

    def _line_col(self, offset: int) -> tuple[int, int]:
        offset = max(0, min(offset, len(self.source)))
        line = self.source.count("\n", 0, offset) + 1
        col = offset - (self.source.rfind("\n", 0, offset) + 1) + 1
        return line, col

    def add(self, code: str, message: str, offset: int | None, hint: str = "") -> None:
        line, col = self._line_col(offset) if offset is not None else (1, 1)
        self.problems.append(ExprProblem(code, message, line, col, hint))

    def _token_index(self, offset: int) -> int | None:
        for i, token in enumerate(self.tokens):
            if token.start == offset:
                return i
        return None

    @staticmethod
    def _anchor(node: exp.Expr) -> int | None:
        """The earliest source offset known for any node of this subtree."""
        starts = [n.meta["start"] for n in node.walk() if "start" in n.meta]
        return min(starts) if starts else None

    def _find_token(self, names: set[str], before: int | None = None) -> int | None:
        """Offset of a token with one of these texts: the nearest before `before`, else the
        first one not yet claimed by another problem."""
        if before is not None:
            index = self._token_index(before)
            if index is not None:
                for i in range(index - 1, -1, -1):
                    if self.tokens[i].text.lower() in names:
                        self.claimed.add(i)
                        return self.tokens[i].start
        for i, token in enumerate(self.tokens):
            if i not in self.claimed and token.text.lower() in names:
                self.claimed.add(i)
                return token.start
        return None

    def _func_offset(self, node: exp.Expr) -> int | None:
        """Where a function call starts: its name token."""
        if "start" in node.meta:
            return node.meta["start"]
        anchor = self._anchor(node)
        if anchor is not None:
            index = self._token_index(anchor)
            if index is not None:
                i = index - 1
                while i >= 0 and self.tokens[i].token_type in (
                    TokenType.L_PAREN,
                    TokenType.DISTINCT,
                ):
                    i -= 1
                if i >= 0 and i < index - 1 and _is_name_token(self.tokens[i]):
                    self.claimed.add(i)
                    return self.tokens[i].start
        found = self._find_token(_node_names(node), anchor)
        return found if found is not None else anchor

    def _offset(self, node: exp.Expr) -> int | None:
        if isinstance(node, exp.Column):
            return _column_offset(node)
        if isinstance(node, exp.Func):
            return self._func_offset(node)
        if isinstance(node, _QUERY_NODES):
            names = {"exists"} if isinstance(node, exp.Exists) else {"select", "with", "values"}
            found = self._find_token(names, self._anchor(node))
            return found if found is not None else self._anchor(node)
        if "start" in node.meta:
            return node.meta["start"]
        anchor = self._anchor(node)
        if anchor is None:
            anchor = self._find_token(_node_names(node))
        return anchor

    def _source_span(self, node: exp.Expr, start: int | None) -> str:
        """The source text of a part that starts at `start`: through its last token that
        sqlglot placed, and on through the parentheses still open there (a call's or a
        cast's closing one). The part as SQL when its place is not known."""
        ends = [n.meta["end"] for n in node.walk() if "end" in n.meta]
        index = self._token_index(start) if start is not None else None
        if index is None or not ends:
            return _snippet(node)
        depth, end = 0, max(ends)
        for token in self.tokens[index:]:
            if token.start > end and depth <= 0:
                break
            if token.token_type == TokenType.L_PAREN:
                depth += 1
            elif token.token_type == TokenType.R_PAREN:
                depth -= 1
            end = max(end, token.end)
        text = self.source[start : end + 1]
        return text if len(text) <= 40 else text[:37] + "..."

    def _text_at(self, offset: int | None, fallback: str) -> str:
        if offset is not None:
            index = self._token_index(offset)
            if index is not None and _is_name_token(self.tokens[index]):
                return self.tokens[index].text
        return fallback

    # ---- stages

    def run(self) -> CheckedExpr:
        tree = self._parse()
        if tree is not None and not self.problems:
            self._check_top(tree)
        if self.problems or tree is None:
            return CheckedExpr(self.source, None, self.problems, self.columns, self.kind)
        self._check_literals(tree)
        if self.problems:
            return CheckedExpr(self.source, None, self.problems, self.columns, self.kind)
        sql = self._compile(tree)
        return CheckedExpr(self.source, sql, self.problems, self.columns, self.kind)

    def _check_literals(self, tree: exp.Expr) -> None:
        """A text literal compared with a date, time, number or yes/no column, or set beside
        one where DuckDB needs one type (`coalesce`, `greatest`, the results of `case`), must
        convert to that column's type (`order.total > 'abc'`, `coalesce(order.total, 'x')`,
        `customer.birth_date = '2026-02-30'`): DuckDB converts it on every row and would stop
        the run there."""
        reported: set[int] = set()
        for node in tree.find_all(*_LITERAL_SIDES, *_UNIFYING):
            pairs = [
                (a, b, how)
                for how, group in _unified(node)
                for a in group
                for b in group
                if a is not b
            ]
            for a, b, how in pairs:
                if not (isinstance(a, exp.Column) and isinstance(b, exp.Literal)):
                    continue
                typ = self._column_type(a)
                if not b.is_string or typ not in _CONVERTED or id(b) in reported:
                    continue
                if _converts(b.this, DUCKDB_TYPES[typ]):
                    continue
                reported.add(id(b))
                self.add(
                    "E409",
                    f"{b.sql(dialect='duckdb')} cannot be {how} `{_column_text(a)}` "
                    f"({typ}): it is not {_CONVERTED[typ]}",
                    self._offset(b),
                    f"write {_CONVERTED[typ]}, e.g. {_EXAMPLE[typ]}",
                )

    def _parse(self) -> exp.Expr | None:
        if not self.source.strip():
            self.add("E401", "the expression is empty", 0, "write a SQL expression or `true`")
            return None
        try:
            self.tokens = _DIALECT.tokenize(self.source)
        except TokenError:
            offset, what = _unterminated(self.source)
            self.add("E401", f"{what} is never closed", offset, "close it or remove it")
            return None
        except Exception:
            self.add("E401", "the expression cannot be read", 0, "check quotes and brackets")
            return None
        if not self.tokens:
            self.add("E401", "the expression is empty", 0, "write a SQL expression or `true`")
            return None
        if not self._check_tokens():
            return None
        try:
            with _quiet_sqlglot():
                trees = _DIALECT.parse(self.source)
        except ParseError as error:
            self._parse_error(error)
            return None
        except RecursionError:
            self.add("E401", "the expression is nested too deeply", 0, "simplify it")
            return None
        except Exception as error:
            self.add("E401", f"the expression cannot be parsed ({error})", 0, "check its syntax")
            return None
        trees = [t for t in trees if t is not None]
        if not trees:
            self.add("E401", "the expression is empty", 0, "write a SQL expression or `true`")
            return None
        if len(trees) > 1:  # defensive: separators are refused in _check_tokens
            self.add("E405", "only one expression is allowed", 0, "remove the extra statements")
            return None
        return trees[0]

    def _check_tokens(self) -> bool:
        """Refuse statement separators and unbalanced parentheses before parsing."""
        for token in self.tokens:
            if token.token_type == TokenType.SEMICOLON:
                self.add(
                    "E405",
                    "`;` separates SQL statements; an expression is a single value",
                    token.start,
                    "remove the `;` and everything after it",
                )
                return False
        stack: list[Token] = []
        for token in self.tokens:
            if token.token_type == TokenType.L_PAREN:
                stack.append(token)
            elif token.token_type == TokenType.R_PAREN:
                if not stack:
                    self.add("E401", "`)` has no matching `(`", token.start, "remove it")
                    return False
                stack.pop()
        if stack:
            self.add("E401", "`(` is never closed", stack[-1].start, "add the missing `)`")
            return False
        return True

    def _parse_error(self, error: ParseError) -> None:
        info = error.errors[0] if error.errors else {}
        line, col = info.get("line"), info.get("col")
        highlight = (info.get("highlight") or "").strip()
        description = info.get("description") or str(error)
        offset = None
        if line is not None and col is not None:
            for token in self.tokens:  # sqlglot reports the end column of the token
                if token.line == line and token.col == col:
                    offset = token.start
                    break
        required = _REQUIRED.search(description)
        cls_name = required.group(2) if required else ""
        operator = next((t for t in self.tokens if t.token_type.name == cls_name.upper()), None)
        if required and cls_name == "Between":
            offset = operator.start if operator is not None else offset
            message = "`between` needs both bounds"
            hint = "write e.g. `order.total between 100 and 200`"
        elif required and cls_name in ("Not", "Neg") and operator is not None:
            offset = operator.start
            message = f"`{operator.text}` is missing what comes after it"
            hint = "complete the expression or remove it"
        elif required and required.group(1) == "this" and operator is not None:
            offset = operator.start
            message = f"`{operator.text}` has nothing before it"
            hint = "put a value or condition on its left, or remove it"
        elif required and required.group(1) == "this" and cls_name != "Column":
            index = self._token_index(offset) if offset is not None else None
            while index is not None and index > 0:
                if self.tokens[index].token_type == TokenType.L_PAREN:
                    if _is_name_token(self.tokens[index - 1]):
                        offset = self.tokens[index - 1].start
                        cls_name = self.tokens[index - 1].text
                    break
                index -= 1
            message = f"`{cls_name.lower()}(...)` is missing an argument"
            hint = "give the function its arguments"
        elif required and highlight:
            message = f"`{highlight}` is missing what comes after it"
            hint = "complete the expression or remove the operator"
        elif description.startswith("Expect"):
            message = f"{description[0].lower()}{description[1:]}, near `{highlight}`"
            hint = "check the syntax around it"
        elif highlight:
            message = f"unexpected `{highlight}`"
            hint = "join conditions with `and` / `or`, values with operators"
        else:
            message = f"syntax error: {description}"
            hint = "check the syntax"
        self.add("E401", message, offset if offset is not None else 0, hint)

    # ---- tree checks

    def _check_top(self, tree: exp.Expr) -> None:
        if isinstance(tree, _STATEMENT_NODES):
            self.add(
                "E405",
                f"`{self._first_word()}` is a SQL statement, not an expression",
                self.tokens[0].start,
                "an expression computes a value from the row, e.g. `order.total >= 100`",
            )
            return
        try:
            self._visit(tree, None, None)
        except RecursionError:
            self.problems.clear()
            self.add("E401", "the expression is nested too deeply", 0, "simplify it")
            return
        if not self.problems:
            self._check_kind(tree)

    def _first_word(self) -> str:
        return self.tokens[0].text.upper() if self.tokens else ""

    def _visit(self, node: exp.Expr, parent: exp.Expr | None, key: str | None) -> None:
        kind = type(node)
        if isinstance(node, exp.Column):
            self._check_column(node)
            return
        if isinstance(node, exp.Var):
            self._check_unit(node, parent, key)
            return
        if isinstance(node, exp.DataType):
            self._check_type(node, parent, key)
            return
        if isinstance(node, _QUERY_NODES):
            self.add(
                "E404",
                "subqueries are not allowed",
                self._offset(node),
                "an expression sees one row and the member view; "
                "counts and sums over history are in the member view (orders_count, "
                "lifetime_spend) or a challenge goal",
            )
            self._scan_file_access(node)
            return
        if isinstance(node, _STATEMENT_NODES):
            self.add(
                "E405",
                "SQL statements are not allowed in an expression",
                self._offset(node),
                "an expression computes a value, e.g. `order.total >= 100`",
            )
            return
        if isinstance(node, _REFUSED_NODES):
            if not (kind is exp.Star and isinstance(parent, exp.Count)):  # count(*): one problem
                self._refuse_construct(node)
            return
        if kind in _PLAIN_NODES or kind in _FUNCTION_NODES:
            if not self._check_special(node):
                return
        elif isinstance(node, exp.Anonymous) and node.name.lower() in _ANONYMOUS_FUNCTIONS:
            if not self._check_date_part_arg(node):
                return
        elif isinstance(node, exp.Func) or isinstance(node, exp.Window):
            if not self._refuse_function(node):
                return
        else:
            self._refuse_construct(node)
            return
        for child_key, child in _children(node):
            self._visit(child, node, child_key)

    def _check_special(self, node: exp.Expr) -> bool:
        """Extra rules for some allowed nodes; False stops the walk below the node."""
        if isinstance(node, exp.Literal):
            return True
        if isinstance(node, exp.In):
            if node.args.get("field") is not None:
                self.add(
                    "E401",
                    "`in` needs a list in parentheses",
                    self._offset(node.args["field"]),
                    "write e.g. `tier in ('gold', 'silver')`",
                )
                return False
            if not node.expressions and not node.args.get("query") and not node.args.get("unnest"):
                self.add(
                    "E401",
                    "`in ()` needs at least one value",
                    self._offset(node),
                    "write e.g. `tier in ('gold', 'silver')`",
                )
                return False
        if isinstance(node, (exp.JSONExtract, exp.JSONExtractScalar)):
            path = node.expression
            if not (isinstance(path, exp.Literal)):
                self.add(
                    "E408",
                    "a JSON path must be a literal, e.g. event.properties->>'size'",
                    self._offset(path) if path is not None else self._offset(node),
                    "write the key or path as a 'string' or a number",
                )
                return False
        if isinstance(node, exp.Bracket) and any(
            isinstance(e, getattr(exp, "Slice", ())) for e in node.expressions
        ):
            self.add("E408", "list slices are not allowed", self._offset(node), "use item.tags[1]")
            return False
        return True

    def _check_date_part_arg(self, node: exp.Anonymous) -> bool:
        if node.name.lower() not in ("date_part", "datepart"):
            return True
        part = node.expressions[0] if node.expressions else None
        if not (isinstance(part, exp.Literal) and part.is_string):
            self.add(
                "E408",
                "the date part of date_part must be a 'string' such as 'year'",
                self._offset(part) if part is not None else self._func_offset(node),
                f"one of: {', '.join(sorted(p for p in DATE_PARTS if len(p) > 3)[:12])}, ...",
            )
            return False
        if part.name.lower() not in DATE_PARTS:
            self._unknown_unit(part.name, self._offset(part))
            return False
        return True

    def _check_column(self, node: exp.Column) -> None:
        parts = node.parts
        offset = _column_offset(node)
        if len(parts) > 2:
            dotted = ".".join(p.name for p in parts)
            hint = "names are `row.column` or a member-view name"
            if len(parts) == 3 and parts[0].name.lower() in self.row_names:
                hint += (
                    f"; for a JSON field write {parts[0].name}.{parts[1].name}->>'{parts[2].name}'"
                )
            self.add("E402", f"`{dotted}` is not a column", offset, hint)
            return
        if len(parts) == 2:
            self._check_qualified(parts[0], parts[1])
        else:
            self._check_bare(parts[0])

    def _check_qualified(self, row_ident: exp.Expr, col_ident: exp.Expr) -> None:
        row_text, col_text = row_ident.name, col_ident.name
        row = self.row_names.get(row_text.lower())
        rows_here = ", ".join(self.ctx.rows) or "none"
        if row is None:
            offset = row_ident.meta.get("start")
            if row_text.lower() == MEMBER_ALIAS:
                hint = f"member-view names have no prefix: write `{col_text}`"
            elif row_text.lower() in ROW_SOURCES:
                hint = f"rows here: {rows_here}"
            else:
                guess = difflib.get_close_matches(
                    row_text.lower(), list(self.row_names) + list(ROW_SOURCES), n=1
                )
                hint = (f"did you mean {guess[0]}? " if guess else "") + f"rows here: {rows_here}"
            if row_text.lower() in ROW_SOURCES or row_text.lower() == MEMBER_ALIAS:
                message = f"row `{row_text}` is not available in {self.ctx.where}"
            else:
                message = f"unknown row `{row_text}` in `{row_text}.{col_text}`"
            self.add("E407", message, offset, hint)
            return
        column = self.row_columns[row].get(col_text.lower())
        if column is None:
            offset = col_ident.meta.get("start")
            self.add(
                "E402",
                f"unknown column `{row_text}.{col_text}`",
                offset,
                self._column_hint(row, col_text),
            )
            return
        self.columns.add((row, column))
        col_ident.set("this", column)
        col_ident.set("quoted", True)
        row_ident.set("this", row)
        row_ident.set("quoted", True)

    def _column_hint(self, row: str, col_text: str) -> str:
        guess = difflib.get_close_matches(col_text.lower(), list(self.row_columns[row]), n=1)
        if guess:
            return f"did you mean {row}.{self.row_columns[row][guess[0]]}?"
        for other, cols in self.row_columns.items():
            guess = difflib.get_close_matches(col_text.lower(), list(cols), n=1)
            if guess:
                return f"did you mean {other}.{cols[guess[0]]}?"
        source = ROW_SOURCES.get(row, row)
        columns = ", ".join(self.ctx.rows[row])
        return (
            f"columns of {row}: {columns}; declare other export columns in "
            f"sources.{source}.extra with a type"
        )

    def _check_bare(self, ident: exp.Expr) -> None:
        name = ident.name
        offset = ident.meta.get("start")
        declared = self.bare_names.get(name.lower())
        if declared is not None:
            self.columns.add((None, declared))
            return
        lower = name.lower()
        if lower in ROW_SOURCES:
            example = next(iter(self.ctx.rows.get(lower, SOURCE_COLUMNS[ROW_SOURCES[lower]])))
            self.add(
                "E402",
                f"`{name}` is a row, not a value",
                offset,
                f"name one of its columns, e.g. {lower}.{example}",
            )
            return
        exact = [f"{row}.{cols[lower]}" for row, cols in self.row_columns.items() if lower in cols]
        if exact:
            self.add(
                "E402",
                f"unknown name `{name}`",
                offset,
                f"did you mean {' or '.join(exact)}? row columns are written with their row",
            )
            return
        if lower in RFM_COLUMNS:
            hint = f"`{lower}` exists only in a program that defines an rfm segment"
        elif lower in WORKFLOW_COLUMNS:
            hint = f"`{lower}` exists only in workflow expressions"
        elif lower in MEMBER_COLUMNS:
            hint = f"member-view names are not available in {self.ctx.where}"
        else:
            hint = self._bare_hint(lower)
        self.add("E402", f"unknown name `{name}`", offset, hint)

    def _bare_hint(self, lower: str) -> str:
        candidates: dict[str, list[str]] = {}
        for key, declared in self.bare_names.items():
            candidates.setdefault(key, []).append(declared)
        for row, cols in self.row_columns.items():
            for key, declared in cols.items():
                candidates.setdefault(key, []).append(f"{row}.{declared}")
        guesses = difflib.get_close_matches(lower, list(candidates), n=2)
        if guesses:
            shown = [name for guess in guesses for name in candidates[guess]]
            return f"did you mean {' or '.join(shown)}?"
        parts = []
        if self.ctx.bare:
            parts.append(f"member view: {', '.join(self.ctx.bare)}")
        parts.append(f"rows: {', '.join(self.ctx.rows) or 'none'} (write row.column)")
        return "; ".join(parts)

    def _check_unit(self, node: exp.Var, parent: exp.Expr | None, key: str | None) -> None:
        if (type(parent), key) not in _UNIT_SLOTS:
            self._refuse_construct(node)
            return
        if node.name.lower() not in DATE_PARTS:
            offset = self._offset(node)
            if offset is None:
                index = self._token_index(self._find_token({node.name.lower()}) or -1)
                if index is not None:
                    offset = self.tokens[index].start
                    self._unknown_unit(self.tokens[index].text, offset)
                    return
                offset = self._offset(parent) if parent is not None else None
            self._unknown_unit(node.name, offset)

    def _unknown_unit(self, name: str, offset: int | None) -> None:
        self.add(
            "E408",
            f"unknown date part `{name}`",
            offset,
            "use year, quarter, month, week, day, hour, minute, second, dow, isodow, doy",
        )

    def _check_type(self, node: exp.DataType, parent: exp.Expr | None, key: str | None) -> None:
        offset = self._offset(node) if "start" in node.meta else self._offset(parent or node)
        if not isinstance(parent, (exp.Cast, exp.TryCast)) or key != "to":
            self._refuse_construct(node)
            return
        type_name = node.this.name if hasattr(node.this, "name") else str(node.this)
        params_ok = all(
            isinstance(p, exp.DataTypeParam)
            and isinstance(p.this, exp.Literal)
            and p.this.is_number
            for p in node.expressions
        )
        if type_name not in _CAST_TYPES or not params_ok:
            self.add(
                "E408",
                f"cast to `{node.sql(dialect='duckdb')}` is not allowed",
                offset,
                "cast to a plain type: varchar, integer, bigint, decimal(18,2), double, "
                "boolean, date, timestamp",
            )

    def _refuse_function(self, node: exp.Expr) -> bool:
        """Report a function outside the whitelist; True to go on checking its arguments."""
        offset = self._offset(node)
        if isinstance(node, exp.Window):
            name = self._text_at(self._offset(node.this), "over") if node.this else "over"
            self.add(
                "E403",
                f"window function `{name} ... over (...)` is not allowed",
                offset,
                "an expression sees one row at a time; history is in the member view",
            )
            return False
        typed = self._text_at(offset, _canonical_name(node))
        names = {typed.lower(), _canonical_name(node)}
        if isinstance(node, _TABLE_FUNCTION_NODES) or any(_is_table_function(n) for n in names):
            self.add(
                "E406",
                f"`{typed}` reads tables or files, which expressions may not do",
                offset,
                "a program reads only its declared sources; add the data as a source column",
            )
            return False
        if names & {"getvariable"}:
            self.add(
                "E408",
                "variable references are not allowed",
                offset,
                "write the value into the expression",
            )
            return False
        if isinstance(node, _CLOCK_NODES) or names & _CLOCK_NAMES:
            self.add(
                "E403", f"`{typed}` is not allowed: it reads the clock", offset, _REPRODUCIBLE_HINT
            )
            return False
        if isinstance(node, _RANDOM_NODES) or names & _RANDOM_NAMES:
            self.add(
                "E403",
                f"`{typed}` is not allowed: its result changes from run to run",
                offset,
                "results must be reproducible; use a rule that depends on the data",
            )
            return False
        if isinstance(node, _ENVIRONMENT_NODES) or names & _ENVIRONMENT_NAMES:
            self.add(
                "E403",
                f"`{typed}` is not allowed: it reads the environment",
                offset,
                "expressions see only the row and the member view",
            )
            return False
        if isinstance(node, _AGGREGATE_NODES):
            if isinstance(node, (exp.Max, exp.Min)) and node.args.get("count") is not None:
                better = "greatest" if isinstance(node, exp.Max) else "least"
                hint = f"for the larger or smaller of values use {better}(a, b)"
            elif isinstance(node, (exp.Max, exp.Min)):
                better = "greatest" if isinstance(node, exp.Max) else "least"
                hint = f"{typed} is an aggregate; for the larger or smaller of values use {better}"
            else:
                hint = (
                    "an expression sees one row; totals over history are in the member view "
                    "(orders_count, lifetime_spend) or a challenge goal"
                )
            self.add("E403", f"aggregate function `{typed}` is not allowed", offset, hint)
            return True
        guess = difflib.get_close_matches(typed.lower(), ALLOWED_FUNCTIONS, n=1)
        hint = f"did you mean {guess[0]}? " if guess else ""
        hint += "allowed functions are listed in docs/expressions.md"
        if isinstance(node, exp.Anonymous):
            message = f"unknown or forbidden function `{typed}`"
        else:
            message = f"function `{typed}` is not allowed"
        self.add("E403", message, offset, hint)
        return True

    def _refuse_construct(self, node: exp.Expr) -> None:
        offset = self._offset(node)
        if isinstance(node, exp.Alias):
            alias = node.args.get("alias")
            where = alias.meta.get("start") if isinstance(alias, exp.Identifier) else offset
            self.add(
                "E401",
                f"unexpected `{node.alias}` after a complete expression",
                where,
                "join conditions with `and` / `or`; aliases (`as`) are not used",
            )
            return
        if isinstance(node, _PARAMETER_NODES):
            self.add(
                "E408",
                f"parameter `{node.sql(dialect='duckdb')}` is not allowed",
                offset,
                "write the value into the expression",
            )
            return
        if isinstance(node, exp.Star):
            self.add("E408", "`*` is not allowed", offset, "name the column, e.g. order.total")
            return
        if isinstance(node, exp.Lambda):
            self.add("E408", "lambda functions are not allowed", offset, "")
            return
        if isinstance(node, exp.Dot):
            self.add(
                "E408",
                "method-call syntax is not allowed",
                offset,
                "call the function with the value as its first argument, e.g. lower(x)",
            )
            return
        if isinstance(node, exp.Collate):
            self.add(
                "E408",
                "COLLATE is not allowed",
                offset,
                "string comparison is case-sensitive; use lower() on both sides",
            )
            return
        if isinstance(node, (exp.ByteString, exp.RawString, exp.HexString, exp.National)):
            self.add("E408", "only plain 'strings' are allowed", offset, "write the text as 'text'")
            return
        snippet = _snippet(node)
        self.add("E408", f"`{snippet}` is not allowed in an expression", offset, _CONSTRUCT_HINT)

    def _scan_file_access(self, query: exp.Expr) -> None:
        """Inside a refused subquery, also name any file or table function it would read."""
        for node in query.walk():
            if isinstance(node, exp.Table):
                target = node.this
                if isinstance(target, exp.Identifier) and _looks_like_file(target.name):
                    self.add(
                        "E406",
                        f"file '{target.name}' used as a table",
                        target.meta.get("start"),
                        "a program reads only its declared sources",
                    )
            elif isinstance(node, exp.Func) and node is not query:
                name = node.name if isinstance(node, exp.Anonymous) else _canonical_name(node)
                if isinstance(node, _TABLE_FUNCTION_NODES) or _is_table_function(name.lower()):
                    offset = self._offset(node)
                    typed = self._text_at(offset, name)
                    self.add(
                        "E406",
                        f"`{typed}` reads tables or files, which expressions may not do",
                        offset,
                        "a program reads only its declared sources",
                    )

    def _check_kind(self, tree: exp.Expr) -> None:
        """Refuse the obvious mix-ups: a number as a condition, a yes/no as points."""
        top = tree
        while isinstance(top, exp.Paren):
            top = top.this
        offset = self._offset(top)
        if self.kind == "condition":
            what = None
            if isinstance(top, exp.Literal):
                what = "the number" if top.is_number else "the text"
                what = f"{what} {top.sql(dialect='duckdb')}"
            elif isinstance(top, _ARITHMETIC_NODES) or isinstance(top, _TEXT_NODES):
                what = "a calculation"
            elif isinstance(top, exp.Column):
                typ = self._column_type(top)
                if typ is not None and typ not in ("boolean", "json"):
                    what = f"`{_column_text(top)}` ({typ})"
            if what is not None:
                self.add(
                    "E408",
                    f"a condition must be true or false, not {what}",
                    offset,
                    "compare it, e.g. `order.total >= 100`, or write `true`",
                )
        else:
            what = None
            if isinstance(top, _PREDICATE_NODES):
                what = "true or false"
            elif isinstance(top, exp.Literal) and top.is_string:
                what = f"the text {top.sql(dialect='duckdb')}"
            elif isinstance(top, exp.Column):
                typ = self._column_type(top)
                if typ in ("varchar", "boolean", "date", "timestamp", "list"):
                    what = f"`{_column_text(top)}` ({typ})"
            if what is not None:
                self.add(
                    "E408",
                    f"a value must be a number, not {what}",
                    offset,
                    "for points on a condition use `if(<condition>, 100, 0)` or a `when`",
                )

    def _column_type(self, node: exp.Column) -> str | None:
        parts = node.parts
        if len(parts) == 1:
            return self.ctx.bare.get(self.bare_names.get(parts[0].name.lower(), ""))
        if len(parts) == 2:
            row = self.row_names.get(parts[0].name.lower())
            if row is not None:
                column = self.row_columns[row].get(parts[1].name.lower())
                return self.ctx.rows[row].get(column or "")
        return None

    # ---- compilation

    def _sql(self, tree: exp.Expr) -> str:
        """DuckDB SQL of the expression or one of its parts, bare member names qualified."""
        tree = tree.copy()
        for column in list(tree.find_all(exp.Column)):
            if len(column.parts) == 1:
                name = self.bare_names[column.name.lower()]
                column.set("this", exp.Identifier(this=name, quoted=True))
                column.set("table", exp.Identifier(this=MEMBER_ALIAS, quoted=True))
        return tree.sql(
            dialect="duckdb",
            identify=True,
            comments=False,
            unsupported_level=ErrorLevel.RAISE,
        )

    def _compile(self, tree: exp.Expr) -> str | None:
        try:
            sql = self._sql(tree)
        except Exception as error:
            self.add(
                "E408",
                f"the expression cannot be compiled to DuckDB SQL ({error})",
                0,
                "simplify the expression",
            )
            return None
        refusal = _duckdb_parse_error(sql)
        if refusal is not None:
            self.add(
                "E401",
                f"DuckDB cannot read this expression: {refusal}",
                0,
                "check operator order and add parentheses, e.g. `-(a + b)`",
            )
            return None
        mismatch = _type_problem(sql, self.ctx, self.kind)
        if mismatch is not None:
            self.add("E409", mismatch, 0, _TYPE_HINT[self.kind])
            return None
        self._check_truth_operands(tree)
        self._check_constant_parts(tree)
        if not self.problems:
            self._check_constant_arguments(tree)
        if not self.problems:
            self._check_results_beside(tree)
        if not self.problems and self.kind == "value":
            self._check_constant_value(tree)
        if self.problems:
            return None
        return condition_sql(sql) if self.kind == "condition" else sql

    def _check_truth_operands(self, tree: exp.Expr) -> None:
        """Text where true or false belongs (`not order.channel`, `case when order.channel`):
        DuckDB binds it and converts each value when the run computes it, which stops the
        run on any text but 'true' or 'false'."""
        operands = list(_truth_operands(tree))
        if not operands:
            return
        try:
            parts = [self._sql(node) for _, node in operands]
        except Exception:  # compiled as a whole above; a part alone may not be: skip
            return
        types = _types_of(parts, self.ctx)
        for (operator, node), typ in zip(operands, types or [], strict=False):
            if typ != "VARCHAR":
                continue
            offset = self._offset(node)
            text = self._source_span(node, offset)
            self.add(
                "E409",
                f"`{text}` is text, but {operator} needs true or false",
                offset,
                f"compare it, e.g. `{text} = 'web'`, or test it with `{text} is not null`",
            )

    def _check_constant_parts(self, tree: exp.Expr) -> None:
        """A part with no column that fails whenever it is computed (`cast('x' as integer)`,
        `1 // 0`): the data cannot make it right, so it is refused here, not in the run."""
        for node in _constant_parts(tree):
            try:
                sql = self._sql(node)
            except Exception:
                continue
            error = _evaluation_error(sql)
            if error is None:
                continue
            offset = self._offset(node)
            self.add(
                "E409",
                f"`{self._source_span(node, offset)}` fails whenever it is computed: {error}",
                offset,
                "fix the value, or use try_cast(...) and nullif(x, 0) where a value may "
                "not convert or a divisor may be 0",
            )

    def _check_constant_arguments(self, tree: exp.Expr) -> None:
        """Arguments with no column that DuckDB reads when the run starts, whatever the rows:
        a regular expression RE2 cannot compile (`regexp_matches(x, '(')`), a `like` escape
        of more than one character, a divisor that is 0 (`order.total % 0` fails on every
        row, `order.total / 0` gives infinite points)."""
        for node in tree.walk():
            if isinstance(node, exp.Lambda):
                continue
            probe: str | None = None
            label = ""
            part: exp.Expr | None = None
            if isinstance(node, _REGEX_NODES):
                part = node.expression
                flag = node.args.get("flag")
                args = [part] + ([flag] if flag is not None else [])
                if all(a is not None and not _has_column(a) for a in args):
                    probe = "regexp_matches('', {})".format(
                        ", ".join(self._sql_or_none(a) or "NULL" for a in args)
                    )
                    label = "the regular expression"
            elif isinstance(node, exp.Escape):
                part = node.expression
                if part is not None and not _has_column(part):
                    probe = f"'' LIKE '' ESCAPE {self._sql_or_none(part) or 'NULL'}"
                    label = "the escape of `like`"
            elif isinstance(node, exp.Div | exp.IntDiv | exp.Mod):
                part = node.expression
                if part is not None and not _has_column(part):
                    sql = self._sql_or_none(part)
                    if sql is not None and _constant_value(sql) == 0:
                        offset = self._offset(node)
                        self.add(
                            "E409",
                            f"`{self._source_span(node, offset)}` divides by zero on every row",
                            offset,
                            "divide by a number other than 0, or by nullif(x, 0) where a "
                            "divisor may be 0",
                        )
                    continue
            elif isinstance(node, exp.Literal) and not node.is_string:
                if not _finite_literal(node.this):
                    offset = self._offset(node)
                    self.add(
                        "E409",
                        f"the number {node.this} is too large to compute with",
                        offset,
                        "write a number below 1e308; points and money are far smaller",
                    )
                continue
            if probe is None or part is None:
                continue
            error = _probe_error(probe)
            if error is None:
                continue
            offset = self._offset(part)
            self.add(
                "E409",
                f"{label} {self._source_span(part, offset)} is refused by DuckDB: {error}",
                offset,
                _PROBE_HINT[label],
            )

    def _sql_or_none(self, node: exp.Expr) -> str | None:
        try:
            return self._sql(node)
        except Exception:
            return None

    def _check_results_beside(self, tree: exp.Expr) -> None:
        """A text literal among the results of `case`, `if`, `coalesce`, `greatest` or
        `least` whose other results are numbers, dates or yes/no: DuckDB gives the whole
        one type and converts the text on every row that reaches it
        (`case when ... then 'a' else 1 end`)."""
        for node in tree.find_all(*_UNIFYING):
            if isinstance(node, exp.Nullif):
                continue
            for how, group in _unified(node):
                if how != "set beside":
                    continue
                texts = [p for p in group if isinstance(p, exp.Literal) and p.is_string]
                if not texts or len(texts) == len(group):
                    continue
                sql = self._sql_or_none(node)
                types = _types_of([sql], self.ctx) if sql is not None else None
                typ = types[0] if types else ""
                if typ in ("", "VARCHAR", "JSON", "NULL") or typ.endswith("[]"):
                    continue
                for text in texts:
                    if _converts(text.this, typ):
                        continue
                    offset = self._offset(text)
                    self.add(
                        "E409",
                        f"{text.sql(dialect='duckdb')} cannot be set beside the other "
                        f"results, which are {typ.lower()}: DuckDB makes them one type and "
                        "the text does not convert",
                        offset,
                        "give every result the same kind, e.g. all numbers or all text "
                        "(`else '1'`)",
                    )

    def _check_constant_value(self, tree: exp.Expr) -> None:
        """Points with no column (`points: 1e300`, `points: 10000000000000000000000`) are
        the same on every row: beyond the points a rule may give, a run would fail."""
        if _has_column(tree):
            return
        sql = self._sql_or_none(tree)
        value = _constant_value(sql) if sql is not None else None
        if isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool):
            if abs(value) > MAX_CONSTANT_POINTS:  # type: ignore[operator]
                self.add(
                    "E409",
                    f"{self.source.strip()} points is more than the most a rule may give "
                    f"({MAX_CONSTANT_POINTS:,})",
                    0,
                    f"write a number of points from -{MAX_CONSTANT_POINTS:,} to "
                    f"{MAX_CONSTANT_POINTS:,}",
                )


# --------------------------------------------------------------------------- helpers

_REQUIRED = re.compile(r"Required keyword: '(\w+)' missing for <class '[\w.]+\.(\w+)'>")

_CONSTRUCT_HINT = (
    "expressions may use columns, literals, operators, `in (...)`, `between`, `case`, casts "
    "and the functions listed in docs/expressions.md"
)


def _children(node: exp.Expr) -> Iterator[tuple[str, exp.Expr]]:
    for key, value in node.args.items():
        if key.startswith("_"):  # sqlglot's own annotations (types), not source
            continue
        if isinstance(value, _NODE):
            yield key, value
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, _NODE):
                    yield key, item


# Where an operand must be true or false: the operator, as messages name it.
def _truth_operands(tree: exp.Expr) -> Iterator[tuple[str, exp.Expr]]:
    """(operator, operand) for each operand that DuckDB takes as true or false, outside
    lambda bodies (whose variables are not columns). Operands that are comparisons or
    other yes/no forms are left out: they cannot be text."""
    stack: list[tuple[exp.Expr, exp.Expr | None]] = [(tree, None)]
    while stack:
        node, parent = stack.pop()
        if isinstance(node, exp.Lambda):
            continue
        found: list[tuple[str, exp.Expr]] = []
        if isinstance(node, exp.Not):
            found = [("`not`", node.this)]
        elif isinstance(node, exp.And | exp.Or):
            word = "`and`" if isinstance(node, exp.And) else "`or`"
            found = [(word, node.this), (word, node.expression)]
        elif isinstance(node, exp.If) and not (
            isinstance(parent, exp.Case) and parent.this is not None
        ):  # (in `case x when v then ...`, v is a value compared with x)
            word = "`case when`" if isinstance(parent, exp.Case) else "the condition of `if`"
            found = [(word, node.this)]
        for operator, operand in found:
            inner = operand
            while isinstance(inner, exp.Paren):
                inner = inner.this
            if inner is not None and not isinstance(inner, _PREDICATE_NODES):
                yield operator, inner
        stack.extend((child, node) for _, child in _children(node))


# Parts that compute nothing on their own: a constant part is only evaluated when it is more.
_LEAF_NODES = (
    exp.Literal, exp.Null, exp.Boolean, exp.DataType, exp.Var, exp.Identifier, exp.Star,
    exp.JSONPath, exp.JSONPathPart, exp.Lambda, exp.Interval,
)  # fmt: skip


def _constant_parts(tree: exp.Expr) -> Iterator[exp.Expr]:
    """The largest parts of the expression with no column in them that compute something
    (not a bare literal or a negative number), outside lambda bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, _LEAF_NODES):
            continue
        if isinstance(node, exp.Neg | exp.Paren) and isinstance(node.this, exp.Literal):
            continue
        # A branch of `case` is no expression on its own: its parts are looked at instead.
        branch = isinstance(node, exp.If) and isinstance(node.parent, exp.Case)
        if not branch and not any(isinstance(n, exp.Column | exp.Lambda) for n in node.walk()):
            yield node
            continue
        stack.extend(child for _, child in _children(node))


def _evaluation_error(sql: str) -> str | None:
    """DuckDB's message when computing this column-free SQL fails because of its values (a
    cast that fails, a division by zero, a number too large), or a note when it computes a
    number that is not finite (`1/0`, `1e400`: infinite points stop the run); None
    otherwise."""
    with _PARSER_LOCK:
        try:
            rows = _parser().execute(f"SELECT {sql}").fetchall()
        except duckdb.Error as error:
            if not value_error(error):
                return None
            return re.sub(r"\. Use TRY\(.*$", "", _error_text(error))  # SET is not for programs
    value = rows[0][0] if rows else None
    if isinstance(value, float) and not math.isfinite(value):
        kind = "not a number" if math.isnan(value) else "infinite"
        return f"the result is {kind} (a division by zero, or a number too large)"
    return None


def _constant_value(sql: str) -> object:
    """The value of column-free SQL (None when it cannot be computed here)."""
    with _PARSER_LOCK:
        try:
            rows = _parser().execute(f"SELECT {sql}").fetchall()
        except duckdb.Error:
            return None
    return rows[0][0] if rows else None


def _probe_error(sql: str) -> str | None:
    """DuckDB's message when computing this column-free SQL fails for any reason."""
    with _PARSER_LOCK:
        try:
            _parser().execute(f"SELECT {sql}").fetchall()
        except duckdb.Error as error:
            return _error_text(error)
    return None


def _finite_literal(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except (ValueError, OverflowError):
        return True  # not a plain number: DuckDB reads it


def _has_column(node: exp.Expr) -> bool:
    return any(isinstance(n, exp.Column | exp.Lambda) for n in node.walk())


# The most points a rule's constant `points:` may give a row (as the schema's other points).
MAX_CONSTANT_POINTS = 1_000_000_000

_REGEX_NODES = _classes("RegexpLike", "RegexpFullMatch", "RegexpExtract", "RegexpReplace")

_PROBE_HINT = {
    "the regular expression": "write an RE2 regular expression (docs/expressions.md); escape "
    "( ) [ ] { } . * + ? | with a backslash to match the character itself",
    "the escape of `like`": "the escape is one character, e.g. `like 'a!%' escape '!'`",
}


def _types_of(parts: list[str], ctx: ExprContext) -> list[str] | None:
    """DuckDB's type of each SQL part over the context's columns (DESCRIBE: nothing runs);
    None when they cannot be bound here."""
    with _PARSER_LOCK:
        con = _parser()
        tables = _binder(con, ctx)
        if tables is None:
            return None
        columns = ", ".join(f"({sql}) AS c{i}" for i, sql in enumerate(parts))
        try:
            rows = con.execute(f"DESCRIBE SELECT {columns} FROM {tables}").fetchall()
        except duckdb.Error:
            return None
    return [str(row[1]).upper().strip('"') for row in rows]


def _column_offset(node: exp.Column) -> int | None:
    starts = [p.meta["start"] for p in node.parts if "start" in p.meta]
    return min(starts) if starts else None


def _column_text(node: exp.Column) -> str:
    return ".".join(p.name for p in node.parts)


def _canonical_name(node: exp.Expr) -> str:
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return node.key


def _node_names(node: exp.Expr) -> set[str]:
    names = {node.key.lower(), _canonical_name(node)}
    for name in getattr(type(node), "_sql_names", None) or []:
        names.add(name.lower())
    if isinstance(node, _CLOCK_NODES):
        names |= _CLOCK_NAMES
    if isinstance(node, _RANDOM_NODES):
        names |= _RANDOM_NAMES
    if isinstance(node, _PARAMETER_NODES):
        names |= {"?", "$", "@", ":"}
    if isinstance(node, exp.Star):
        names.add("*")
    return names


def _is_name_token(token: Token) -> bool:
    return bool(token.text) and (token.text[0].isalpha() or token.text[0] == "_")


def _is_table_function(name: str) -> bool:
    return (
        name in _TABLE_FUNCTION_NAMES
        or name.startswith(_TABLE_FUNCTION_PREFIXES)
        or name.endswith(_TABLE_FUNCTION_SUFFIXES)
    )


def _looks_like_file(name: str) -> bool:
    return any(ch in name for ch in "./\\*:")


def _snippet(node: exp.Expr) -> str:
    try:
        text = node.sql(dialect="duckdb")
    except Exception:
        text = node.key
    return text if len(text) <= 40 else text[:37] + "..."


def _unterminated(source: str) -> tuple[int, str]:
    """Where an unclosed quote or comment starts (for a tokenizer error)."""
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch in "'\"":
            end = i + 1
            while True:
                end = source.find(ch, end)
                if end == -1:
                    what = "string" if ch == "'" else "quoted name"
                    return i, f"the {what} starting with {ch}"
                if end + 1 < n and source[end + 1] == ch:
                    end += 2
                    continue
                break
            i = end + 1
        elif source.startswith("--", i):
            newline = source.find("\n", i)
            i = n if newline == -1 else newline + 1
        elif source.startswith("/*", i):
            close = source.find("*/", i + 2)
            if close == -1:
                return i, "the comment starting with /*"
            i = close + 2
        else:
            i += 1
    return 0, "a quote or comment"


_PARSER_LOCK = threading.Lock()
_PARSER: list[duckdb.DuckDBPyConnection] = []


# Comparisons whose text literal DuckDB converts to the type of the column on the other side.
_LITERAL_SIDES = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between, exp.In)
_CONVERTED = {
    "date": "a date",
    "timestamp": "a timestamp",
    "decimal": "a number",
    "integer": "a whole number",
    "boolean": "true or false",
}
_EXAMPLE = {
    "date": "'2026-01-31'",
    "timestamp": "'2026-01-31 18:00'",
    "decimal": "100 or 99.99",
    "integer": "3",
    "boolean": "true",
}


# Calls whose arguments (or results, for `case` and `if`) DuckDB turns into one type.
_UNIFYING = (exp.Coalesce, exp.Greatest, exp.Least, exp.Nullif, exp.Case, exp.If)


def _unified(node: exp.Expr) -> list[tuple[str, list[exp.Expr]]]:
    """The groups of parts that DuckDB converts to one type, each with how messages say
    they meet: a comparison's sides and the values a simple `case x when ...` compares
    ("compared with"), the arguments of `coalesce` and the like, the results of `case` and
    `if` ("set beside")."""
    if isinstance(node, exp.Case):
        branches = node.args.get("ifs") or []
        results = [branch.args.get("true") for branch in branches] + [node.args.get("default")]
        groups = [("set beside", results)]
        if node.this is not None:  # case x when v1 then ... : x is compared with each v
            groups.append(("compared with", [node.this] + [b.this for b in branches]))
    elif isinstance(node, exp.If):
        groups = [("set beside", [node.args.get("true"), node.args.get("false")])]
    elif isinstance(node, exp.Between):
        groups = [("compared with", [node.this, node.args.get("low"), node.args.get("high")])]
    elif isinstance(node, _LITERAL_SIDES):
        groups = [
            (
                "compared with",
                [node.this, node.args.get("expression"), *(node.args.get("expressions") or [])],
            )
        ]
    else:
        groups = [
            (
                "set beside",
                [node.this, *(node.args.get("expressions") or [])] + [node.args.get("expression")],
            )
        ]
    return [(how, [part for part in parts if part is not None]) for how, parts in groups]


def _converts(text: str, duckdb_type: str) -> bool:
    """Whether DuckDB converts the text to the type (as it does a literal in a comparison)."""
    with _PARSER_LOCK:
        try:
            row = _parser().execute(f"SELECT TRY_CAST($1 AS {duckdb_type})", [text]).fetchone()
        except duckdb.Error:
            return True  # not checkable here: leave it to the binder
    return row is not None and row[0] is not None


def _parser() -> duckdb.DuckDBPyConnection:
    """The in-memory connection that reads and binds compiled expressions (under the lock)."""
    if not _PARSER:
        con = duckdb.connect(":memory:")
        # It binds and runs expressions over a row or two: a cap keeps a program's
        # expression from taking the machine's memory in `validate`.
        con.execute("SET memory_limit = '256MB'")
        _PARSER.append(con)
    return _PARSER[0]


def _duckdb_parse_error(sql: str) -> str | None:
    """DuckDB's own parser reading the compiled SQL (parse only, nothing runs): the error, if any.

    A last net for input sqlglot accepts but DuckDB does not (e.g. `- not x`).
    """
    with _PARSER_LOCK:
        try:
            row = _parser().execute("SELECT json_serialize_sql($1)", [f"SELECT {sql}"]).fetchone()
        except duckdb.Error:  # json extension unavailable: skip this extra check
            return None
    try:
        result = json.loads(row[0]) if row else {}
    except ValueError:
        return None
    if result.get("error"):
        return str(result.get("error_message") or "syntax error").split("\n")[0]
    return None


# What the engine's rows and member view are made of, as tables of one sample row: the
# compiled SQL is bound and run against them. One schema per set of columns, all in the
# connection of _duckdb_parse_error.
_BINDERS: dict[tuple, str] = {}

_NUMERIC = re.compile(r"(U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?|DECIMAL\(\d+,\d+\)|FLOAT|DOUBLE|NULL)")

_TYPE_HINT = {
    "condition": "compare values of one kind, e.g. `order.total >= 100`; "
    "cast where needed, e.g. `cast(item.quantity as integer)`",
    "value": "points are a number: compute them from numbers, e.g. `order.total / 10`; "
    "cast text with `try_cast(x as integer)`",
}


# A value of each column type, for the one row of each table: a cast that DuckDB has no
# way to make (a timestamp to a number) only fails once a value goes through it.
_SAMPLE = {
    "varchar": "'x'",
    "integer": "1",
    "decimal": "1",
    "boolean": "true",
    "date": "DATE '2026-01-01'",
    "timestamp": "TIMESTAMP '2026-01-01 10:00:00'",
    "list": "['x']",
    "json": "'{}'",
}


def _binder(con: duckdb.DuckDBPyConnection, ctx: ExprContext) -> str | None:
    """The FROM clause over tables of the context's rows and member view, one row of sample
    values each (made in a schema of their own the first time); None when a column type is
    not known."""
    tables = {row: cols for row, cols in {**ctx.rows, MEMBER_ALIAS: ctx.bare}.items() if cols}
    key = tuple((row, tuple(sorted(cols.items()))) for row, cols in sorted(tables.items()))
    schema = _BINDERS.get(key)
    if schema is None:
        try:
            columns = {
                row: ", ".join(f"{_quoted(c)} {DUCKDB_TYPES[t]}" for c, t in cols.items())
                for row, cols in tables.items()
            }
        except KeyError:
            return None
        schema = f"ctx{len(_BINDERS)}"
        con.execute(f"CREATE SCHEMA {schema}")
        for row, cols in columns.items():
            con.execute(f"CREATE TABLE {schema}.{_quoted(row)} ({cols})")
            values = ", ".join(_SAMPLE[t] for t in tables[row].values())
            con.execute(f"INSERT INTO {schema}.{_quoted(row)} VALUES ({values})")
        _BINDERS[key] = schema
    return ", ".join(f"{schema}.{_quoted(row)} AS {_quoted(row)}" for row in tables)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _error_text(error: duckdb.Error) -> str:
    """DuckDB's message without its class name or the lines of context after it."""
    return re.sub(r"^[\w ]+ Error: ", "", first_line(str(error)))


def _type_problem(sql: str, ctx: ExprContext, kind: str) -> str | None:
    """Bind the compiled SQL over tables of the context's columns and run it over a row of
    sample values: what DuckDB says when the types do not fit (`- 'x'`, a date divided by a
    date, a cast of a timestamp to a number), or when a condition is not true or false, or
    points are not a number. None when they fit, or cannot be checked here."""
    with _PARSER_LOCK:
        con = _parser()
        tables = _binder(con, ctx)
        if tables is None:
            return None
        try:
            row = con.execute(f"DESCRIBE SELECT {sql} AS v FROM {tables}").fetchone()
        except duckdb.Error as error:
            return f"DuckDB refuses this expression: {_error_text(error)}"
        try:
            con.execute(f"SELECT {sql} AS v FROM {tables}").fetchall()
        except duckdb.Error as error:
            # Over the sample values only a cast that no value can make counts: the others
            # (a text that is not a number, a division by zero) depend on the data.
            if "Unimplemented type for cast" in str(error):
                return f"DuckDB refuses this expression: {_error_text(error)}"
    typ = str(row[1]).upper().strip('"') if row else ""
    if kind == "condition" and typ not in ("BOOLEAN", "JSON", "NULL"):
        return f"a condition must be true or false, not {typ.lower()}"
    if kind == "value" and not _NUMERIC.fullmatch(typ):
        return f"a value must be a number, not {typ.lower()}"
    return None


class _CommandFallbackFilter(logging.Filter):
    """Silence sqlglot's 'falling back to parsing as a Command' warning: we report E405."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


class _quiet_sqlglot:
    _filter = _CommandFallbackFilter()

    def __enter__(self) -> None:
        logging.getLogger("sqlglot").addFilter(self._filter)

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("sqlglot").removeFilter(self._filter)
