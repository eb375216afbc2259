"""`loyalty compile PROGRAM`: the program's own logic as SQL, for review or another engine.

Every expression of the program (earning rules' `when` and `points`, bonuses' conditions
and goals, rule segments and groups, workflows' `audience`, `exit_when` and `if`) is
checked and compiled as a run compiles it, and printed inside the query that says what it
selects, over the data contract's tables: `orders`, `order_items`, `events`, `customers`
(with declared extras as columns) and `member_view` (the member view, SPEC 4; workflow
expressions also see `ordered_since_entry` and `days_since_entry`). With a dialect other
than DuckDB, sqlglot writes each query in that dialect.

What the engine does around these queries (rounding, tier multipliers, caps, pending
points, lots, FIFO, expiry, tiers) is the same for every program and is described in
docs/run.md; it is not printed.
"""

from __future__ import annotations

from loyalty_cli import exprbase as expressions
from loyalty_cli.config.model import Program

DIALECTS = ("duckdb", "spark", "postgres")

# The rows an expression sees, by the rule's `on`, as FROM ... JOIN ... of the contract's tables.
_FROM = {
    "order": """FROM orders AS "order"
JOIN customers AS "customer" ON "customer".customer_id = "order".customer_id
JOIN member_view AS "member" ON "member".customer_id = "order".customer_id""",
    "order_item": """FROM order_items AS "item"
JOIN orders AS "order" ON "order".order_id = "item".order_id
JOIN customers AS "customer" ON "customer".customer_id = "order".customer_id
JOIN member_view AS "member" ON "member".customer_id = "order".customer_id""",
    "event": """FROM events AS "event"
JOIN customers AS "customer" ON "customer".customer_id = "event".customer_id
JOIN member_view AS "member" ON "member".customer_id = "event".customer_id""",
    None: """FROM customers AS "customer"
JOIN member_view AS "member" ON "member".customer_id = "customer".customer_id""",
}
_KEY = {
    "order": '"order".order_id AS source_id',
    "order_item": '"item".order_id, "item".sku',
    "event": '"event".event_id AS source_id',
    None: '"customer".customer_id',
}


def queries(program: Program) -> list[tuple[str, str]]:
    """(comment, DuckDB query) for every expression of the program, in program order."""
    extras, has_rfm = program.extras, program.has_rfm

    def sql(text, on: str | None, kind: str, workflow: bool = False) -> str:
        ctx = expressions.ExprContext.for_rule(on, extras, rfm=has_rfm, workflow=workflow)
        return expressions.compile_expression(text, ctx, kind=kind)

    out: list[tuple[str, str]] = []
    for rule in program.rules:
        on = rule["on"]
        where = sql(rule["when"], on, "condition") if rule.get("when") is not None else "TRUE"
        out.append(
            (
                f"earning rule '{rule['id']}' (on {on}): the rows that earn and their points "
                "before rounding, the tier multiplier and caps",
                f'SELECT {_KEY[on]}, "customer".customer_id,\n'
                f"       ({sql(rule['points'], on, 'value')}) AS points\n"
                f"{_FROM[on]}\nWHERE {where}",
            )
        )
    for bonus in program.data.get("bonuses") or []:
        on = bonus.get("on")
        parts = []
        if bonus.get("when") is not None:
            parts.append(("condition", sql(bonus["when"], on, "condition")))
        goal_sum = (bonus.get("goal") or {}).get("sum")
        if goal_sum is not None:
            parts.append(("value counted towards the goal", sql(goal_sum, on, "value")))
        for what, expr in parts:
            out.append(
                (
                    f"bonus '{bonus['id']}' ({bonus['trigger']}): its {what}",
                    f"SELECT {_KEY[on]}, ({expr}) AS value\n{_FROM[on]}"
                    if what != "condition"
                    else f"SELECT {_KEY[on]}\n{_FROM[on]}\nWHERE {expr}",
                )
            )
    for seg in program.data.get("segments") or []:
        if seg.get("when") is not None:
            out.append(
                (
                    f"rule segment '{seg['id']}': its members",
                    f'SELECT "customer".customer_id\n{_FROM[None]}\n'
                    f"WHERE {sql(seg['when'], None, 'condition')}",
                )
            )
        for group, cond in (seg.get("groups") or {}).items():
            out.append(
                (
                    f"segment '{seg['id']}' group '{group}' (groups are tried in order; "
                    "r, f, m are the member's scores)",
                    f'SELECT "customer".customer_id\n{_FROM[None]}\n'
                    f"WHERE {sql(cond, None, 'condition')}",
                )
            )
    for _, wdoc in program.workflows:
        wf = wdoc["workflow"]
        conds = [(k, wf.get(k)) for k in ("audience", "exit_when")]
        conds += [
            (f"step {i} `if`", s.get("if")) for i, s in enumerate(wf.get("steps") or [], start=1)
        ]
        for what, cond in conds:
            if cond is None:
                continue
            out.append(
                (
                    f"workflow '{wf['id']}': {what}",
                    f'SELECT "customer".customer_id\n{_FROM[None]}\n'
                    f"WHERE {sql(cond, None, 'condition', workflow=True)}",
                )
            )
    return out


def compile_program(program: Program, dialect: str = "duckdb") -> str:
    """The queries as one SQL text in `dialect`, each after a comment saying what it is.

    In another dialect, a query sqlglot cannot write, or would write with a different
    meaning (`unfaithful`), is printed as a comment (the DuckDB query) with the reason."""
    import sqlglot

    lists = _list_columns(program)
    blocks = []
    for comment, query in queries(program):
        text = query
        if dialect != "duckdb":
            try:
                reasons = unfaithful(query, dialect, lists)
                if not reasons:
                    text = ";\n".join(
                        sqlglot.transpile(query, read="duckdb", write=dialect, pretty=True)
                    )
            except sqlglot.errors.SqlglotError as exc:
                reasons = [str(exc)]
            if reasons:
                text = "".join(
                    f"-- not written in {dialect}: {reason}\n" for reason in reasons
                ) + "\n".join(f"-- {line}" for line in query.splitlines())
        blocks.append(f"-- {comment}\n{text};\n")
    count = f"{len(blocks)} {'query' if len(blocks) == 1 else 'queries'}"
    header = f"-- program '{program.id}', {count}, SQL dialect {dialect}\n"
    return header + "\n" + "\n".join(blocks)


def _list_columns(program: Program) -> frozenset[str]:
    """Names of the list columns (the contract's and declared extras), by column name."""
    from loyalty_cli.columns import SOURCE_COLUMNS

    names = {n for cols in SOURCE_COLUMNS.values() for n, (t, _) in cols.items() if t == "list"}
    for types in (program.extras or {}).values():
        if isinstance(types, dict):
            names |= {n for n, t in types.items() if t == "list"}
    return frozenset(names)


# DuckDB functions (sqlglot node class names) that sqlglot writes in a dialect as a function
# the dialect lacks or that computes something else, with what differs. sqlglot turns them
# into SQL that looks right, so a reviewer would not notice: such a query is not written.
_NOT_IN = "{dialect} has no such function; sqlglot writes it as {written}"
_UNFAITHFUL: dict[str, dict[str, str]] = {
    "postgres": {
        "TryCast": "try_cast() becomes CAST, which fails on a value that does not convert "
        "where try_cast gives NULL",
        "DayOfWeek": _NOT_IN,
        "DayOfWeekIso": _NOT_IN,
        "DayOfMonth": _NOT_IN,
        "DayOfYear": _NOT_IN,
        "Week": _NOT_IN,
        "WeekOfYear": _NOT_IN,
        "Quarter": _NOT_IN,
        "Hour": _NOT_IN,
        "Minute": _NOT_IN,
        "Contains": _NOT_IN,
        "EndsWith": _NOT_IN,
        "RegexpFullMatch": _NOT_IN,
        "ArraySize": "array_length() becomes ARRAY_LENGTH(l, 1), which is NULL for an empty "
        "list where DuckDB gives 0",
    },
    "spark": {
        "DayOfWeek": "dayofweek() becomes DAYOFWEEK, which counts 1 (Sunday) to 7 where "
        "DuckDB counts 0 (Sunday) to 6",
        "DayOfWeekIso": "isodow() becomes an expression over DAYOFWEEK that does not give "
        "1 (Monday) to 7 (Sunday)",
        "Week": _NOT_IN,
        "RegexpFullMatch": _NOT_IN,
        "ArrayOverlaps": "Spark SQL has no && operator on arrays (arrays_overlap is the "
        "function); sqlglot writes it as {written}",
        "ArrayContainsAll": "Spark SQL has no @> operator on arrays; sqlglot writes it as "
        "{written}",
        "DateDiff": "date_diff() becomes DATEDIFF(unit, a, b), which counts whole units "
        "between two timestamps where DuckDB counts the unit boundaries crossed",
    },
}
# Functions sqlglot does not model (written unchanged) that a dialect lacks.
_ANONYMOUS_MISSING = {
    "postgres": {"strlen", "list_has_all", "array_has_any", "isoyear", "datepart"},
    "spark": {"strlen", "list_has_all", "array_has_any", "isoyear", "datepart"},
}
# Day-of-week fields whose numbering differs in Spark (1 = Sunday) or that it lacks.
_SPARK_DOW_FIELDS = {"dow", "dayofweek", "isodow", "weekday"}


def unfaithful(query: str, dialect: str, list_columns: frozenset[str] = frozenset()) -> list[str]:
    """Why `query` (DuckDB) would not mean the same when sqlglot writes it in `dialect`:
    a function the dialect lacks or that computes something else there; [] when none."""
    import sqlglot
    from sqlglot import exp

    reasons: list[str] = []

    def add(reason: str) -> None:
        if reason not in reasons:
            reasons.append(reason)

    def written(node) -> str:
        return node.sql(dialect=dialect)

    table = _UNFAITHFUL.get(dialect, {})
    for node in sqlglot.parse_one(query, read="duckdb").walk():
        kind = type(node).__name__
        duck = node.sql(dialect="duckdb")
        if kind in table:
            add(f"{duck}: " + table[kind].format(dialect=dialect, written=written(node)))
        elif isinstance(node, exp.Anonymous):
            name = node.name.lower()
            if name in _ANONYMOUS_MISSING.get(dialect, set()):
                add(f"{duck}: {dialect} has no function {name}()")
            elif dialect == "spark" and name in ("date_part", "datepart"):
                field = node.expressions[0] if node.expressions else None
                if isinstance(field, exp.Literal) and field.name.lower() in _SPARK_DOW_FIELDS:
                    add(f"{duck}: Spark numbers the days of the week from 1 (Sunday)")
        elif isinstance(node, exp.Extract) and dialect == "spark":
            if node.this.name.lower() in _SPARK_DOW_FIELDS:
                add(f"{duck}: Spark numbers the days of the week from 1 (Sunday)")
        elif isinstance(node, exp.Length):
            arg = node.this
            if isinstance(arg, exp.Array) or (
                isinstance(arg, exp.Column) and arg.name in list_columns
            ):
                add(
                    f"{duck}: the length of a list becomes {written(node)}, the length of a "
                    f"text in {dialect}"
                )
    return reasons
