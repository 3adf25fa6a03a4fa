"""Engines for the state database: SQLite files and PostgreSQL (psycopg 3).

SQLite runs in WAL mode with a busy timeout, so that several processes can share one file.
pysqlite's own transaction handling is switched off: audsync emits BEGIN itself, DEFERRED for
work that writes only temporary tables and IMMEDIATE for writes to the state (a deferred
transaction that later writes can fail at once with SQLITE_BUSY in WAL mode, whatever the
busy timeout).
"""

from __future__ import annotations

import contextlib
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.engine.url import make_url

from ..errors import ConfigError, StateError, StateUnavailableError
from .._redact import redact

SQLITE_BUSY_TIMEOUT_MS = 60_000
PG_CONNECT_TIMEOUT_S = 10
# The oldest versions the state layer's SQL runs on: SQLite 3.35 for RETURNING, and its JSON
# functions (json_each, json_group_array: built in since 3.38, a compile option before that);
# PostgreSQL 12 for `WITH ... AS MATERIALIZED`.
SQLITE_FLOOR = (3, 35)
POSTGRESQL_FLOOR = (12,)


# SQLite's page cache per connection: large for the sync's big staged reads and writes. A
# connection keeps its cache as long as it is pooled, so a process's memory grows by this much per
# pooled connection as the database grows past it.
SQLITE_CACHE_MB = 64
# The WAL's length, in 4 KB pages, at which a commit checkpoints it (SQLite's default is 1,000).
SQLITE_CHECKPOINT_PAGES = 10_000


def make_engine(url: str, *, sqlite_cache_mb: int = SQLITE_CACHE_MB) -> Engine:
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise StateError(redact(f"state.url: {url!r} is not a database URL ({exc})")) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        _check_directory(parsed.database)
        # Last in, first out: the connections a process needs at once are the ones it reuses, and
        # the pool's others (with their page caches) stay cold instead of each filling in turn.
        engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
                                  pool_use_lifo=True)
        _sqlite_events(engine, sqlite_cache_mb)
    elif backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")
        # libpq waits forever on a host that does not answer: a daemon waiting for its state
        # database at boot would then not even see SIGTERM.
        timeout = {} if "connect_timeout" in parsed.query else {"connect_timeout": PG_CONNECT_TIMEOUT_S}
        engine = sa.create_engine(parsed, pool_pre_ping=True, connect_args=timeout)
    else:
        raise StateError(f"state.url: {redact(url)!r}: the state database must be SQLite or PostgreSQL")
    _check_floors_on_first_connect(engine, url)
    return engine


def check_floors(backend: str, version: tuple[int, ...], *, json1: bool = True) -> None:
    """Raise a StateError when the state database is older than audsync supports (SQLITE_FLOOR,
    POSTGRESQL_FLOOR) or, for SQLite, was built without its JSON functions."""
    found = _shown(version)
    if backend == "sqlite":
        if version < SQLITE_FLOOR:
            raise StateError(f"SQLite {found} is too old: audsync needs SQLite {_shown(SQLITE_FLOOR)} or later "
                             "(for RETURNING); this is the SQLite library Python's sqlite3 module uses, so run "
                             "audsync on a Python built with a newer one, or keep the state in PostgreSQL")
        if not json1:
            raise StateError(f"SQLite {found} was built without its JSON functions (JSON1), which audsync "
                             "needs: run audsync on a Python whose SQLite has them, or keep the state in "
                             "PostgreSQL")
    elif backend == "postgresql" and version < POSTGRESQL_FLOOR:
        raise StateError(f"PostgreSQL {found} is too old: audsync needs PostgreSQL {_shown(POSTGRESQL_FLOOR)} "
                         "or later")


def _shown(version: tuple[int, ...]) -> str:
    return ".".join(map(str, version))


def _check_floors_on_first_connect(engine: Engine, url: str) -> None:
    """Checks the floors on the engine's first connection, so that an old database fails at start
    with a message instead of with a syntax error in the middle of a run. A "connect" listener
    registered after create_engine runs after SQLAlchemy has read the server's version."""
    checked = False

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001
        nonlocal checked
        if checked:
            return
        backend = engine.dialect.name
        json1 = True
        if backend == "sqlite":
            try:
                dbapi_connection.execute("SELECT json_valid('{}')").fetchall()
            except sqlite3.OperationalError:
                json1 = False
        try:
            check_floors(backend, tuple(engine.dialect.server_version_info or ()), json1=json1)
        except StateError as exc:
            dbapi_connection.close()
            raise StateError(redact(f"state database {url}: {exc}")) from None
        checked = True


def _check_directory(database: str | None) -> None:
    """SQLite says only "unable to open database file" when the file's directory is missing."""
    if database and database != ":memory:" and not database.startswith("file:"):
        directory = Path(database).parent
        if not directory.is_dir():
            raise ConfigError(f"state.url: the directory {directory} does not exist; create it or "
                              "point state.url at an existing one")


def _sqlite_events(engine: Engine, cache_mb: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _enter_wal_mode(cursor)
        # WAL + NORMAL: a commit survives a process crash; only an OS crash may lose the last ones.
        cursor.execute("PRAGMA synchronous = NORMAL")
        # A checkpoint copies each page changed since the last one back to the database and waits
        # for the disk, in whichever commit crosses the mark: with SQLite's 1,000 pages that is
        # nearly every commit of a busy serve, and the same index pages copied again and again.
        cursor.execute(f"PRAGMA wal_autocheckpoint = {SQLITE_CHECKPOINT_PAGES}")
        cursor.execute(f"PRAGMA cache_size = -{int(cache_mb) * 1024}")
        # The staged source lives in temporary tables, whose default cache is small: a larger one
        # makes an incremental sync of millions of users faster, for more peak memory.
        cursor.execute("PRAGMA temp.cache_size = -131072")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {mode}")


def _enter_wal_mode(cursor: sqlite3.Cursor) -> None:
    # Switching a file to WAL needs an exclusive lock, and while another process is writing the
    # file (as it does while switching it to WAL) SQLite answers "database is locked" at once,
    # without its busy handler: of two processes opening a new state file together (two workers,
    # a run beside a daemon), one would fail.
    # The mode is persistent, so waiting here ends as soon as either of them has switched it.
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


@contextlib.contextmanager
def transaction(conn: Connection, *, write: bool = True, exclusive: bool = False) -> Iterator[Connection]:
    """One transaction on `conn`; `write=False` for work that touches only temporary tables or
    only reads (SQLite then does not take the database's write lock)."""
    if conn.dialect.name == "sqlite":
        conn.execution_options(sqlite_begin="EXCLUSIVE" if exclusive else "IMMEDIATE" if write else "DEFERRED")
        if write or exclusive:
            # Threads of one process take SQLite's write lock in turn here: waiting for it in
            # SQLite's busy handler instead sleeps in steps of up to 100 ms while the lock is
            # already free (serve's group commit and forwarder write all the time).
            writers = _sqlite_writers(conn.engine)
            # Bounded as SQLite's own wait is: a writer that never lets go fails the others as before.
            if not writers.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
                raise sqlite3.OperationalError("database is locked (another thread of this process held "
                                               f"the write lock for {SQLITE_BUSY_TIMEOUT_MS // 1000} s)")
            try:
                with conn.begin():
                    yield conn
            finally:
                writers.release()
            return
    with conn.begin():
        yield conn


_WRITERS_LOCK = threading.Lock()


def _sqlite_writers(engine: Engine) -> threading.RLock:
    """The lock this process's writers to `engine`'s SQLite file take in turn (reentrant: a
    thread that nests a second write transaction meets SQLite's busy timeout, as before)."""
    lock = engine.__dict__.get("_audsync_writers")
    if lock is None:
        with _WRITERS_LOCK:
            lock = engine.__dict__.setdefault("_audsync_writers", threading.RLock())
    return lock


@contextlib.contextmanager
def db_errors(url: str) -> Iterator[None]:
    """The edge where database errors become ours: whatever the block raises from SQLAlchemy, or
    from a driver's own cursor (the raw paths: COPY, pages read without SQLAlchemy), leaves it
    as a StateError naming the database (translate_db_error)."""
    try:
        yield
    except sa.exc.SQLAlchemyError as exc:
        raise translate_db_error(exc, url) from None
    except Exception as exc:
        if not _is_driver_error(exc):
            raise
        raise translate_db_error(exc, url) from None


def _is_driver_error(exc: BaseException) -> bool:
    if isinstance(exc, sqlite3.Error):
        return True
    psycopg = sys.modules.get("psycopg")  # loaded only where a PostgreSQL engine was made
    return psycopg is not None and isinstance(exc, psycopg.Error)


def translate_db_error(exc: BaseException, url: str) -> StateError:
    """Foreign database errors become one StateError at the edge, naming the database; one that
    retrying can cure (the server is down or starting, the database not created yet, a lock held
    too long) becomes a StateUnavailableError (exit 3)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(exc).__name__
    kind = StateUnavailableError if _temporary(exc, orig, text) else StateError
    return kind(redact(f"state database {url}: {text}"))


# libpq's answers to a wrong user or password: connecting again will not help.
_CREDENTIAL_TROUBLE = ("authentication failed", "pg_hba.conf", 'role "')


def _temporary(exc: BaseException, orig: BaseException, text: str) -> bool:
    if isinstance(exc, (sa.exc.DisconnectionError, sa.exc.TimeoutError)):
        return True
    if isinstance(orig, sqlite3.OperationalError):
        return "locked" in text  # past the busy timeout; a missing file or a full disk needs a person
    if type(orig).__module__.startswith("psycopg"):
        import psycopg

        # OperationalError: no connection (refused, timed out, server starting or shutting down,
        # database missing) or a conflict the server resolved (deadlock, serialisation).
        return isinstance(orig, psycopg.OperationalError) and not any(t in text for t in _CREDENTIAL_TROUBLE)
    return False
