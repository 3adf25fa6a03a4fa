"""The SQL a rule compiles to: names and values from the rule never become SQL text (hostile event,
property, context and trait names run for real and find the right rows), the query compiles to the
warehouses' own dialects (Snowflake, BigQuery, Redshift: compile only, no connection), and the shapes
the compiler promises (one statement, no rows in Python) hold."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from audsync.errors import ConfigError
from audsync.rules import parse_rule
from audsync.rules.compile import Warehouse, compile_rule
from audsync.rules.layouts import rudderstack_event_table, rudderstack_snake, segment_snake

from .conftest import AS_OF, COMBINATIONS
from .test_compile_cases import _members_table, identify, track

HOSTILE = [
    '"; DROP TABLE events; --',
    "'; DROP TABLE events; --",
    'it\'s "quoted"',
    "semi;colon",
    "back\\slash",
    "$.path[0]",
    "dot.ted",
    "Ünïcödé 🎉",
    "~/slash",
]


def q(text: str) -> str:
    """`text` as a string literal of the rule language."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


# In the warehouse layouts names are snake_cased, so two hostile names may share a column or a
# table; each name gets its own user and the events differ in a plain property too.
HOSTILE_EVENTS = [
    ev
    for i, name in enumerate(HOSTILE)
    for ev in (
        track(name, f"h{i}", ago=1, **{name: f"v{i} {name}", name + " n": i, "n": i}),
        identify(f"h{i}", ago=2, **{name: f"t{i} {name}"}),
    )
]


@pytest.mark.parametrize("database,layout", COMBINATIONS)
def test_hostile_names_are_parameters_and_find_their_rows(warehouses, database, layout):
    engine, warehouse = warehouses.get(database, layout, "hostile", HOSTILE_EVENTS)
    for i, name in enumerate(HOSTILE):
        if layout != "audsync":
            snake = segment_snake if layout == "segment" else rudderstack_snake
            table = segment_snake(name) if layout == "segment" else rudderstack_event_table(name)
            if not snake(name) or not table or table.startswith("_"):
                continue  # a name of symbols only has no column in a warehouse
        rules = [
            f"event({q(name)}).where(property({q(name)}) = {q(f'v{i} {name}')} AND property('n') = {i})"
            ".count() >= 1",
            f"trait({q(name)}) = {q(f't{i} {name}')}",
            f"event({q(name)}).where(property({q(name + ' n')}) >= {i} AND NOT (property({q(name + ' n')}) > {i}))"
            ".count() = 1",
        ]
        for rule in rules:
            compiled = compile_rule(parse_rule(rule, "audience"), kind="audience", warehouse=warehouse,
                                    as_of=AS_OF)
            sql = str(compiled.query.compile(engine))
            assert "DROP" not in sql and name not in sql
            with engine.connect() as conn:
                got = {r.user_id for r in conn.execute(compiled.query)}
            assert got == {f"h{i}"}, (rule, got)
    with engine.connect() as conn:
        # the tables are all still there
        assert sa.inspect(conn).get_table_names(schema=warehouse.schema)


def test_hostile_context_path_reads_nested_keys_on_sqlite(tmp_path):
    from .conftest import load

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'e.db'}")
    name = '"; DROP TABLE events; --'
    events = [{"type": "track", "event": "E", "userId": "u1", "ago": 1,
               "context": {name: {'a"b': "yes"}}},
              {"type": "track", "event": "E", "userId": "u2", "ago": 1, "context": {name: {'a"b': "no"}}}]
    warehouse = load(engine, "audsync", None, events)
    rule = f"event('E').where(context({q(name + '.a' + chr(34) + 'b')}) = 'yes').count() >= 1"
    compiled = compile_rule(parse_rule(rule, "audience"), kind="audience", warehouse=warehouse, as_of=AS_OF)
    with engine.connect() as conn:
        assert {r.user_id for r in conn.execute(compiled.query)} == {"u1"}


# --- compile-only dialects ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["snowflake", "bigquery", "redshift"])
def test_every_case_compiles_to_the_warehouse_dialect_and_parses_there(name):
    # In a child process: see dialect_check.py for why.
    script = Path(__file__).with_name("dialect_check.py")
    done = subprocess.run([sys.executable, str(script), name], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    if "missing" in result:
        if os.environ.get("CI") == "true":  # the test extra installs them: CI must not pass by skipping
            pytest.fail(f"CI=true but the {name} SQLAlchemy dialect is not installed ({result['missing']})")
        pytest.skip(f"the {name} SQLAlchemy dialect is not installed ({result['missing']})")
    assert result["checked"] >= 40
    assert result["failures"] == []


@pytest.mark.parametrize("dialect,distinct_on", [("postgresql", True), ("duckdb", True), ("sqlite", False)])
def test_the_first_row_per_key_is_distinct_on_where_the_database_has_it(dialect, distinct_on):
    # The latest link per anonymous id and the mode per profile: one sort and a Unique on PostgreSQL
    # and DuckDB, row_number() = 1 elsewhere. (The answers are alike: test_conformance runs them all.)
    from duckdb_engine import Dialect as DuckDBDialect
    from sqlalchemy.dialects import postgresql, sqlite

    target = {"postgresql": postgresql.dialect, "duckdb": DuckDBDialect, "sqlite": sqlite.dialect}[dialect]()
    compiled = compile_rule(parse_rule("event('Product Viewed').mode(property('category'), 2)", "computed_trait"),
                            kind="computed_trait", warehouse=Warehouse("segment", "seg"), as_of=AS_OF)
    sql = str(compiled.query.compile(dialect=target))
    assert sql.count("DISTINCT ON") == (2 if distinct_on else 0)
    assert sql.count("row_number()") == (0 if distinct_on else 2)


# --- promises of the interface ----------------------------------------------------------------------

def test_a_missing_event_table_is_zero_occurrences_with_a_warning_naming_it():
    compiled = compile_rule(parse_rule("event('Foo Bar').count() >= 1", "audience"), kind="audience",
                            warehouse=Warehouse("segment", "segment_prod", frozenset({"tracks"})), as_of=AS_OF)
    assert compiled.warnings == ("event 'Foo Bar' has no table in segment_prod: counted as 0 occurrences",)


def test_membership_compared_with_anything_but_true_or_false_is_a_config_error():
    with pytest.raises(ConfigError, match="membership of audience 'vip'"):
        compile_rule(parse_rule("trait('vip') > 3", "audience"), kind="audience",
                     warehouse=Warehouse("audsync"), as_of=AS_OF,
                     audiences={"vip": _members_table(["u1"])})


def test_segment_snake_case_follows_go_snakecase_examples():
    examples = {"sample text": "sample_text", "sampleText": "sample_text", "sample 2 Text": "sample_2_text",
                "SAMPLE 2 TEXT": "sample_2_text", "___$$Base64Encode": "base64_encode",
                "FOO:BAR$BAZ": "foo_bar_baz", "something.com": "something_com",
                "•¶§ƒ˚foo˙∆˚¬": "foo", "Order Completed": "order_completed", "already_snake": "already_snake"}
    assert {k: segment_snake(k) for k in examples} == examples


def test_rudderstack_names_follow_its_rules():
    assert rudderstack_snake("walk500Miles") == "walk500_miles"
    assert rudderstack_snake("isISO8601") == "is_iso8601"
    assert rudderstack_snake("Order Completed") == "order_completed"
    assert rudderstack_snake("1st Purchase") == "_1st_purchase"
    assert rudderstack_event_table("Tracks") == "_tracks"


@pytest.mark.parametrize("database", ["sqlite", "postgresql", "duckdb"])
def test_a_property_without_a_column_reads_as_null_with_a_warning(warehouses, database):
    from dataclasses import replace

    from .test_compile_cases import EVENT_SETS

    engine, warehouse = warehouses.get(database, "segment", "shop", EVENT_SETS["shop"])
    if database == "sqlite":
        inspector = sa.inspect(engine)
        columns = {name: frozenset(c["name"] for c in inspector.get_columns(name)) for name in warehouse.tables}
    else:
        # information_schema: duckdb-engine's inspector does not read columns under SQLAlchemy 2.1
        with engine.connect() as conn:
            found = conn.execute(sa.text("SELECT table_name, column_name FROM information_schema.columns "
                                         "WHERE table_schema = :schema"), {"schema": warehouse.schema}).all()
        columns = {}
        for table, column in found:
            columns.setdefault(table, set()).add(column)
        columns = {k: frozenset(v) for k, v in columns.items()}
    warehouse = replace(warehouse, columns=columns)
    rules = {
        "event('Order Completed').where(property('coupon').is_null()).within(30 days).count() >= 1":
            {"u1", "u2", "u4", "u10", "u12"},
        "event('Order Completed').where(property('coupon') = 'X').count() >= 1": set(),
        "trait('favourite_colour').is_set()": set(),
    }
    for rule, expected in rules.items():
        compiled = compile_rule(parse_rule(rule, "audience"), kind="audience", warehouse=warehouse, as_of=AS_OF)
        with engine.connect() as conn:
            assert {r.user_id for r in conn.execute(compiled.query)} == expected, rule
        assert len(compiled.warnings) == 1 and "has no column" in compiled.warnings[0], compiled.warnings
    compiled = compile_rule(parse_rule("event('Order Completed').where(property('coupon') = 'X').count() >= 1",
                                       "audience"), kind="audience", warehouse=warehouse, as_of=AS_OF)
    assert compiled.warnings[0] == (f"property 'coupon' has no column coupon in "
                                    f"{warehouse.schema + '.' if warehouse.schema else ''}order_completed: read as null")


@pytest.mark.parametrize("database", ["sqlite", "postgresql", "duckdb"])
def test_number_columns_are_read_as_they_are_and_text_columns_only_when_numeric(warehouses, database):
    from audsync.sources.rule import inspected_tables

    # size's first value is text, so a warehouse makes its column text (D-WS); price is a number column.
    events = [track("Shirt Bought", "ann", size="M", price=12.5), track("Shirt Bought", "bo", size=10, price=8)]
    engine, warehouse = warehouses.get(database, "segment", "shirts", events)
    with engine.connect() as conn:
        names, columns, numeric = inspected_tables(conn)(warehouse.schema)
    assert "price" in numeric["shirt_bought"] and "size" not in numeric["shirt_bought"]
    warehouse = Warehouse("segment", warehouse.schema, names, columns, numeric)
    rules = {"event('Shirt Bought').where(property('price') > 10).count() >= 1": {"ann"},
             "event('Shirt Bought').where(property('size') > 5).count() >= 1": {"bo"},
             "event('Shirt Bought').where(property('size') < 5).count() >= 1": set()}
    for rule, expected in rules.items():
        compiled = compile_rule(parse_rule(rule, "audience"), kind="audience", warehouse=warehouse, as_of=AS_OF)
        with engine.connect() as conn:
            assert {r.user_id for r in conn.execute(compiled.query)} == expected, rule
