"""`loyalty compile`: the program's expressions as SQL that runs on the contract's tables."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from typer.testing import CliRunner

from loyalty_cli.cli import app
from loyalty_cli.columns import (
    DUCKDB_TYPES,
    MEMBER_COLUMNS,
    RFM_COLUMNS,
    SOURCE_COLUMNS,
    WORKFLOW_COLUMNS,
)
from loyalty_cli.config.model import load_program
from loyalty_cli.engine.compile import compile_program, queries

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "programs"
TABLES = {
    "customers": "customers",
    "orders": "orders",
    "order_items": "order_items",
    "events": "events",
}


def contract_tables(program) -> duckdb.DuckDBPyConnection:
    """Empty tables with the data contract's columns (and the program's extras)."""
    con = duckdb.connect()
    for source, table in TABLES.items():
        cols = {name: typ for name, (typ, _) in SOURCE_COLUMNS[source].items()}
        cols.update(((program.data["sources"].get(source) or {}).get("extra")) or {})
        defs = ", ".join(f'"{n}" {DUCKDB_TYPES[t]}' for n, t in cols.items())
        con.execute(f"CREATE TABLE {table} ({defs})")
    member = {**MEMBER_COLUMNS, **RFM_COLUMNS, **WORKFLOW_COLUMNS}
    defs = ", ".join(
        f'"{n}" {DUCKDB_TYPES["varchar" if t == "varchar" else t]}' for n, t in member.items()
    )
    con.execute(f"CREATE TABLE member_view (customer_id VARCHAR, {defs})")
    return con


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.iterdir()))
def test_every_query_of_every_example_runs(name):
    program = load_program(EXAMPLES / name / "program.yaml")
    con = contract_tables(program)
    found = queries(program)
    assert found
    for comment, query in found:
        assert con.execute(query).fetchall() == [], comment


def test_compile_cli_and_other_dialects():
    path = EXAMPLES / "fashion" / "program.yaml"
    res = CliRunner().invoke(app, ["compile", str(path)])
    assert res.exit_code == 0, res.output
    assert res.output.startswith("-- program 'fashion-club', 6 queries, SQL dialect duckdb\n")
    assert "-- earning rule 'new-collection' (on order_item)" in res.output
    assert "list_contains" not in res.output.lower().replace("array_contains", "")
    spark = compile_program(load_program(path), "spark")
    assert "ARRAY_CONTAINS(`item`.`tags`, 'new')" in spark
    postgres = compile_program(load_program(path), "postgres")
    assert "'new' = ANY(" in postgres and '"item"."tags"' in postgres
    res = CliRunner().invoke(app, ["compile", str(path), "--dialect", "oracle"])
    assert res.exit_code == 2


def small_program(tmp_path, rules: str):
    from enginekit import Shop

    return load_program(Shop(tmp_path, f"earning:\n  rules:\n{rules}").program)


def test_one_query_is_one_query(tmp_path):
    program = small_program(tmp_path, "    - {id: base, on: order, points: order.total}\n")
    assert compile_program(program).startswith(
        "-- program 'test-club', 1 query, SQL dialect duckdb\n"
    )


def test_a_query_another_dialect_would_change_is_printed_as_a_comment(tmp_path):
    program = small_program(
        tmp_path,
        "    - {id: weekend, on: order, when: 'isodow(order.ordered_at) >= 6', points: 10}\n"
        "    - {id: cast, on: order, points: 'coalesce(try_cast(order.status AS INT), 0)'}\n"
        "    - {id: pair, on: order, when: 'len([1, 2]) = 2', points: 1}\n"
        "    - {id: plain, on: order, points: order.total}\n",
    )
    postgres = compile_program(program, "postgres")
    assert postgres.startswith("-- program 'test-club', 4 queries, SQL dialect postgres\n")
    blocks = postgres.split("\n\n")[1:]
    assert blocks[0].splitlines()[:3] == [
        "-- earning rule 'weekend' (on order): the rows that earn and their points before "
        "rounding, the tier multiplier and caps",
        '-- not written in postgres: ISODOW("order"."ordered_at"): postgres has no such '
        'function; sqlglot writes it as DAYOFWEEK_ISO("order"."ordered_at")',
        '-- SELECT "order".order_id AS source_id, "customer".customer_id,',
    ]
    assert blocks[1].splitlines()[1] == (
        '-- not written in postgres: TRY_CAST("order"."status" AS INT): try_cast() becomes '
        "CAST, which fails on a value that does not convert where try_cast gives NULL"
    )
    assert blocks[2].splitlines()[1] == (
        "-- not written in postgres: LENGTH([1, 2]): the length of a list becomes "
        "LENGTH(ARRAY[1, 2]), the length of a text in postgres"
    )
    # Every line of a query not written is a comment; a faithful one is written.
    for block in blocks[:3]:
        assert all(line.startswith("--") for line in block.splitlines()[:-1])
        assert block.splitlines()[-1].startswith("--") and block.rstrip().endswith(";")
    assert "not written" not in blocks[3] and 'FROM orders AS "order"' in blocks[3]
    spark = compile_program(program, "spark").split("\n\n")[1:]
    assert spark[0].splitlines()[1] == (
        '-- not written in spark: ISODOW("order"."ordered_at"): isodow() becomes an '
        "expression over DAYOFWEEK that does not give 1 (Monday) to 7 (Sunday)"
    )
    assert "not written" not in spark[1] and "TRY_CAST(`order`.`status` AS INT)" in spark[1]
    assert spark[2].splitlines()[1] == (
        "-- not written in spark: LENGTH([1, 2]): the length of a list becomes "
        "LENGTH(ARRAY(1, 2)), the length of a text in spark"
    )
    # DuckDB itself prints every query.
    assert "not written" not in compile_program(program)
