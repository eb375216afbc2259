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
    """The queries as one SQL text in `dialect`, each after a comment saying what it is."""
    import sqlglot

    blocks = []
    for comment, query in queries(program):
        text = query
        if dialect != "duckdb":
            try:
                text = ";\n".join(
                    sqlglot.transpile(query, read="duckdb", write=dialect, pretty=True)
                )
            except sqlglot.errors.SqlglotError as exc:
                text = f"-- sqlglot cannot write this in {dialect}: {exc}\n" + "\n".join(
                    f"-- {line}" for line in query.splitlines()
                )
        blocks.append(f"-- {comment}\n{text};\n")
    header = f"-- program '{program.id}', {len(blocks)} queries, SQL dialect {dialect}\n"
    return header + "\n" + "\n".join(blocks)
