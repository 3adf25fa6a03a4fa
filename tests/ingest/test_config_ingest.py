"""The [ingest] table (DESIGN.md section 6): defaults, AUDSYNC_WRITE_KEYS, strict keys and values."""

from __future__ import annotations

import textwrap

import pytest

from audsync.config import IngestSettings, load
from audsync.errors import ConfigError


def loaded(tmp_path, text: str, environ: dict | None = None):
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(text))
    return load(path, environ=environ or {})


def error_of(tmp_path, text: str, environ: dict | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        loaded(tmp_path, text, environ)
    return str(info.value)


def test_defaults_are_design_s():
    assert IngestSettings() == IngestSettings(host="127.0.0.1", port=8088, write_keys=(), forward=True,
                                              keep_events_days=400, cors_origins=("*",))


def test_empty_file_gives_the_defaults(tmp_path):
    assert loaded(tmp_path, "").ingest == IngestSettings()


def test_every_setting_is_read(tmp_path):
    ingest = loaded(tmp_path, '''
        [ingest]
        host = "0.0.0.0"
        port = 9000
        write_keys = ["wk-1", "wk-2", "wk-1"]
        forward = false
        keep_events_days = 0
        cors_origins = ["https://shop.example.com", "http://localhost:3000"]
    ''').ingest
    assert ingest == IngestSettings(host="0.0.0.0", port=9000, write_keys=("wk-1", "wk-2"), forward=False,
                                    keep_events_days=0,
                                    cors_origins=("https://shop.example.com", "http://localhost:3000"))
    assert ingest.write_keys_setting == "ingest.write_keys"


def test_write_keys_from_the_environment_when_the_config_has_none(tmp_path):
    ingest = loaded(tmp_path, "", {"AUDSYNC_WRITE_KEYS": " wk-a , wk-b,,"}).ingest
    assert ingest.write_keys == ("wk-a", "wk-b") and ingest.write_keys_setting == "AUDSYNC_WRITE_KEYS"
    ingest = loaded(tmp_path, '[ingest]\nwrite_keys = ["wk-c"]\n', {"AUDSYNC_WRITE_KEYS": "wk-a"}).ingest
    assert ingest.write_keys == ("wk-c",)


def test_write_keys_never_show_in_reprs(tmp_path):
    cfg = loaded(tmp_path, '[ingest]\nwrite_keys = ["wk-secret-value"]\n')
    assert "wk-secret-value" not in repr(cfg)


@pytest.mark.parametrize("text, message", [
    ('[ingest]\nwrite_key = ["a"]\n', "ingest.write_key: unknown setting (did you mean write_keys?)"),
    ('[ingest]\nport = 0\n', "ingest.port: must be from 1 to 65535, not 0"),
    ('[ingest]\nport = "80"\n', "ingest.port: must be a whole number, not '80'"),
    ('[ingest]\nhost = ""\n', "ingest.host: must not be empty"),
    ('[ingest]\nkeep_events_days = -1\n', "ingest.keep_events_days: must not be negative, not -1"),
    ('[ingest]\nforward = "no"\n', "ingest.forward: must be true or false, not 'no'"),
    ('[ingest]\nwrite_keys = "wk"\n', "ingest.write_keys: must be a list of strings"),
    ('[ingest]\nwrite_keys = ["a:b"]\n', "ingest.write_keys: a write key must be non-empty, without spaces or colons"),
    ('[ingest]\nwrite_keys = [""]\n', "ingest.write_keys: a write key must be non-empty"),
    ('[ingest]\ncors_origins = ["shop.example.com"]\n', "ingest.cors_origins: 'shop.example.com' is neither"),
    ('[ingest]\ncors_origins = ["https://shop.example.com/"]\n', "ingest.cors_origins: 'https://shop.example.com/'"),
    ('ingest = 3\n', "ingest: must be a table"),
])
def test_wrong_settings_name_file_and_key(tmp_path, text, message):
    assert message in error_of(tmp_path, text)
    assert error_of(tmp_path, text).startswith(str(tmp_path / "config.toml"))


def test_a_bad_key_in_the_environment_names_the_variable(tmp_path):
    assert "AUDSYNC_WRITE_KEYS: a write key must be non-empty" in error_of(tmp_path, "", {"AUDSYNC_WRITE_KEYS": "a b"})
