"""Shared fixtures: uniquely named PostgreSQL databases and state URLs for both backends.

PostgreSQL tests run against the real server of tests/pg_server.py.
"""

from __future__ import annotations

import pytest

import pg_server


@pytest.fixture(scope="session")
def pg_available() -> None:
    pg_server.require()


@pytest.fixture
def pg_url(pg_available) -> str:
    """A fresh, uniquely named PostgreSQL database, dropped after the test."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url)


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request, tmp_path) -> str:
    """Every state-database test runs on a real SQLite file and on the real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def amplitude():
    """A loopback fake Amplitude (audsync.testing.fake_amplitude) accepting any API key."""
    from audsync.testing.fake_amplitude import FakeAmplitude

    fake = FakeAmplitude()
    yield fake
    fake.close()
