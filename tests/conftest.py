"""Shared fixtures: uniquely named PostgreSQL databases and state URLs for both backends.

PostgreSQL tests run against the real server at 127.0.0.1:5432 (AUDSYNC_TEST_PG overrides the
admin URL). Under CI=true they must run; elsewhere they skip, saying why, when no server answers.
"""

from __future__ import annotations

import gc
import os
import uuid

import pytest

PG_ADMIN_URL = os.environ.get("AUDSYNC_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _pg_unavailable_reason() -> str | None:
    import sqlalchemy as sa

    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # any failure to connect means "no server here"
        return f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({type(exc).__name__})"
    return None


@pytest.fixture(scope="session")
def pg_available() -> None:
    reason = _pg_unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}: PostgreSQL tests must run in CI")
        pytest.skip(reason)


@pytest.fixture
def pg_url(pg_available) -> str:
    """A fresh, uniquely named PostgreSQL database, dropped after the test."""
    import sqlalchemy as sa

    name = f"audsync_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        # Engines a test dropped without disposing close their connections when collected; do
        # that before FORCE, which would otherwise kill them and leave noise at interpreter exit.
        gc.collect()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


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
