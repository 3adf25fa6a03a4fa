"""The state database's version floors: SQLite 3.35 with JSON1, PostgreSQL 12, checked at start."""

from __future__ import annotations

import re
import sqlite3

import pytest
import sqlalchemy as sa

from audsync.errors import StateError
from audsync.state import db
from audsync.state.db import check_floors, make_engine


@pytest.mark.parametrize("backend, version", [
    ("sqlite", (3, 35, 0)), ("sqlite", (3, 35, 5)), ("sqlite", (3, 46, 1)),
    ("postgresql", (12, 0)), ("postgresql", (15, 20)), ("postgresql", (17, 2)),
])
def test_versions_at_or_above_the_floor_pass(backend, version):
    check_floors(backend, version)


@pytest.mark.parametrize("backend, version, message", [
    ("sqlite", (3, 34, 1), "SQLite 3.34.1 is too old: audsync needs SQLite 3.35 or later (for RETURNING)"),
    ("sqlite", (3, 8, 11), "SQLite 3.8.11 is too old: audsync needs SQLite 3.35 or later"),
    ("postgresql", (11, 22), "PostgreSQL 11.22 is too old: audsync needs PostgreSQL 12 or later"),
    ("postgresql", (9, 6, 24), "PostgreSQL 9.6.24 is too old: audsync needs PostgreSQL 12 or later"),
])
def test_versions_below_the_floor_are_refused_naming_both(backend, version, message):
    with pytest.raises(StateError, match=re.escape(message)):
        check_floors(backend, version)


def test_sqlite_without_json_functions_is_refused():
    with pytest.raises(StateError, match=r"SQLite 3\.40\.1 was built without its JSON functions \(JSON1\)"):
        check_floors("sqlite", (3, 40, 1), json1=False)
    check_floors("postgresql", (15, 20), json1=False)  # JSON1 is SQLite's alone


def test_this_machines_databases_pass(state_url):
    engine = make_engine(state_url)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
    finally:
        engine.dispose()


def _server_version(url: str) -> tuple[str, str]:
    """(product, version) of the database at url, read without audsync."""
    if url.startswith("sqlite"):
        return "SQLite", sqlite3.sqlite_version
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            version = conn.dialect.server_version_info
    finally:
        engine.dispose()
    return "PostgreSQL", ".".join(map(str, version))


def test_a_database_below_a_raised_floor_fails_at_the_first_connection(state_url, monkeypatch):
    # The real server's version against a floor above it: the check runs on a live connection.
    product, found = _server_version(state_url)
    monkeypatch.setattr(db, "SQLITE_FLOOR" if product == "SQLite" else "POSTGRESQL_FLOOR", (99, 1))
    engine = make_engine(state_url)
    try:
        with pytest.raises(StateError) as caught:
            engine.connect()
        assert str(caught.value) == (f"state database {state_url}: {product} {found} is too old: audsync "
                                     f"needs {product} 99.1 or later" + (
                                         " (for RETURNING); this is the SQLite library Python's sqlite3 "
                                         "module uses, so run audsync on a Python built with a newer one, "
                                         "or keep the state in PostgreSQL" if product == "SQLite" else ""))
        assert caught.value.exit_code == 2
        # A failed check is not remembered as passed: with the floor back, the same engine connects.
        monkeypatch.undo()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT 1").scalar_one() == 1
    finally:
        engine.dispose()
