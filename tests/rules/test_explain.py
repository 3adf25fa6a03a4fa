"""`audsync explain --config F --audience NAME`: a rule audience's compiled SQL for its database's
dialect, with its parameters apart; exit 2 for an unknown audience or one without a rule."""

from __future__ import annotations

import textwrap
from datetime import datetime, timezone
from pathlib import Path

import pytest

from audsync.cli import main
from audsync.config import load
from audsync.sources.rule import explain

AS_OF = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
HOSTILE = "x'); DROP TABLE events; --"
# An address where no PostgreSQL answers: explain needs no connection for the "audsync" layout, and
# says so when a warehouse's tables cannot be inspected.
NOWHERE_PG = "postgresql+psycopg://nobody@127.0.0.1:1/nothing?connect_timeout=1"


def write(tmp_path: Path, state_url: str, audiences: str, events: str = "") -> str:
    path = tmp_path / "audsync.toml"
    path.write_text(f'[state]\nurl = "{state_url}"\n{textwrap.dedent(events)}\n{textwrap.dedent(audiences)}')
    return str(path)


BUYERS = '''
[[audiences]]
name = "Frequent Buyers"
source = { type = "rule", rule = "event('Order Completed').where(property('total') > 100).within(30 days).count() >= 3" }

[[audiences]]
name = "Newsletter"
source = { type = "file", path = "newsletter.csv" }
'''


@pytest.mark.parametrize(("state_url", "dialect"), [("sqlite:///state.db", "sqlite"), (NOWHERE_PG, "postgresql")])
def test_explain_prints_the_sql_for_the_state_databases_dialect_with_parameters_apart(tmp_path, capsys, state_url,
                                                                                     dialect):
    config = write(tmp_path, state_url, BUYERS)
    assert main(["explain", "--config", config, "--audience", "Frequent Buyers"]) == 0
    out = capsys.readouterr().out
    head, _, parameters = out.partition("-- parameters:\n")
    assert head.startswith('-- audience "Frequent Buyers" (key frequent_buyers, audience)\n'
                           "-- rule: event('Order Completed').where(property('total') > 100).within(30 days)"
                           ".count() >= 3\n"
                           f"-- events: layout audsync, in the state database ({dialect})\n")
    assert "SELECT" in head and "events" in head and head.rstrip().endswith(";")
    # Values of the rule are parameters, listed readably, never in the SQL text.
    assert "Order Completed" not in head.split("-- events:")[1]
    assert '= "Order Completed"' in parameters and "= 100" in parameters
    assert all(line.startswith("--   ") and " = " in line for line in parameters.splitlines())
    # Each dialect's own parameter style.
    assert ("%(" in head) if dialect == "postgresql" else ("?" in head)
    assert not (tmp_path / "state.db").exists()  # explain created no database


def test_hostile_names_in_a_rule_stay_out_of_the_sql_text(tmp_path):
    escaped = HOSTILE.replace("'", "\\'")  # the rule language's escape of a quote
    rule = f"event('{escaped}').where(property('{escaped}') = 1).count() > 0"
    toml_literal = "'''" + rule + "'''"  # TOML's literal string: the backslashes stay as written
    config = load(write(tmp_path, "sqlite:///state.db",
                        f'[[audiences]]\nname = "Hostile"\nsource = {{ type = "rule", rule = {toml_literal} }}\n'),
                  environ={})
    explained = explain(config, "Hostile", AS_OF)
    assert "DROP TABLE" not in explained.sql
    assert HOSTILE in explained.parameters.values()


def test_explain_of_a_warehouse_rule_it_cannot_reach_says_its_tables_were_not_inspected(tmp_path):
    config = load(write(tmp_path, "sqlite:///state.db", '''
        [[audiences]]
        name = "Frequent Buyers"
        source = { type = "rule", rule = "event('Order Completed').within(30 days).count() >= 3" }
    ''', events=f'[events]\nlayout = "segment"\nurl = "{NOWHERE_PG}"\nschema = "segment_prod"\n'), environ={})
    text = explain(config, "Frequent Buyers", AS_OF).render()
    assert "-- events: layout segment, schema segment_prod, in the warehouse (postgresql)\n" in text
    assert "-- tables not inspected (cannot connect to postgresql+psycopg://nobody@127.0.0.1:1/nothing" in text
    assert "segment_prod" in text.split("-- as of")[1]
    assert "-- as of 2026-11-20T12:00:00Z: windows are measured back from this instant" in text


def test_explain_of_a_sqlite_warehouse_that_does_not_exist_creates_no_file(tmp_path):
    config = load(write(tmp_path, "sqlite:///state.db", '''
        [[audiences]]
        name = "Buyers"
        source = { type = "rule", rule = "event('Order Completed').count() >= 1" }
    ''', events='[events]\nlayout = "segment"\nurl = "sqlite:///warehouse.db"\n'), environ={})
    text = explain(config, "Buyers", AS_OF).render()
    assert f"-- tables not inspected (no SQLite database file {tmp_path / 'warehouse.db'})" in text
    assert not (tmp_path / "warehouse.db").exists()


def test_explain_compiles_the_rules_an_audience_reads_into_its_query(tmp_path):
    config = load(write(tmp_path, "sqlite:///state.db", BUYERS + '''
        [[audiences]]
        name = "Subscribed Buyers"
        source = { type = "rule", rule = "trait('frequent_buyers') AND trait('newsletter')" }
    '''), environ={})
    explained = explain(config, "Subscribed Buyers", AS_OF)
    # The other rule's own query, and the file audience's synced members in the state database.
    assert "audience_frequent_buyers" in explained.sql and "members_of_newsletter" in explained.sql
    assert "Order Completed" in explained.parameters.values()


def test_explain_of_a_non_rule_or_unknown_audience_exits_2_saying_why(tmp_path, capsys):
    config = write(tmp_path, "sqlite:///state.db", BUYERS)
    assert main(["explain", "--config", config, "--audience", "Newsletter"]) == 2
    assert ('audience "Newsletter" has a file source, not a rule (source = { type = "rule", rule = "..." }): '
            "only a rule is compiled to SQL") in capsys.readouterr().err
    assert main(["explain", "--config", config, "--audience", "Nobody"]) == 2
    assert "no audience named 'Nobody' (known: Frequent Buyers, Newsletter)" in capsys.readouterr().err
    assert capsys.readouterr().out == ""


def test_explain_help_gives_its_exit_codes_and_an_example(capsys):
    with pytest.raises(SystemExit) as done:
        main(["explain", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "  2   something to fix: config (a rule with a mistake), an unknown audience" in text
    assert '  audsync explain --config audsync.toml --audience "Frequent Big Spenders"' in text
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--dry-run --as-of 2026-12-01T00:00:00Z" in capsys.readouterr().out


def test_a_warning_of_a_rule_read_through_others_names_the_audience_and_the_way(tmp_path):
    config = load(write(tmp_path, "sqlite:///state.db", '''
        [[audiences]]
        name = "Top"
        source = { type = "rule", rule = "trait('middle')" }
        [[audiences]]
        name = "Middle"
        source = { type = "rule", rule = "trait('base') AND event('Login').count() > 1" }
        [[audiences]]
        name = "Base"
        source = { type = "rule", rule = "event('Order Refunded').count() >= 1" }
    ''', events=f'[events]\nlayout = "segment"\nurl = "sqlite:///{tmp_path / "warehouse.db"}"\n'), environ={})
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'warehouse.db'}")
    with engine.begin() as conn:  # a warehouse holding logins only
        conn.exec_driver_sql("CREATE TABLE login (id TEXT, user_id TEXT, anonymous_id TEXT, timestamp TIMESTAMP)")
    engine.dispose()
    warnings = explain(config, "Top", AS_OF).warnings
    assert [w for w in warnings if "Order Refunded" in w] == [
        "audience \"Top\": event 'Order Refunded' has no table in the database: counted as 0 occurrences "
        "(in the rule of audience \"Base\", which this rule reads through \"Middle\")"]
