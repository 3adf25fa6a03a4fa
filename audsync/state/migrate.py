"""Apply the Alembic migrations shipped in audsync.migrations, configured from Python.

Two processes starting at once must not both apply a migration: the whole upgrade runs in one
transaction under a lock (SQLite: an EXCLUSIVE transaction, whose DDL is transactional;
PostgreSQL: a transaction-scoped advisory lock, DDL being transactional there too).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from ..errors import StateError
from .db import db_errors, make_engine, transaction

# An arbitrary constant naming audsync's migration lock among PostgreSQL advisory locks.
_PG_LOCK_KEY = 0x617564_73796E63 & 0x7FFF_FFFF_FFFF_FFFF


def _script_location() -> str:
    try:
        return str(resources.files("audsync.migrations"))
    except ModuleNotFoundError:
        # Imported straight from a source checkout (e.g. `python -m audsync.cli` run in its root,
        # which puts the checkout ahead of the installed package): the migrations live in
        # migrations/ beside the package directory there, mapped to audsync.migrations on install.
        checkout = Path(__file__).resolve().parents[2] / "migrations"
        if (checkout / "env.py").is_file():
            return str(checkout)
        raise


def alembic_config() -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", _script_location())
    return cfg


def head() -> str:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, heads  # one linear history
    return heads[0]


def current(url: str) -> str | None:
    engine = make_engine(url)
    try:
        with db_errors(url), engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def upgrade(url: str) -> list[str]:
    """Bring the state database to the newest schema; the revisions applied, oldest first."""
    cfg = alembic_config()
    known = {rev.revision for rev in ScriptDirectory.from_config(cfg).walk_revisions()}
    engine = make_engine(url)
    try:
        with db_errors(url), engine.connect() as conn:
            with transaction(conn, exclusive=True):
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_LOCK_KEY})")
                now = MigrationContext.configure(conn).get_current_revision()
                if now is not None and now not in known:
                    raise StateError(
                        f"the state database is at schema revision {now!r}, which this version of audsync "
                        "does not know (written by a newer audsync?)"
                    )
                cfg.attributes["connection"] = conn
                cfg.attributes["applied"] = []
                command.upgrade(cfg, "head")
                return list(cfg.attributes["applied"])
    finally:
        engine.dispose()


def check(url: str) -> list:
    """Differences between the models and the migrated database (empty when in lockstep)."""
    from alembic.autogenerate import compare_metadata

    from .models import metadata

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()
