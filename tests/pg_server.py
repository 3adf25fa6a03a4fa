"""The real PostgreSQL server the tests use, shared by tests/conftest.py and tests/rules/conftest.py.

The server is at 127.0.0.1:5432 (AUDSYNC_TEST_PG overrides the admin URL). Under CI=true its tests
must run; elsewhere they skip, saying why, when no server answers. Each test (or module) works in a
uniquely named database of its own, dropped afterwards.

A plain module, not a conftest: tests/rules/dialect_check.py runs outside pytest and imports the
rules conftest, which imports this.
"""

from __future__ import annotations

import gc
import os
import uuid

import pytest
import sqlalchemy as sa

PG_ADMIN_URL = os.environ.get("AUDSYNC_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def unavailable_reason() -> str | None:
    """Why no PostgreSQL server answers, or None when one does."""
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # any failure to connect means "no server here"
        return f"PostgreSQL at {PG_ADMIN_URL} is not reachable ({type(exc).__name__})"
    return None


def require() -> None:
    """Skip the test when no server answers; under CI=true fail it instead."""
    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}: PostgreSQL tests must run in CI")
        pytest.skip(reason)


def create_database() -> str:
    """A fresh, uniquely named database: its URL."""
    name = f"audsync_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return f"{PG_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def drop_database(url: str) -> None:
    # Engines a test dropped without disposing close their connections when collected; do that
    # before FORCE, which would otherwise kill them and leave noise at interpreter exit.
    gc.collect()
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    admin.dispose()
