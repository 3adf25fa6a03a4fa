"""What the tests of the official Segment clients against `audsync serve` share: the Node modules
of tests/clients, the system Chromium, forwarding configs and the comparison with `audsync translate`.

The clients are outside pip's reach (npm packages, a browser): without them the tests skip, saying
what to install, except under CI=true, where they fail: CI must not pass by skipping them (as the
PostgreSQL tests, tests/conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa

from .conftest import AUDSYNC, WRITE_KEY, write_config
from .test_forward import received, wait_until  # noqa: F401 (the client tests import them from here)

NODE_DIR = Path(__file__).resolve().parents[1] / "clients"
NODE_MODULES = NODE_DIR / "node_modules"
CHROMIUM = os.environ.get("AUDSYNC_TEST_CHROMIUM", "/usr/bin/chromium")
INSTALL_HINT = ("README, Tests with the official Segment clients: Node 20+, `apt-get install chromium`, "
                "`npm ci` in tests/clients")

# The server libraries' [amplitude] settings: away from their defaults, each changing what some call
# becomes, so that the comparison with `audsync translate` checks that serve forwards with the
# config's settings, not the defaults.
AMPLITUDE = """
enable_alias = true
group_type_trait = "plan"
group_value_trait = "name"
track_revenue_per_product = true
track_all_pages = true
track_all_screens = true
traits_to_set_once = ["email"]
traits_to_increment = ["logins"]
append_fields_to_event_properties = { "context.library.name" = "sent_by" }
"""


def assert_settings_at_work(expected: list[tuple[str, dict]], library: str) -> None:
    """The operations of the server libraries' calls show each AMPLITUDE setting applied, so that
    comparing with them is comparing with the config's settings."""
    assert {api for api, _ in expected} == {"event", "identify", "groupidentify", "usermap"}  # enable_alias
    identify = next(body for api, body in expected if api == "identify")
    assert identify["user_properties"]["$setOnce"] == {"email": "ada@example.com"}
    assert identify["user_properties"]["$add"] == {"logins": 3}
    assert next(body for api, body in expected if api == "groupidentify")["group_type"] == "team"
    events = [body for api, body in expected if api == "event"]
    assert [e["event_type"] for e in events].count("Product Purchased") == 2
    assert {"Loaded a Page", "Viewed Docs Page", "Viewed Docs Getting Started Page", "Loaded a Screen"} <= \
        {e["event_type"] for e in events}
    assert all(e["event_properties"]["sent_by"] == library for e in events
               if e["event_type"] != "Product Purchased")  # those carry their product's properties


def missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}: the Segment client tests must run in CI")
    pytest.skip(f"{reason}; see {INSTALL_HINT}")


def node() -> str:
    """The node executable, 20 or later (as @segment/analytics-node 3 needs); skips (fails under
    CI=true) without it."""
    found = shutil.which("node")
    if found is None:
        missing("node is not on PATH")
    version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    major = version.lstrip("v").split(".", 1)[0]
    if not major.isdigit() or int(major) < 20:
        missing(f"node {version or '(no version)'} at {found} is older than 20, which @segment/analytics-node 3 needs")
    return found


def node_module(package: str) -> Path:
    """The directory of an npm package of tests/clients; skips (fails under CI=true) without it."""
    path = NODE_MODULES / package
    if not (path / "package.json").is_file():
        missing(f"{package} is not in tests/clients/node_modules")
    return path


def chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        missing(f"no Chromium at {CHROMIUM} (AUDSYNC_TEST_CHROMIUM names another)")
    return CHROMIUM


def forwarding_config(tmp_path: Path, state_url: str, fake, amplitude: str) -> Path:
    """serve forwarding to the fake Amplitude, with these [amplitude] settings."""
    return write_config(tmp_path, state_url, ingest=f'write_keys = ["{WRITE_KEY}"]\nforward = true\n',
                        amplitude=f'endpoint = "{fake.url}"\n{amplitude}')


# Forwarded messages leave the ingest log at once; a trigger of the test's own keeps a copy of each
# stored body, exactly as serve wrote it (receivedAt, timestamp corrected for clock skew), to be
# translated by the CLI. It is added once serve has migrated the database, before anything is sent.
_RECORD = {
    "sqlite": [
        "CREATE TABLE test_stored (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",
        "CREATE TRIGGER test_record_stored AFTER INSERT ON ingest_log "
        "BEGIN INSERT INTO test_stored (body) VALUES (NEW.body); END",
    ],
    "postgresql": [
        "CREATE TABLE test_stored (id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)",
        "CREATE FUNCTION test_record_stored() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN INSERT INTO test_stored (body) VALUES (NEW.body); RETURN NULL; END $$",
        "CREATE TRIGGER test_record_stored AFTER INSERT ON ingest_log FOR EACH ROW "
        "EXECUTE FUNCTION test_record_stored()",
    ],
}


def record_stored(state_url: str) -> None:
    """From now on, every message serve stores is also kept in test_stored (see recorded)."""
    engine = sa.create_engine(state_url)
    try:
        with engine.begin() as conn:
            for statement in _RECORD[engine.dialect.name]:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def recorded(state_url: str) -> list[dict]:
    """The messages serve stored since record_stored, in the order it stored them."""
    engine = sa.create_engine(state_url)
    try:
        with engine.connect() as conn:
            return [json.loads(body) for body in conn.scalars(sa.text("SELECT body FROM test_stored ORDER BY id"))]
    finally:
        engine.dispose()


def translated(messages: list[dict], config: Path) -> list[tuple[str, dict]]:
    """(api, body) of what `audsync translate --config` makes of these messages, in order."""
    lines = "".join(json.dumps(m) + "\n" for m in messages)
    result = subprocess.run([AUDSYNC, "translate", "--config", str(config)], input=lines, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [(op["api"], op["body"]) for op in map(json.loads, result.stdout.splitlines())]


def canonical(operations: list[tuple[str, dict]]) -> list[str]:
    """Operations as sorted JSON texts: forwarding keeps each user's order, not the order across users."""
    return sorted(json.dumps(op, sort_keys=True) for op in operations)
