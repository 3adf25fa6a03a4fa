"""Config errors name the file and the dotted key; secrets never leak."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from audsync.config import AmplitudeSettings, load
from audsync.errors import ConfigError


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def error_of(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    return str(info.value)


def test_empty_file_gives_every_default(tmp_path):
    cfg = load(write(tmp_path, ""), environ={})
    assert cfg.amplitude == AmplitudeSettings(endpoint="us")
    assert cfg.delivery.concurrency == 4 and cfg.delivery.throttle_pause_s == 30
    assert cfg.state.url == f"sqlite:///{tmp_path / 'audsync.db'}"
    assert cfg.audiences == ()


def test_unknown_key_names_file_and_dotted_key_with_suggestion(tmp_path):
    message = error_of(tmp_path, "[amplitude]\ntrack_name_pages = true\n")
    assert message == (f"{tmp_path / 'config.toml'}: amplitude.track_name_pages: "
                       "unknown setting (did you mean track_named_pages?)")


def test_unknown_key_without_near_miss_has_no_suggestion(tmp_path):
    message = error_of(tmp_path, "[delivery]\nzzz = 1\n")
    assert message.endswith("delivery.zzz: unknown setting")


def test_unknown_table_is_an_error(tmp_path):
    assert "amplitud: unknown setting (did you mean amplitude?)" in error_of(tmp_path, "[amplitud]\n")


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("[amplitude]\ntrack_all_pages = 1", "amplitude.track_all_pages: must be true or false, not 1"),
        ("[amplitude]\nmin_id_length = '5'", "amplitude.min_id_length: must be a whole number, not '5'"),
        ("[amplitude]\nmin_id_length = true", "amplitude.min_id_length: must be a whole number, not true"),
        ("[amplitude]\ntraits_to_increment = 'logins'", "amplitude.traits_to_increment: must be a list of strings"),
        ("[amplitude]\ntraits_to_increment = [1]", "amplitude.traits_to_increment: must be a list of strings"),
        ("[amplitude]\nmap_query_params = 'x'", "amplitude.map_query_params: must be a table of strings"),
        ("[amplitude]\nversion_name = 3", "amplitude.version_name: must be a string, not 3"),
        ("[delivery]\ntimeout_s = 'fast'", "delivery.timeout_s: must be a number, not 'fast'"),
        ("amplitude = 3", "amplitude: must be a table, not a number"),
    ],
)
def test_wrong_types_name_the_dotted_key(tmp_path, toml, fragment):
    assert fragment in error_of(tmp_path, toml)


@pytest.mark.parametrize(
    ("toml", "fragment"),
    [
        ("[amplitude]\nendpoint = 'asia'", "amplitude.endpoint: 'asia' is not one of"),
        ("[amplitude]\nendpoint = 'ftp://x'", "amplitude.endpoint: 'ftp://x' is not one of"),
        ("[amplitude]\nendpoint = 'http://'", "amplitude.endpoint: 'http://' is not a valid base URL"),
        ("[amplitude]\nendpoint = 'file:'", "amplitude.endpoint: file: needs a path"),
        ("[amplitude]\nmin_id_length = -1", "amplitude.min_id_length: must not be negative, not -1"),
        ("[amplitude.map_query_params]\nsearch = 'group_properties'",
         "amplitude.map_query_params.search: 'group_properties' must be \"user_properties\" or \"event_properties\""),
        ("[delivery]\nconcurrency = 0", "delivery.concurrency: must be at least 1"),
        ("[delivery]\nbackoff_max_s = -2", "delivery.backoff_max_s: must not be negative"),
        ("[daemon]\ndefault_schedule = 'sometimes'", "daemon.default_schedule: 'sometimes' is neither"),
        ("[daemon]\ndefault_schedule = '61 * * * *'", "daemon.default_schedule: '61 * * * *' is not a valid cron"),
        ("[state]\nurl = ''", "state.url: must not be empty"),
        ("[sync]\nmax_exit_fraction = 0", "sync.max_exit_fraction: must be more than 0 and at most 1, not 0.0"),
        ("[sync]\nmax_exit_fraction = 1.5", "sync.max_exit_fraction: must be more than 0 and at most 1, not 1.5"),
        ("[sync]\nmax_exit_fraction = 'half'", "sync.max_exit_fraction: must be a number, not 'half'"),
        ("[sync]\nmax_exit_fracton = 0.2", "sync.max_exit_fracton: unknown setting (did you mean max_exit_fraction?)"),
        ("[[audiences]]\nname = 'A'\nmax_exit_fraction = -0.1\nsource = { type = 'file', path = 'a.csv' }",
         "audiences[0].max_exit_fraction: must be more than 0 and at most 1, not -0.1"),
        ("[[audiences]]\nname = 'A'\nmax_exit_fraction = true\nsource = { type = 'file', path = 'a.csv' }",
         "audiences[0].max_exit_fraction: must be a number, not true"),
    ],
)
def test_bad_values_name_the_dotted_key(tmp_path, toml, fragment):
    assert fragment in error_of(tmp_path, toml)


def test_max_exit_fraction_defaults_to_half_and_sync_sets_every_audiences_unless_it_sets_its_own(tmp_path):
    assert load(write(tmp_path, ""), environ={}).sync.max_exit_fraction == 0.5
    cfg = load(write(tmp_path, """
        [sync]
        max_exit_fraction = 0.25
        [[audiences]]
        name = "A"
        source = { type = "file", path = "a.csv" }
        [[audiences]]
        name = "B"
        max_exit_fraction = 1
        source = { type = "file", path = "b.csv" }
    """), environ={})
    assert [a.max_exit_fraction for a in cfg.audiences] == [0.25, 1.0]


@pytest.mark.parametrize("endpoint", ["us", "eu", "http://127.0.0.1:8080", "https://proxy.example.com/amp"])
def test_valid_endpoints_are_accepted(tmp_path, endpoint):
    cfg = load(write(tmp_path, f"[amplitude]\nendpoint = '{endpoint}'\n"), environ={})
    assert cfg.amplitude.endpoint == endpoint


def test_file_endpoint_is_relative_to_the_config_file(tmp_path):
    cfg = load(write(tmp_path, "[amplitude]\nendpoint = 'file:out/requests.jsonl'\n"), environ={})
    assert cfg.amplitude.endpoint == f"file:{tmp_path / 'out' / 'requests.jsonl'}"


def test_relative_sqlite_state_url_is_relative_to_the_config_file(tmp_path):
    cfg = load(write(tmp_path, "[state]\nurl = 'sqlite:///data/state.db'\n"), environ={})
    assert cfg.state.url == f"sqlite:///{tmp_path / 'data' / 'state.db'}"


def test_postgres_state_url_is_kept_as_written(tmp_path):
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/audsync"
    assert load(write(tmp_path, f"[state]\nurl = '{url}'\n"), environ={}).state.url == url


def test_invalid_toml_names_the_file_and_line(tmp_path):
    message = error_of(tmp_path, "[amplitude]\napi_key = \n")
    assert str(tmp_path / "config.toml") in message and "line 2" in message


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load(tmp_path / "absent.toml", environ={})


def test_api_keys_come_from_the_environment_when_the_file_has_none(tmp_path):
    cfg = load(write(tmp_path, ""), environ={"AMPLITUDE_API_KEY": "k" * 32, "AMPLITUDE_SECRET_KEY": "s" * 32})
    assert cfg.amplitude.api_key == "k" * 32 and cfg.amplitude.secret_key == "s" * 32


def test_api_key_in_the_file_wins_over_the_environment(tmp_path):
    cfg = load(write(tmp_path, "[amplitude]\napi_key = 'fromfile'\n"), environ={"AMPLITUDE_API_KEY": "fromenv"})
    assert cfg.amplitude.api_key == "fromfile"


def test_secrets_never_appear_in_reprs(tmp_path):
    cfg = load(write(tmp_path, "[amplitude]\napi_key = 'APIKEY-SECRET-1'\nsecret_key = 'SECRET-KEY-2'\n"), environ={})
    for text in (repr(cfg), str(cfg), repr(cfg.amplitude)):
        assert "APIKEY-SECRET-1" not in text and "SECRET-KEY-2" not in text


def test_secrets_never_appear_in_config_errors(tmp_path):
    message = error_of(tmp_path, "[amplitude]\napi_key = 'APIKEY-SECRET-1'\nendpoint = 'mars'\n")
    assert "APIKEY-SECRET-1" not in message


def test_destination_id_changes_with_api_key_and_hides_it(tmp_path):
    a = AmplitudeSettings(api_key="key-one", endpoint="us")
    b = AmplitudeSettings(api_key="key-two", endpoint="us")
    c = AmplitudeSettings(api_key="key-one", endpoint="eu")
    assert len({a.destination_id, b.destination_id, c.destination_id}) == 3
    assert "key-one" not in a.destination_id


def test_settings_are_frozen(tmp_path):
    cfg = load(write(tmp_path, ""), environ={})
    with pytest.raises(AttributeError):
        cfg.amplitude.endpoint = "eu"  # type: ignore[misc]


def test_a_default_schedule_that_never_fires_is_rejected_when_the_config_loads(tmp_path):
    message = error_of(tmp_path, "[daemon]\ndefault_schedule = '0 0 30 2 *'\n")
    assert message == (f"{tmp_path / 'config.toml'}: daemon.default_schedule: '0 0 30 2 *' never fires: "
                       "no date matches it")


def test_the_longest_interval_still_schedules(tmp_path):
    from datetime import datetime, timezone

    from audsync.daemon.schedules import next_run

    cfg = load(write(tmp_path, "[daemon]\ndefault_schedule = 'every 36500d'\n"), environ={})
    assert next_run(cfg.daemon.default_schedule, datetime.now(timezone.utc)).year < 9999


def test_reprs_mask_url_passwords_in_either_form(tmp_path):
    cfg = load(write(tmp_path, '''
        [state]
        url = "postgresql+psycopg://sync:state-pw-1@db/state?sslmode=require"
        [[audiences]]
        name = "A"
        source = { type = "sql", url = "postgresql://reader@wh/db?PASSWORD=source-pw-2&sslmode=require", query = "SELECT 1" }
    '''.replace("\n        ", "\n")), environ={})
    shown = repr(cfg)
    assert "state-pw-1" not in shown and "source-pw-2" not in shown
    assert "sync:***@db/state" in shown and "PASSWORD=***&sslmode=require" in shown


def test_json_logs_mask_a_secret_that_json_would_escape(tmp_path):
    import logging

    from audsync.cli.logs import JsonFormatter

    load(write(tmp_path, '[amplitude]\nsecret_key = "sécret-\\"key\\"-9"\n'), environ={})
    record = logging.LogRecord("audsync", logging.ERROR, __file__, 1, "answer: %s", ('sécret-"key"-9',), None)
    line = JsonFormatter().format(record)
    assert "cret" not in line and "answer: ***" in line
