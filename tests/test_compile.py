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
