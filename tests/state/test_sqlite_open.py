"""Opening a SQLite state file that another process is using at that moment."""

import sqlite3
import threading

from audsync.state.db import make_engine


def test_opening_a_new_state_file_waits_for_another_holder_instead_of_failing(tmp_path):
    # A fresh file is in rollback-journal mode; while another process holds its write lock there
    # (as one does while switching the file to WAL), SQLite refuses our switch at once, without
    # calling its busy handler.
    path = tmp_path / "state.db"
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE t (x)")
    release = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    release.start()
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
    finally:
        release.join()
        engine.dispose()
        other.close()


def _write(engine, value):
    from audsync.state.db import transaction

    with engine.connect() as conn, transaction(conn):
        conn.exec_driver_sql("INSERT INTO t (x) VALUES (?)", (value,))


def test_threads_of_one_process_write_in_turn_and_a_stuck_writer_fails_the_others_in_time(tmp_path, monkeypatch):
    import time

    import pytest

    from audsync.errors import StateUnavailableError
    from audsync.state import db

    engine = make_engine(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with engine.connect() as conn, db.transaction(conn):
            conn.exec_driver_sql("CREATE TABLE t (x)")
        threads = [threading.Thread(target=lambda n=n: [_write(engine, n * 1000 + i) for i in range(200)])
                   for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT count(*) FROM t").scalar_one() == 800

        # A thread that holds the write lock and never lets go: the others fail with the
        # database's "locked" error after the busy timeout, as they would across processes.
        monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT_MS", 300)
        holding, done = threading.Event(), threading.Event()

        def hold():
            with engine.connect() as conn, db.transaction(conn):
                holding.set()
                done.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        holding.wait(10)
        started = time.monotonic()
        with pytest.raises(StateUnavailableError, match="locked"), db.db_errors("sqlite:///state.db"):
            _write(engine, -1)
        assert time.monotonic() - started < 5
        done.set()
        holder.join()
        _write(engine, -1)  # free again
    finally:
        engine.dispose()
