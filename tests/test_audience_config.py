"""Audience config (DESIGN.md sections 3 and 4), read through audsync.config.load from real TOML."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from audsync.config import FileSource, SqlSource, load
from audsync.errors import ConfigError


def config_with(tmp_path: Path, audiences: str) -> Path:
    path = tmp_path / "audsync.toml"
    path.write_text(textwrap.dedent(audiences))
    return path


def audience(name: str, extra: str = "") -> str:
    return f'''
    [[audiences]]
    name = "{name}"
    {extra}
    source = {{ type = "file", path = "members.csv" }}
    '''


def error_of(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    return str(info.value)


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("Order Completed Last 30days", "order_completed_last_30days"),
        ("orderCompletedLast30days", "order_completed_last30days"),
        ("HTMLParser Users", "html_parser_users"),
        ("High-Value -- Customers!!", "high_value_customers"),
        ("  (VIP) users, 2024 ", "vip_users_2024"),
        ("ltv", "ltv"),
    ],
)
def test_the_key_is_the_snake_case_of_the_name(tmp_path, name, key):
    cfg = load(config_with(tmp_path, audience(name)), environ={})
    assert cfg.audiences[0].key == key


def test_an_explicit_key_wins_over_the_name(tmp_path):
    cfg = load(config_with(tmp_path, audience("Order Completed", 'key = "orders_30d"')), environ={})
    assert cfg.audiences[0].key == "orders_30d"
    assert cfg.audiences[0].name == "Order Completed"


def test_two_audiences_with_one_key_are_rejected(tmp_path):
    path = config_with(tmp_path, audience("Big Spenders") + audience("big-spenders"))
    message = error_of(path)
    assert "audiences[1].key" in message and "big_spenders" in message and "audiences[0]" in message


def test_an_explicit_key_clashing_with_a_derived_one_is_rejected(tmp_path):
    path = config_with(tmp_path, audience("Big Spenders") + audience("Other", 'key = "big_spenders"'))
    assert "audiences[1].key" in error_of(path)


@pytest.mark.parametrize("bad", ["Big-Spenders", "big spenders", "émigrés", "UPPER"])
def test_a_key_outside_a_z_0_9_underscore_is_rejected(tmp_path, bad):
    message = error_of(config_with(tmp_path, audience("Fine Name", f'key = "{bad}"')))
    assert "audiences[0].key" in message and "[a-z0-9_]" in message


def test_a_name_without_any_letter_or_digit_needs_an_explicit_key(tmp_path):
    message = error_of(config_with(tmp_path, audience("!!!")))
    assert "audiences[0].key" in message and "set key explicitly" in message


def test_kind_is_audience_by_default_and_may_be_computed_trait(tmp_path):
    path = config_with(tmp_path, audience("A") + audience("B", 'kind = "computed_trait"'))
    kinds = [a.kind for a in load(path, environ={}).audiences]
    assert kinds == ["audience", "computed_trait"]


def test_an_unknown_kind_is_rejected(tmp_path):
    message = error_of(config_with(tmp_path, audience("A", 'kind = "segment"')))
    assert "audiences[0].kind" in message and "computed_trait" in message


@pytest.mark.parametrize("schedule", ["every 2h", "every 30m", "every 1d", "*/15 * * * *", "0 6 * * 1-5"])
def test_valid_schedules_are_accepted(tmp_path, schedule):
    cfg = load(config_with(tmp_path, audience("A", f'schedule = "{schedule}"')), environ={})
    assert cfg.audiences[0].schedule == schedule


@pytest.mark.parametrize("schedule", ["every 2 weeks", "hourly", "61 * * * *", "every 0m", "* * *"])
def test_a_bad_schedule_is_rejected_naming_the_audience(tmp_path, schedule):
    assert "audiences[0].schedule" in error_of(config_with(tmp_path, audience("A", f'schedule = "{schedule}"')))


def test_an_unknown_audience_key_is_rejected_with_a_suggestion(tmp_path):
    message = error_of(config_with(tmp_path, audience("A", "send_track_event = true")))
    assert "audiences[0].send_track_event" in message and "did you mean send_track_events?" in message


def test_an_unknown_source_key_is_rejected_with_a_suggestion(tmp_path):
    path = config_with(tmp_path, '''
    [[audiences]]
    name = "A"
    source = { type = "sql", url = "sqlite:///w.db", querry = "SELECT 1" }
    ''')
    message = error_of(path)
    assert "audiences[0].source.querry" in message and "did you mean query?" in message


def test_sources_resolve_relative_to_the_config_file(tmp_path):
    path = config_with(tmp_path, audience("A") + '''
    [[audiences]]
    name = "B"
    source = { type = "sql", url = "sqlite:///warehouse.db", query = "SELECT user_id FROM t" }
    ''')
    a, b = load(path, environ={}).audiences
    assert isinstance(a.source, FileSource) and a.source.path == tmp_path / "members.csv"
    assert isinstance(b.source, SqlSource) and b.source.url == f"sqlite:///{tmp_path / 'warehouse.db'}"


def test_send_track_events_is_off_unless_asked(tmp_path):
    path = config_with(tmp_path, audience("A") + audience("B", "send_track_events = true"))
    assert [a.send_track_events for a in load(path, environ={}).audiences] == [False, True]


@pytest.mark.parametrize(("name", "key"), [("Café Lovers", "cafe_lovers"), ("Ünïcødé Straße", "unicode_strasse"),
                                           ("Élan Vital", "elan_vital")])
def test_accented_letters_in_a_name_become_their_base_letters_in_the_key(tmp_path, name, key):
    cfg = load(config_with(tmp_path, audience(name)), environ={})
    assert cfg.audiences[0].key == key


@pytest.mark.parametrize("name", ["日本語", "!!!"])
def test_a_name_leaving_no_letter_or_digit_is_an_error_naming_it_and_asking_for_key(tmp_path, name):
    message = error_of(config_with(tmp_path, audience(name)))
    assert f"audiences[0].key: the name {name!r} has no letters or digits" in message
    assert "set key explicitly" in message


@pytest.mark.parametrize(("schedule", "reason"), [
    ("0 0 30 2 *", "never fires: no date matches it"),
    ("0 0 31 4 *", "never fires: no date matches it"),
    ("every 100000000d", "is longer than the longest interval, every 36500d"),
])
def test_a_schedule_that_never_fires_or_overflows_is_rejected_when_the_config_loads(tmp_path, schedule, reason):
    path = config_with(tmp_path, audience("A", f'schedule = "{schedule}"'))
    assert error_of(path) == f"{path}: audiences[0].schedule: {schedule!r} {reason}"
