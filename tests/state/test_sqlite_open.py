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
