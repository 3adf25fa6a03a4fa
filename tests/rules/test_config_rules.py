"""Rule audiences in the config (DESIGN.md section 7): [events], rule sources parsed at load,
include_anonymous, references to other audiences, cycles and the order audiences run in."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from audsync.config import EventsSettings, RuleSource, load
from audsync.errors import ConfigError
from audsync.rules import RuleError
from audsync.rules.tree import Compare, Op


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "audsync.toml"
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    return str(info.value)


def audience(name: str, rule: str, *, kind: str = "audience", extra: str = "") -> str:
    return f'[[audiences]]\nname = "{name}"\nkind = "{kind}"\n{extra}source = {{ type = "rule", rule = "{rule}" }}\n'


def test_a_rule_is_parsed_when_the_config_loads_into_its_tree(tmp_path):
    cfg = load(write(tmp_path, audience("Frequent Buyers", "event('Order Completed').within(30 days).count() >= 3")),
               environ={})
    source = cfg.audiences[0].source
    assert isinstance(source, RuleSource)
    assert source.rule == "event('Order Completed').within(30 days).count() >= 3"
    assert isinstance(source.tree, Compare) and source.tree.op is Op.GE
    # No [events]: the events store of `audsync serve`, in the state database.
    assert (source.layout, source.url, source.schema) == ("audsync", cfg.state.url, None)
    assert cfg.events == EventsSettings()
    assert cfg.audiences[0].include_anonymous is False


def test_a_rule_with_a_mistake_is_an_error_naming_the_audience_with_a_caret_under_the_column(tmp_path):
    path = write(tmp_path, audience("Frequent Buyers", "event('Order Completed').cuont() >= 3"))
    with pytest.raises(RuleError) as info:
        load(path, environ={})
    assert str(info.value) == (
        f'{path}: audience "Frequent Buyers": source.rule, column 26: unknown function `cuont`; '
        "did you mean `count`?\n"
        "    event('Order Completed').cuont() >= 3\n"
        "                             ^")
    assert info.value.exit_code == 2


def test_an_audience_rule_must_end_in_a_condition(tmp_path):
    message = error_of(tmp_path, audience("Buyers", "event('Order Completed').count()"))
    assert message.startswith(f'{tmp_path / "audsync.toml"}: audience "Buyers": source.rule, column 33: '
                              "an audience rule must end in a condition")


def test_a_computed_trait_rule_must_end_in_a_value(tmp_path):
    message = error_of(tmp_path, audience("Orders", "event('Order Completed').count() > 1", kind="computed_trait"))
    assert 'audience "Orders": source.rule, column 1: a computed trait rule must end in a value' in message


def test_an_empty_or_missing_rule_is_an_error(tmp_path):
    assert 'audience "Buyers": source.rule, column 1: the rule is empty' in error_of(tmp_path, audience("Buyers", " "))
    message = error_of(tmp_path, '[[audiences]]\nname = "Buyers"\nsource = { type = "rule" }\n')
    assert "audiences[0].source.rule: a rule source needs a rule" in message


def test_a_rule_source_key_with_a_typo_is_an_error_with_a_suggestion(tmp_path):
    message = error_of(tmp_path, '[[audiences]]\nname = "Buyers"\n'
                                 'source = { type = "rule", rul = "event(\'A\').count() > 1" }\n')
    assert message.endswith("audiences[0].source.rul: unknown setting (did you mean rule?)")


def test_an_unknown_events_key_is_an_error_with_a_suggestion(tmp_path):
    message = error_of(tmp_path, '[events]\nlayot = "segment"\n')
    assert message == f"{tmp_path / 'audsync.toml'}: events.layot: unknown setting (did you mean layout?)"


def test_an_unknown_layout_is_an_error_with_a_suggestion(tmp_path):
    assert "events.layout: 'segmnet' must be \"audsync\", \"segment\" or \"rudderstack\" (did you mean 'segment'?)" \
        in error_of(tmp_path, '[events]\nlayout = "segmnet"\n')
    message = error_of(tmp_path, audience("Buyers", "event('A').count() > 1").replace(
        'type = "rule",', 'type = "rule", layout = "rudderstak",'))
    assert "audiences[0].source.layout: 'rudderstak' must be" in message


@pytest.mark.parametrize("key", ["url", "schema"])
def test_the_audsync_layout_with_a_url_or_schema_is_an_error(tmp_path, key):
    message = error_of(tmp_path, f'[events]\nlayout = "audsync"\n{key} = "sqlite:///w.db"\n')
    assert message.startswith(f"{tmp_path / 'audsync.toml'}: events.{key}: must be empty with layout = \"audsync\", "
                              "which reads the events `audsync serve` stored in the state database")
    message = error_of(tmp_path, audience("Buyers", "event('A').count() > 1").replace(
        'type = "rule",', f'type = "rule", {key} = "x",'))
    assert f"audiences[0].source.{key}: must be empty with layout = \"audsync\"" in message


def test_a_warehouse_layout_needs_a_url_where_a_rule_uses_it(tmp_path):
    # [events] alone may leave the url to each source...
    load(write(tmp_path, '[events]\nlayout = "segment"\n'), environ={})
    # ...but a rule that reads the warehouse needs one.
    message = error_of(tmp_path, '[events]\nlayout = "segment"\n' + audience("Buyers", "event('A').count() > 1"))
    assert "audiences[0].source.url: layout 'segment' reads a warehouse: set its SQLAlchemy URL" in message


def test_a_rule_source_takes_events_settings_and_overrides_them(tmp_path):
    cfg = load(write(tmp_path, """
        [events]
        layout = "segment"
        url = "sqlite:///warehouse.db"
        schema = "main"
        [[audiences]]
        name = "From Segment"
        source = { type = "rule", rule = "event('A').count() > 1" }
        [[audiences]]
        name = "From RudderStack"
        source = { type = "rule", rule = "event('A').count() > 1", layout = "rudderstack", schema = "rs" }
        [[audiences]]
        name = "From Serve"
        source = { type = "rule", rule = "event('A').count() > 1", layout = "audsync" }
    """), environ={})
    warehouse = f"sqlite:///{tmp_path / 'warehouse.db'}"  # relative to the config file
    assert cfg.events.url == warehouse
    shown = [(a.source.layout, a.source.url, a.source.schema) for a in cfg.audiences]
    assert shown == [("segment", warehouse, "main"), ("rudderstack", warehouse, "rs"),
                     ("audsync", cfg.state.url, None)]


def test_a_warehouse_password_is_masked_in_reprs(tmp_path):
    cfg = load(write(tmp_path, '[events]\nlayout = "segment"\nurl = "postgresql+psycopg://u:s3cret-pw@db/w"\n'
                     + audience("Buyers", "event('A').count() > 1")), environ={})
    assert "s3cret-pw" not in repr(cfg.events) and "s3cret-pw" not in repr(cfg.audiences[0])


def test_include_anonymous_is_read_per_rule_audience_and_refused_elsewhere(tmp_path):
    cfg = load(write(tmp_path, audience("Buyers", "event('A').count() > 1", extra="include_anonymous = true\n")),
               environ={})
    assert cfg.audiences[0].include_anonymous is True
    message = error_of(tmp_path, '[[audiences]]\nname = "Listed"\ninclude_anonymous = true\n'
                                 'source = { type = "file", path = "m.csv" }\n')
    assert "audiences[0].include_anonymous: applies to rule sources only" in message
    message = error_of(tmp_path, audience("Buyers", "event('A').count() > 1", extra="include_anonymous = 1\n"))
    assert "audiences[0].include_anonymous: must be true or false, not 1" in message


def test_trait_of_another_audience_key_is_a_reference_and_other_traits_are_not(tmp_path):
    cfg = load(write(tmp_path, audience("Buyers", "event('Order Completed').count() >= 1")
                     + audience("Gold Buyers", "trait('buyers') AND trait('plan') = 'gold'")), environ={})
    assert cfg.audiences[0].source.references == ()
    assert cfg.audiences[1].source.references == ("buyers",)


def test_audiences_run_after_the_audiences_their_rules_read(tmp_path):
    cfg = load(write(tmp_path, audience("Top", "trait('middle') AND trait('base')")
                     + audience("Middle", "trait('base') AND event('A').count() > 1")
                     + audience("Base", "event('B').count() > 1")
                     + audience("Apart", "event('C').count() > 1")), environ={})
    assert cfg.run_order == ("base", "middle", "top", "apart")
    assert [a.key for a in cfg.in_run_order(cfg.audiences)] == ["base", "middle", "top", "apart"]
    # A selection keeps the same order.
    picked = [cfg.audience("Apart"), cfg.audience("Top"), cfg.audience("Base")]
    assert [a.key for a in cfg.in_run_order(picked)] == ["base", "top", "apart"]


def test_a_cycle_of_references_is_an_error_naming_the_cycle(tmp_path):
    message = error_of(tmp_path, audience("A", "trait('b')") + audience("B", "trait('a') OR event('X').count() > 1"))
    assert message == (f"{tmp_path / 'audsync.toml'}: audiences[0].source.rule: trait() references make a cycle: "
                       "a -> b -> a; an audience cannot depend on itself, directly or through others")


def test_a_longer_cycle_is_told_from_the_audience_written_first(tmp_path):
    message = error_of(tmp_path, audience("Outside", "trait('c')") + audience("A", "trait('b')")
                       + audience("B", "trait('c')") + audience("C", "trait('a')"))
    assert "audiences[1].source.rule: trait() references make a cycle: a -> b -> c -> a;" in message


def test_an_audience_reading_itself_is_a_cycle(tmp_path):
    message = error_of(tmp_path, audience("Loyal", "trait('loyal') OR event('X').count() > 5"))
    assert "audiences[0].source.rule: trait() references make a cycle: loyal -> loyal;" in message


def test_a_reference_to_a_computed_trait_is_an_error(tmp_path):
    message = error_of(tmp_path, audience("Revenue", "event('Order Completed').sum(property('total'))",
                                          kind="computed_trait")
                       + audience("Big", "trait('revenue') > 100"))
    assert ("audiences[1].source.rule: trait('revenue') names the computed trait \"Revenue\" (audiences[0]): "
            "a rule can read another audience's membership, not a computed trait's value") in message


def test_a_warehouse_rule_reading_a_sql_audience_is_an_error_saying_both_must_share_a_database(tmp_path):
    message = error_of(tmp_path, """
        [state]
        url = "sqlite:///state.db"
        [events]
        layout = "segment"
        url = "sqlite:///warehouse.db"
        [[audiences]]
        name = "Newsletter"
        source = { type = "file", path = "newsletter.csv" }
        [[audiences]]
        name = "Engaged Subscribers"
        source = { type = "rule", rule = "trait('newsletter') AND event('Email Opened').count() > 2" }
    """)
    assert message.startswith(
        f"{tmp_path / 'audsync.toml'}: audiences[1].source.rule: trait('newsletter') reads the members of audience "
        f"\"Newsletter\" (audiences[0]), but this rule runs in its events database (sqlite:///{tmp_path}/warehouse.db) "
        "and the file source of \"Newsletter\" keeps those members in the state database "
        f"(sqlite:///{tmp_path}/state.db): such a reference needs both in one database")


def test_references_that_one_database_can_answer_are_accepted(tmp_path):
    cfg = load(write(tmp_path, """
        [events]
        layout = "segment"
        url = "sqlite:///warehouse.db"
        [[audiences]]
        name = "Newsletter"
        source = { type = "file", path = "newsletter.csv" }
        [[audiences]]
        name = "Warehouse Buyers"
        source = { type = "rule", rule = "event('Order Completed').count() > 0" }
        [[audiences]]
        name = "Warehouse Loyal"
        source = { type = "rule", rule = "trait('warehouse_buyers') AND event('Login').count() > 9" }
        [[audiences]]
        name = "Serve Engaged"
        source = { type = "rule", layout = "audsync", rule = "trait('newsletter') AND trait('warehouse_buyers')" }
    """), environ={})
    # Same warehouse: the other rule compiles in; the audsync layout reads synced members of the file
    # audience and of the warehouse rule from the state database it runs in.
    assert [a.source.references for a in cfg.audiences[1:]] == [(), ("warehouse_buyers",),
                                                                  ("newsletter", "warehouse_buyers")]
    assert cfg.run_order == ("newsletter", "warehouse_buyers", "warehouse_loyal", "serve_engaged")


def test_the_example_configs_commented_rule_audiences_load(tmp_path):
    example = (Path(__file__).resolve().parents[2] / "config.example.toml").read_text()
    block = example.split("# A fourth kind of source: a rule", 1)[1]
    settings = ("# [[audiences]]", "# name =", "# kind =", "# include_anonymous =", "# source =")
    uncommented = "\n".join(line[2:] for line in block.splitlines() if line.startswith(settings))
    cfg = load(write(tmp_path, example + "\n" + uncommented + "\n"), environ={})
    rules = {a.name: a.source for a in cfg.audiences if isinstance(a.source, RuleSource)}
    assert list(rules) == ["Big Spenders", "Favorite Category",  # the example's own, over examples/events.db
                           "Frequent Big Spenders", "Revenue 90 Days", "Big Spenders Not Subscribed"]
    assert rules["Big Spenders Not Subscribed"].references == ("frequent_big_spenders", "newsletter_subscriber")
