"""Program expressions: checks with positions, compiled SQL, and what DuckDB makes of it."""

from __future__ import annotations

import logging
from decimal import Decimal

import duckdb
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from loyalty_cli.columns import (
    DUCKDB_TYPES,
    MEMBER_COLUMNS,
    RFM_COLUMNS,
    SOURCE_COLUMNS,
    WORKFLOW_COLUMNS,
)
from loyalty_cli.diagnostics import CODES
from loyalty_cli.expr import (
    ALLOWED_FUNCTIONS,
    CheckedExpr,
    ExprContext,
    check_expression,
    compile_expression,
)

EXTRAS = {"order_items": {"colour": "varchar"}, "customers": {"newsletter_segment": "varchar"}}


def ctx_for(on: str | None, **kw: bool) -> ExprContext:
    return ExprContext.for_rule(on, EXTRAS if kw.pop("extras", False) else {}, **kw)


def check(text, on="order", kind="condition", **kw) -> CheckedExpr:
    return check_expression(text, ctx_for(on, **kw), kind=kind)


# ----------------------------------------------------------------------------- contexts


def test_context_rows_follow_the_rule_target():
    assert list(ctx_for("order").rows) == ["order", "customer"]
    assert list(ctx_for("order_item").rows) == ["item", "order", "customer"]
    assert list(ctx_for("event").rows) == ["event", "customer"]
    assert list(ctx_for(None).rows) == ["customer"]


def test_context_bare_names():
    assert ctx_for("order").bare == MEMBER_COLUMNS
    assert ctx_for("order", member=False).bare == {}
    assert set(ctx_for(None, rfm=True).bare) == set(MEMBER_COLUMNS) | set(RFM_COLUMNS)
    workflow = ctx_for(None, workflow=True).bare
    assert set(workflow) == set(MEMBER_COLUMNS) | set(WORKFLOW_COLUMNS)


def test_context_extras_join_their_row():
    ctx = ExprContext.for_rule("order_item", EXTRAS)
    assert ctx.rows["item"]["colour"] == "varchar"
    assert ctx.rows["customer"]["newsletter_segment"] == "varchar"
    assert ctx.rows["item"]["tags"] == "list"
    assert "colour" not in ctx.rows["order"]


def test_context_unknown_target_is_a_programming_error():
    with pytest.raises(ValueError):
        ExprContext.for_rule("returns", {})


def test_unknown_kind_is_a_programming_error():
    with pytest.raises(ValueError):
        check_expression("true", ctx_for("order"), kind="text")


# ----------------------------------------------------------------------------- compiled SQL


@pytest.mark.parametrize(
    ("text", "on", "kind", "sql"),
    [
        ("order.total", "order", "value", '"order"."total"'),
        (
            "order.total >= 500",
            "order",
            "condition",
            'COALESCE(("order"."total" >= 500), FALSE)',
        ),
        (
            "item.unit_price * item.quantity",
            "order_item",
            "value",
            '"item"."unit_price" * "item"."quantity"',
        ),
        (
            "list_contains(item.tags, 'new')",
            "order_item",
            "condition",
            "COALESCE((ARRAY_CONTAINS(\"item\".\"tags\", 'new')), FALSE)",
        ),
        (
            "event.type = 'email_open'",
            "event",
            "condition",
            "COALESCE((\"event\".\"type\" = 'email_open'), FALSE)",
        ),
        (
            "tier in ('gold','silver') and days_since_last_order > 90",
            None,
            "condition",
            "COALESCE((\"member\".\"tier\" IN ('gold', 'silver') "
            'AND "member"."days_since_last_order" > 90), FALSE)',
        ),
        (
            "customer.email like '%@shop.example'",
            None,
            "condition",
            "COALESCE((\"customer\".\"email\" LIKE '%@shop.example'), FALSE)",
        ),
        ("Order.TOTAL > 1", "order", "condition", 'COALESCE(("order"."total" > 1), FALSE)'),
        ('"order"."total" > 1', "order", "condition", 'COALESCE(("order"."total" > 1), FALSE)'),
        ("order.total > 1 -- x */", "order", "condition", 'COALESCE(("order"."total" > 1), FALSE)'),
        ("true", "order", "condition", "COALESCE((TRUE), FALSE)"),
        (100, "order", "value", "100"),
        (-50, "event", "value", "-50"),
        (True, None, "condition", "COALESCE((TRUE), FALSE)"),
        (0.5, "order", "value", "0.5"),
        ("if(order.total >= 500, 100, 10)", "order", "value",
         'CASE WHEN "order"."total" >= 500 THEN 100 ELSE 10 END'),
        ("item.colour = 'red'", "order_item", "condition",
         "COALESCE((\"item\".\"colour\" = 'red'), FALSE)"),
    ],
)  # fmt: skip
def test_compiled_sql(text, on, kind, sql):
    checked = check_expression(text, ExprContext.for_rule(on, EXTRAS), kind=kind)
    assert checked.problems == []
    assert checked.ok
    assert checked.sql == sql


def test_workflow_names_compile_to_the_member_row():
    ctx = ExprContext.for_rule(None, {}, workflow=True)
    sql = compile_expression(
        "not ordered_since_entry and days_since_entry >= 7", ctx, kind="condition"
    )
    assert sql == (
        'COALESCE((NOT "member"."ordered_since_entry" AND "member"."days_since_entry" >= 7), FALSE)'
    )


def test_columns_referenced():
    checked = check("item.quantity > 1 and order.channel = 'web' and tier = 'gold'", "order_item")
    assert checked.columns == {("item", "quantity"), ("order", "channel"), (None, "tier")}


GOOD = [
    ("order", "value", "order.total / 10"),
    ("order", "value", "round(order.total * 0.1, 0)"),
    ("order", "value", "floor(order.total) + ceil(order.total) + abs(-1) + sign(order.total)"),
    ("order", "value", "greatest(order.total, 100) - least(order.total, 100)"),
    ("order", "value", "coalesce(nullif(order.total, 0), 1)"),
    ("order", "value", "case when order.total > 500 then 100 when order.total > 100 then 10 end"),
    ("order", "value", "case order.channel when 'web' then 5 when 'app' then 7 else 0 end"),
    ("order", "value", "case order.total when 100 then 1 else 0 end"),
    ("order", "condition", "customer.email_consent and not customer.sms_consent"),
    ("event", "condition", "event.properties->'flag' and true"),
    ("order", "value", "if(order.channel = 'web', 2, 1) * (1 + cast('2' as integer))"),
    ("order", "value", "order.total // 10 + order.total % 10"),
    ("order", "value", "cast(order.total as integer) + order.total::decimal(18,2)"),
    ("order", "value", "try_cast(order.channel as integer)"),
    ("order", "value", "date_diff('day', customer.joined_at, order.ordered_at)"),
    ("order", "value", "datediff('week', customer.joined_at, order.ordered_at)"),
    (
        "order",
        "value",
        "date_part('year', order.ordered_at) - extract(month from customer.joined_at)",
    ),
    (
        "order",
        "value",
        "dayofweek(order.ordered_at) + isodow(customer.joined_at) + hour(order.ordered_at)",
    ),
    ("order", "value", "year(order.ordered_at) + month(order.ordered_at) + day(order.ordered_at)"),
    ("order", "condition", "date_trunc('month', order.ordered_at) = date '2026-01-01'"),
    ("order", "condition", "order.ordered_at < customer.joined_at + interval 30 day"),
    ("order", "condition", "order.ordered_at < customer.joined_at + interval '2 weeks'"),
    ("order", "condition", "month(customer.birth_date) = month(order.ordered_at)"),
    ("order", "condition", "lower(order.channel) like 'web%' or upper(order.channel) ilike 'APP'"),
    ("order", "condition", "order.channel not like 'x\\_%' escape '\\'"),
    ("order", "condition", "starts_with(customer.email, 'a') and ends_with(customer.email, '.pl')"),
    ("order", "condition", "contains(customer.email, '@') or regexp_matches(customer.email, 'a')"),
    ("order", "condition", "split_part(customer.email, '@', 2) = 'shop.example'"),
    ("order", "condition", "trim(ltrim(rtrim(customer.first_name))) = 'Ann'"),
    ("order", "condition", "substr(customer.locale, 1, 2) = substring(customer.locale, 1, 2)"),
    ("order", "condition", "replace(order.channel, 'w', 'v') = 'veb'"),
    ("order", "condition", "concat(customer.first_name, ' ', customer.last_name) = 'Ann Lee'"),
    ("order", "condition", "customer.first_name || '!' = 'Ann!'"),
    ("order", "condition", "length(customer.email) > 3 and strlen(customer.email) > 3"),
    ("order", "condition", "customer.email is not null and customer.email_consent is true"),
    ("order", "condition", "customer.referred_by is null"),
    ("order", "condition", "order.total between 100 and 200"),
    ("order", "condition", "order.channel is distinct from 'web'"),
    ("order", "condition", "not (order.channel in ('web', 'app'))"),
    ("order", "condition", "order.status <> 'cancelled' and order.status != 'x'"),
    ("order_item", "condition", "list_has_any(item.tags, ['new', 'sale'])"),
    ("order_item", "condition", "list_has_all(item.tags, ['new', 'sale'])"),
    ("order_item", "condition", "len(item.tags) > 1 and array_length(item.tags) > 1"),
    ("order_item", "condition", "item.tags[1] = 'new'"),
    ("order_item", "condition", "item.category = 'shoes' and order.channel = 'web'"),
    ("event", "condition", "event.properties->>'size' = 'M'"),
    ("event", "condition", "json_extract_string(event.properties, '$.size') = 'M'"),
    ("event", "condition", "(event.properties->'items'->>0) = 'x'"),
    ("event", "value", "cast(event.properties->>'points' as integer)"),
    (None, "condition", "balance >= 500 and pending = 0 and orders_count > 2"),
    (None, "condition", "lifetime_spend > 1000 or customer.sms_consent"),
    (None, "condition", "(tier = 'gold')"),
]


@pytest.mark.parametrize(("on", "kind", "text"), GOOD)
def test_good_expressions(on, kind, text):
    checked = check(text, on, kind)
    assert checked.problems == []
    assert checked.sql


# ----------------------------------------------------------------------------- problems

BAD = [
    # (on, kind, text, code, line, col) -- positions counted by hand, 1-based
    ("order", "condition", "order.total >= ", "E401", 1, 13),
    ("order", "condition", "order.total >= 500 and", "E401", 1, 20),
    ("order", "condition", "and order.total > 1", "E401", 1, 1),
    ("order", "condition", "(order.total > 1", "E401", 1, 1),
    ("order", "condition", "order.total > 1)", "E401", 1, 16),
    ("order", "condition", "lower(order.channel = 'x'", "E401", 1, 6),
    ("order", "condition", "", "E401", 1, 1),
    ("order", "condition", "   \n ", "E401", 1, 1),
    ("order", "condition", "-- nothing but a comment", "E401", 1, 1),
    ("order", "condition", "customer.email = 'abc", "E401", 1, 18),
    ("order", "condition", "order.total > 1 500", "E401", 1, 17),
    ("order", "condition", "order.total foo", "E401", 1, 13),
    ("order", "condition", "order.channel in 'web'", "E401", 1, 18),
    ("order", "condition", "order.total between 1", "E401", 1, 13),
    ("order", "condition", "lower() = 'x'", "E401", 1, 1),
    ("order", "value", "- not order.total", "E401", 1, 1),
    ("order", "condition", "order.totl >= 500", "E402", 1, 7),
    ("order", "condition", "total >= 500", "E402", 1, 1),
    ("order", "condition", "order = 1", "E402", 1, 1),
    ("order", "condition", "event.properties.size = 'M'", "E402", 1, 1),
    ("order_item", "condition", "item.colour = 'red'", "E402", 1, 6),
    ("order", "condition", "r >= 4", "E402", 1, 1),
    ("order", "condition", "ordered_since_entry", "E402", 1, 1),
    ("order", "condition", "tier = 'gold' and\n  order.totl > 1", "E402", 2, 9),
    ("order", "condition", "now() > order.ordered_at", "E403", 1, 1),
    ("order", "condition", "current_date > order.ordered_at", "E403", 1, 1),
    ("order", "condition", "order.ordered_at < today()", "E403", 1, 20),
    ("order", "condition", "order.ordered_at < current_timestamp", "E403", 1, 20),
    ("order", "condition", "random() < 0.5", "E403", 1, 1),
    ("order", "condition", "nextval('s') > 1", "E403", 1, 1),
    ("order", "condition", "setseed(0.5) is null", "E403", 1, 1),
    ("order", "condition", "getenv('HOME') = 'x'", "E403", 1, 1),
    ("order", "condition", "order.total > 1 and max(order.total) > 2", "E403", 1, 21),
    ("order", "value", "sum(order.total)", "E403", 1, 1),
    ("order", "value", "count(*)", "E403", 1, 1),
    ("order", "value", "avg(order.total)", "E403", 1, 1),
    ("order", "value", "max(order.total, 100)", "E403", 1, 1),
    ("order", "value", "row_number() over ()", "E403", 1, 1),
    ("order", "value", "sum(order.total) over (partition by order.customer_id)", "E403", 1, 1),
    ("order", "condition", "lower(order.channel) = 'web' and foo(1) = 1", "E403", 1, 34),
    ("order", "condition", "list_transform(item.tags, x -> x) is null", "E403", 1, 1),
    ("order", "condition", "order.total in (select total from orders)", "E404", 1, 17),
    ("order", "condition", "exists(select 1)", "E404", 1, 1),
    ("order", "condition", "select 1", "E404", 1, 1),
    ("order", "condition", "(select max(total) from orders) > 1", "E404", 1, 2),
    ("order", "condition", "order.total > 1; drop table orders", "E405", 1, 16),
    ("order", "condition", "1;", "E405", 1, 2),
    ("order", "condition", "drop table orders", "E405", 1, 1),
    ("order", "condition", "delete from orders", "E405", 1, 1),
    ("order", "condition", "insert into orders values (1)", "E405", 1, 1),
    ("order", "condition", "create table x (a int)", "E405", 1, 1),
    ("order", "condition", "update orders set total = 0", "E405", 1, 1),
    ("order", "condition", "pragma version", "E405", 1, 1),
    ("order", "condition", "attach 'other.db'", "E405", 1, 1),
    ("order", "condition", "copy orders to 'out.csv'", "E405", 1, 1),
    ("order", "condition", "set threads = 1", "E405", 1, 1),
    ("order", "condition", "install httpfs", "E405", 1, 1),
    ("order", "condition", "load httpfs", "E405", 1, 1),
    ("order", "condition", "read_csv('x.csv') is not null", "E406", 1, 1),
    ("order", "condition", "read_csv_auto('x.csv') is not null", "E406", 1, 1),
    ("order", "condition", "read_parquet('x.parquet') is not null", "E406", 1, 1),
    ("order", "condition", "read_json('x.json') is not null", "E406", 1, 1),
    ("order", "condition", "read_text('x') is not null", "E406", 1, 1),
    ("order", "condition", "read_blob('x') is not null", "E406", 1, 1),
    ("order", "condition", "parquet_scan('x') is not null", "E406", 1, 1),
    ("order", "condition", "sniff_csv('x') is not null", "E406", 1, 1),
    ("order", "condition", "len(glob('*')) > 0", "E406", 1, 5),
    ("order", "condition", "order.total > 1 and unnest(item.tags) = 'x'", "E406", 1, 21),
    ("order", "condition", "event.type = 'x'", "E407", 1, 1),
    ("order", "condition", "item.sku = 'x'", "E407", 1, 1),
    ("event", "condition", "order.total > 1", "E407", 1, 1),
    (None, "condition", "tier = 'gold' and order.total > 1", "E407", 1, 19),
    ("order", "condition", "orders.total > 1", "E407", 1, 1),
    ("order", "condition", "member.tier = 'gold'", "E407", 1, 1),
    # E409: DuckDB binds the compiled SQL over the rows' column types
    ("order", "value", "customer.birth_date / customer.birth_date", "E409", 1, 1),
    ("event", "value", "event.properties->>'points'", "E409", 1, 1),
    ("order", "condition", "[1, 2]", "E409", 1, 1),
    ("order", "condition", "date '2026-01-01'", "E409", 1, 1),
    ("order", "value", "- 'x'", "E409", 1, 1),
    ("order", "value", "cast(customer.joined_at as double)", "E409", 1, 1),  # no such cast
    # ... and a text literal compared with a typed column must convert to its type
    ("order", "condition", "order.total > 'abc'", "E409", 1, 15),
    ("order", "condition", "customer.birth_date = '2026-02-30'", "E409", 1, 23),
    ("order_item", "condition", "item.quantity between '1' and 'x'", "E409", 1, 31),
    # ... or set beside one where DuckDB needs one type
    ("order", "value", "coalesce('x', order.total)", "E409", 1, 10),
    ("order", "value", "case when order.total > 1 then order.total else 'none' end", "E409", 1, 49),
    ("order", "condition", "greatest(order.ordered_at, 'soon') > order.ordered_at", "E409", 1, 28),
    ("order", "value", "case order.total when 'abc' then 5 else 0 end", "E409", 1, 23),
    # ... and text where true or false belongs: DuckDB converts each value in the run
    ("order", "condition", "not order.channel", "E409", 1, 5),
    ("order", "condition", "order.total > 1 and order.channel", "E409", 1, 21),
    ("order", "value", "case when order.channel then 5 else 0 end", "E409", 1, 11),
    ("order", "value", "if(lower(order.channel), 5, 0)", "E409", 1, 4),
    # ... and a part with no column that fails whenever it is computed
    ("order", "value", "cast('x' as integer)", "E409", 1, 1),
    ("order", "value", "order.total + 100 // 0", "E409", 1, 15),
    ("order", "condition", "order.total > cast('12,5' as decimal(9, 2))", "E409", 1, 15),
    ("order", "value", "order.total * (2 + cast(1e10 as integer))", "E409", 1, 16),
    ("order", "condition", "order.total > ?", "E408", 1, 15),
    ("order", "condition", "order.total > $1", "E408", 1, 15),
    ("order", "condition", "order.total > $limit", "E408", 1, 15),
    ("order", "condition", "getvariable('limit') < order.total", "E408", 1, 1),
    ("order", "condition", "order.channel collate nocase = 'web'", "E408", 1, 15),
    ("order", "value", "*", "E408", 1, 1),
    ("order", "condition", "order.channel.lower() = 'web'", "E408", 1, 1),
    ("order", "condition", "order.channel = e'web'", "E408", 1, 17),
    ("order", "condition", "order.channel = $$web$$", "E408", 1, 17),
    ("order", "condition", "{'a': 1} is null", "E408", 1, 7),
    ("order", "value", "order.total::int[]", "E408", 1, 1),
    ("order", "value", "cast(order.total as my_type)", "E408", 1, 1),
    ("order", "condition", "order.total > date_trunc('eon', order.ordered_at)", "E408", 1, 26),
    ("order", "condition", "order.total > order.total + interval 2 eons", "E408", 1, 40),
    ("order", "value", "date_part('eon', order.ordered_at)", "E408", 1, 11),
    ("event", "condition", "event.properties->>event.type = 'x'", "E408", 1, 20),
    ("order_item", "condition", "item.tags[1:2] = ['a']", "E408", 1, 1),
    ("order", "condition", "100", "E408", 1, 1),
    ("order", "condition", 1, "E408", 1, 1),
    ("order", "condition", "'yes'", "E408", 1, 1),
    ("order", "condition", "order.total", "E408", 1, 1),
    ("order", "condition", "(order.total * 2)", "E408", 1, 2),
    ("order", "value", "order.total > 100", "E408", 1, 1),
    ("order", "value", "true", "E408", 1, 1),
    ("order", "value", "order.channel", "E408", 1, 1),
    ("order", "value", float("nan"), "E408", 1, 1),
]  # fmt: skip


@pytest.mark.parametrize(("on", "kind", "text", "code", "line", "col"), BAD)
def test_bad_expressions(on, kind, text, code, line, col):
    checked = check(text, on, kind, extras=False)
    assert not checked.ok
    assert checked.sql is None
    first = checked.problems[0]
    assert (first.code, first.line, first.col) == (code, line, col), checked.problems
    assert first.code in CODES
    assert first.message
    assert first.hint or first.code == "E401"


def test_every_expression_code_is_produced():
    produced = {code for *_, code, _line, _col in BAD}
    assert produced == {code for code in CODES if code.startswith("E4")}


@pytest.mark.parametrize(
    ("text", "on", "hint"),
    [
        ("order.totl > 1", "order", "did you mean order.total?"),
        ("total > 1", "order", "did you mean order.total?"),
        ("order.emial = 'x'", "order", "did you mean customer.email?"),
        ("orders.total > 1", "order", "did you mean order?"),
        ("event.type = 'x'", "order", "rows here: order, customer"),
        ("order.total > 1", None, "rows here: customer"),
        ("member.tier = 'gold'", "order", "write `tier`"),
        ("teir = 'gold'", "order", "did you mean tier?"),
        ("r > 3", "order", "rfm segment"),
        ("ordered_since_entry", None, "workflow"),
        ("order.colour = 'red'", "order", "sources.orders.extra"),
        ("current_date > order.ordered_at", "order", "--as-of"),
        ("max(order.total, 1) > 2", "order", "greatest"),
        ("lowr(order.channel) = 'web'", "order", "did you mean lower?"),
        ("order.total in (select 1)", "order", "member view"),
    ],
)
def test_hints(text, on, hint):
    checked = check(text, on)
    assert hint in checked.problems[0].hint, checked.problems


def test_messages_name_the_offending_thing():
    assert "order.totl" in check("order.totl > 1").problems[0].message
    assert "`now`" in check("now() > order.ordered_at").problems[0].message
    assert "`foo`" in check("foo(1) = 1").problems[0].message
    assert "read_csv" in check("read_csv('a.csv') is null").problems[0].message
    assert "`event`" in check("event.type = 'x'").problems[0].message


def test_run_time_failures_are_named_as_written():
    """The parts that would stop the run are quoted from the source, not as DuckDB SQL."""
    text = check("if(lower(order.channel), 5, 0)", kind="value").problems[0]
    assert text.message == (
        "`lower(order.channel)` is text, but the condition of `if` needs true or false"
    )
    assert text.hint.endswith("`lower(order.channel) is not null`")
    cast = check("order.total * (2 + cast('1e10' as integer))", kind="value").problems[0]
    assert cast.message.startswith("`2 + cast('1e10' as integer)` fails whenever it is computed: ")
    division = check("order.total + 100 // 0", kind="value").problems[0]
    assert division.message == (
        "`100 // 0` fails whenever it is computed: Division by zero in expression (100 // 0)"
    )
    beside = check("coalesce(order.total, 'x')", kind="value").problems[0]
    assert beside.message == "'x' cannot be set beside `order.total` (decimal): it is not a number"


def test_every_problem_is_reported_not_only_the_first():
    checked = check("order.totl > 1 and now() > order.ordered_at and event.type = 'x'")
    assert [(p.code, p.col) for p in checked.problems] == [("E402", 7), ("E403", 20), ("E407", 49)]


def test_file_used_as_a_table_inside_a_subquery():
    checked = check("order.total in (select * from 'orders.csv')")
    assert [(p.code, p.col) for p in checked.problems] == [("E404", 17), ("E406", 31)]
    checked = check("exists(select 1 from read_parquet('x.parquet'))")
    assert [(p.code, p.col) for p in checked.problems] == [("E404", 1), ("E406", 22)]


def test_statement_fallback_logs_nothing(caplog):
    with caplog.at_level(logging.DEBUG, logger="sqlglot"):
        assert check("load httpfs").problems[0].code == "E405"
        assert check("call foo()").problems[0].code == "E405"
    assert not [r for r in caplog.records if "Command" in r.getMessage()]


def test_compile_expression_raises_with_the_problems():
    with pytest.raises(ValueError, match=r"1:7 E402 unknown column `order.totl`"):
        compile_expression("order.totl > 1", ctx_for("order"), kind="condition")


def test_problem_to_diagnostic_places_it_in_the_file():
    problem = check("tier = 'gold' and\n  order.totl > 1").problems[0]
    diag = problem.to_diagnostic("program.yaml", "segments[1].when", 12, 11, indent=4)
    assert (diag.code, diag.line, diag.col) == ("E402", 13, 13)
    assert diag.location() == "program.yaml:13:13"
    first_line = check("order.totl > 1").problems[0].to_diagnostic("p.yaml", "", 5, 13)
    assert (first_line.line, first_line.col) == (5, 19)


def test_allowed_function_list_covers_the_documented_names():
    for name in ("lower", "list_contains", "date_diff", "json_extract_string", "greatest", "if"):
        assert name in ALLOWED_FUNCTIONS
    for name in ("max", "sum", "now", "random", "read_csv", "getenv"):
        assert name not in ALLOWED_FUNCTIONS


# ----------------------------------------------------------------------------- DuckDB results


def _table_sql(name: str, columns: dict[str, str]) -> str:
    cols = ", ".join(f'"{col}" {DUCKDB_TYPES[typ]}' for col, typ in columns.items())
    return f'CREATE TABLE "{name}" ({cols})'


@pytest.fixture(scope="module")
def db():
    con = duckdb.connect()
    for source, columns in SOURCE_COLUMNS.items():
        con.execute(_table_sql(source, {c: t for c, (t, _req) in columns.items()}))
    member = {"customer_id": "varchar", **MEMBER_COLUMNS, **RFM_COLUMNS, **WORKFLOW_COLUMNS}
    con.execute(_table_sql("member_view", member))
    con.execute(
        """
        INSERT INTO customers (customer_id, email, first_name, birth_date, joined_at,
                               email_consent, locale) VALUES
            ('c1', 'ann@shop.example', 'Ann', '1990-01-05', '2025-01-01 10:00', true, 'pl-PL'),
            ('c2', NULL, 'Bob', NULL, '2025-06-01 09:00', NULL, NULL);
        INSERT INTO orders (order_id, customer_id, ordered_at, total, channel) VALUES
            ('o1', 'c1', '2026-01-05 10:00', 500.00, 'web'),
            ('o2', 'c1', '2026-01-06 23:30', 499.99, 'Web'),
            ('o3', 'c2', '2026-01-10 08:00', 10.00, NULL);
        INSERT INTO order_items (order_id, sku, quantity, unit_price, category, tags) VALUES
            ('o1', 's1', 2, 10.50, 'shoes', ['new', 'sale']),
            ('o1', 's2', 1, 99.99, NULL, NULL),
            ('o2', 's3', 3, 5.00, 'bags', ['old']);
        INSERT INTO events (event_id, customer_id, type, occurred_at, properties) VALUES
            ('e1', 'c1', 'email_open', '2026-01-05 12:00',
             '{"size": "M", "a.b": "key", "a": {"b": "path"}, "points": "7"}'),
            ('e2', 'c2', 'unsubscribe', '2026-01-06 12:00', NULL);
        INSERT INTO member_view VALUES
            ('c1', 'gold', 100, 0, 120, 2, 999.99, 5, 4, 5, true, 3),
            ('c2', 'silver', 50, 10, 30, 1, 10.00, 1, 1, 1, false, 10);
        """
    )
    yield con
    con.close()


_FROM = {
    "order": 'FROM orders AS "order" '
    'JOIN customers AS "customer" ON "customer".customer_id = "order".customer_id '
    'JOIN member_view AS "member" ON "member".customer_id = "order".customer_id '
    'ORDER BY "order".order_id',
    "order_item": 'FROM order_items AS "item" '
    'JOIN orders AS "order" ON "order".order_id = "item".order_id '
    'JOIN customers AS "customer" ON "customer".customer_id = "order".customer_id '
    'JOIN member_view AS "member" ON "member".customer_id = "order".customer_id '
    'ORDER BY "item".order_id, "item".sku',
    "event": 'FROM events AS "event" '
    'JOIN customers AS "customer" ON "customer".customer_id = "event".customer_id '
    'JOIN member_view AS "member" ON "member".customer_id = "event".customer_id '
    'ORDER BY "event".event_id',
    None: 'FROM customers AS "customer" '
    'JOIN member_view AS "member" ON "member".customer_id = "customer".customer_id '
    'ORDER BY "customer".customer_id',
}


def evaluate(db, text, on="order", kind="condition", **kw):
    ctx = ExprContext.for_rule(on, {}, rfm=True, workflow=on is None, **kw)
    sql = compile_expression(text, ctx, kind=kind)
    return [row[0] for row in db.execute(f"SELECT {sql} {_FROM[on]}").fetchall()]


@pytest.mark.parametrize(
    ("text", "on", "kind", "expected"),
    [
        # money compares as exact decimals (SPEC 9.17)
        ("order.total >= 500", "order", "condition", [True, False, False]),
        ("order.total > 499.99", "order", "condition", [True, False, False]),
        ("order.total - 499.99 = 0.01", "order", "condition", [True, False, False]),
        ("order.total", "order", "value", [Decimal("500.00"), Decimal("499.99"), Decimal("10.00")]),
        # string comparison is case-sensitive; a missing value makes a condition false
        ("order.channel = 'web'", "order", "condition", [True, False, False]),
        ("order.channel != 'web'", "order", "condition", [False, True, False]),
        ("not (order.channel = 'web')", "order", "condition", [False, True, False]),
        ("lower(order.channel) = 'web'", "order", "condition", [True, True, False]),
        ("order.channel is null", "order", "condition", [False, False, True]),
        ("coalesce(order.channel, 'none') = 'none'", "order", "condition", [False, False, True]),
        ("if(order.total >= 500, 100, 10)", "order", "value", [100, 10, 10]),
        ("isodow(order.ordered_at)", "order", "value", [1, 2, 6]),
        ("date_diff('day', customer.joined_at, order.ordered_at)", "order", "value",
         [369, 370, 223]),
        ("month(customer.birth_date) = month(order.ordered_at)", "order", "condition",
         [True, True, False]),
        ("order.ordered_at < customer.joined_at + interval 370 day", "order", "condition",
         [True, False, True]),
        ("date_trunc('month', order.ordered_at) = date '2026-01-01'", "order", "condition",
         [True, True, True]),
        ("order.ordered_at > timestamp '2026-01-05 12:00'", "order", "condition",
         [False, True, True]),
        ("split_part(customer.email, '@', 2) = 'shop.example'", "order", "condition",
         [True, True, False]),
        # lists
        ("list_contains(item.tags, 'new')", "order_item", "condition", [True, False, False]),
        ("list_has_any(item.tags, ['old', 'x'])", "order_item", "condition", [False, False, True]),
        ("list_has_all(item.tags, ['new', 'sale'])", "order_item", "condition",
         [True, False, False]),
        ("item.tags[1] = 'new'", "order_item", "condition", [True, False, False]),
        ("len(item.tags)", "order_item", "value", [2, None, 1]),
        ("item.unit_price * item.quantity", "order_item", "value",
         [Decimal("21.00"), Decimal("99.99"), Decimal("15.00")]),
        ("item.category = 'shoes' and order.channel = 'web'", "order_item", "condition",
         [True, False, False]),
        # json: a key without `$` is one key, `$.a.b` is a path
        ("event.properties->>'size' = 'M'", "event", "condition", [True, False]),
        ("event.properties->>'a.b' = 'key'", "event", "condition", [True, False]),
        ("event.properties->>'$.a.b' = 'path'", "event", "condition", [True, False]),
        ("json_extract_string(event.properties, 'size') = 'M'", "event", "condition",
         [True, False]),
        ("cast(event.properties->>'points' as integer) * 2", "event", "value", [14, None]),
        # member view, rfm and workflow names
        ("tier in ('gold','silver') and days_since_last_order > 90", None, "condition",
         [True, False]),
        ("r >= 4 and f >= 4 and m >= 4", None, "condition", [True, False]),
        ("not ordered_since_entry", None, "condition", [False, True]),
        ("customer.email_consent", None, "condition", [True, False]),
        ("balance + pending", None, "value", [100, 60]),
        ("true", None, "condition", [True, True]),
    ],
)  # fmt: skip
def test_compiled_sql_runs_in_duckdb(db, text, on, kind, expected):
    assert evaluate(db, text, on, kind) == expected


# ----------------------------------------------------------------------------- properties

_SQLISH = st.sampled_from(
    list("()'\";,.*+-/<>=!|&@$?:[]{}\\ \n\t019_%^~#")
    + ["order", "item.tags", "select", "and", "or", "not", "in", "case", "when", "then", "end"]
    + ["lower(", "max(", "->>", "::", "interval", "from", "read_csv(", "tier", "cast(", " as "]
    + ["between", "like", "exists", "over", "--", "/*", "*/", "e'", "$$", "is null", "'day'"]
)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    st.one_of(st.text(max_size=60), st.lists(_SQLISH, max_size=20).map("".join)),
    st.sampled_from(["value", "condition"]),
    st.sampled_from(["order", "order_item", "event", None]),
)
def test_check_never_raises(text, kind, on):
    checked = check_expression(text, ExprContext.for_rule(on, {}), kind=kind)
    assert checked.ok == (checked.sql is not None)
    assert all("internal error" not in p.message for p in checked.problems)
    lines = text.split("\n")
    for problem in checked.problems:
        assert problem.code in CODES
        assert 1 <= problem.line <= len(lines)
        assert 1 <= problem.col <= len(lines[problem.line - 1]) + 1


# Well-formed expressions over the test tables; row names are quoted so that DuckDB can also
# run the text as written, which the property below compares with the compiled SQL.
_NUM_ATOMS = ['"order".total', '"item".quantity', '"item".unit_price', "balance", "0", "1", "2.5"]
_TEXT_ATOMS = ['"order".channel', '"customer".email', '"item".category', "tier", "'web'", "'a@b'"]


def _call(name: str, *args: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(*args).map(lambda a: f"{name}({', '.join(a)})")


def _infix(op: str, a: st.SearchStrategy[str], b: st.SearchStrategy[str]):
    return st.tuples(a, b).map(lambda t: f"({t[0]} {op} {t[1]})")


num = st.deferred(
    lambda: st.one_of(
        st.sampled_from(_NUM_ATOMS + ["null"]),
        _infix("+", num, num),
        _infix("-", num, num),
        _infix("*", num, num),
        num.map(lambda a: f"-({a})"),
        _call("abs", num),
        _call("floor", num),
        _call("ceil", num),
        st.tuples(num).map(lambda a: f"round({a[0]}, 1)"),
        _call("greatest", num, num),
        _call("least", num, num),
        _call("coalesce", num, num),
        _call("nullif", num, num),
        _call("length", text),
        _call("if", cond, num, num),
        st.tuples(cond, num, num).map(lambda t: f"case when {t[0]} then {t[1]} else {t[2]} end"),
        st.just('isodow("order".ordered_at)'),
        st.just('date_diff(\'day\', "customer".joined_at, "order".ordered_at)'),
        st.just('len("item".tags)'),
        text.map(lambda a: f"try_cast({a} as integer)"),
    )
)
text = st.deferred(
    lambda: st.one_of(
        st.sampled_from(_TEXT_ATOMS + ["null"]),
        _call("lower", text),
        _call("upper", text),
        _call("trim", text),
        _infix("||", text, text),
        _call("concat", text, text),
        st.tuples(text).map(lambda a: f"substr({a[0]}, 1, 2)"),
        st.tuples(text).map(lambda a: f"split_part({a[0]}, '@', 1)"),
        st.tuples(text).map(lambda a: f"replace({a[0]}, 'w', 'v')"),
        st.just('"item".tags[1]'),
        num.map(lambda a: f"cast({a} as varchar)"),
    )
)
cond = st.deferred(
    lambda: st.one_of(
        st.sampled_from(["true", "false", '"customer".email_consent']),
        st.tuples(num, st.sampled_from(["=", "<>", "<", "<=", ">", ">="]), num).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        st.tuples(text, st.sampled_from(["=", "!=", "<"]), text).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})"
        ),
        _infix("and", cond, cond),
        _infix("or", cond, cond),
        cond.map(lambda a: f"not ({a})"),
        text.map(lambda a: f"({a} like 'w%')"),
        text.map(lambda a: f"({a} in ('web', 'gold', 'a@b'))"),
        st.tuples(num, num, num).map(lambda t: f"({t[0]} between {t[1]} and {t[2]})"),
        text.map(lambda a: f"({a} is null)"),
        _call("starts_with", text, text),
        _call("list_contains", st.just('"item".tags'), text),
        st.just("list_has_any(\"item\".tags, ['new', 'old'])"),
    )
)


@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.one_of(num.map(lambda t: ("value", t)), cond.map(lambda t: ("condition", t))))
def test_compiled_sql_means_what_the_text_means(db, case):
    kind, expr_text = case
    # DuckDB's planner is slow on deeply nested split_part; that is not what is tested here
    assume(expr_text.count("split_part") <= 4)
    checked = check_expression(expr_text, ExprContext.for_rule("order_item", {}), kind=kind)
    # Nesting deeper than MAX_FUNCTION_NESTING is refused on purpose (tested below).
    assume(not any("nested more than" in p.message for p in checked.problems))
    assert checked.ok, (expr_text, checked.problems)
    try:
        want = db.execute(f"SELECT {expr_text} {_FROM['order_item']}").fetchall()
    except duckdb.Error:  # e.g. a generated cast that fails on the data: compiled fails too
        with pytest.raises(duckdb.Error):
            db.execute(f"SELECT {checked.sql} {_FROM['order_item']}").fetchall()
        return
    got = db.execute(f"SELECT {checked.sql} {_FROM['order_item']}").fetchall()
    if kind == "condition":
        want = [(bool(value),) for (value,) in want]  # NULL counts as false
    assert got == want, (expr_text, checked.sql)


def test_deeply_nested_function_calls_are_refused():
    ctx = ExprContext.for_rule("order", {})
    ok = "order.channel"
    for _ in range(8):
        ok = f"lower({ok})"
    assert check_expression(f"{ok} = 'web'", ctx, kind="condition").ok
    checked = check_expression(f"lower({ok}) = 'web'", ctx, kind="condition")
    assert [(p.code, p.line, p.col) for p in checked.problems] == [("E408", 1, 1)]
    assert "nested more than 8 deep" in checked.problems[0].message


def test_a_long_and_or_condition_is_not_nesting():
    """Twelve comparisons joined by `and` and `or` call no function: they are allowed, while
    the same number of nested calls is not."""
    ctx = ExprContext.for_rule("order", {})
    parts = [f"order.total > {n}" for n in range(6)] + [f"order.channel = 'c{n}'" for n in range(6)]
    text = " and ".join(parts[:6]) + " or " + " or ".join(parts[6:])
    checked = check_expression(text, ctx, kind="condition")
    assert checked.problems == []


def test_two_comparison_operators_in_a_row():
    ctx = ExprContext.for_rule("order", {})
    checked = check_expression("order.total > > 100", ctx, kind="condition")
    # the second '>' is the 15th character
    assert [(p.code, p.line, p.col) for p in checked.problems] == [("E401", 1, 15)]
