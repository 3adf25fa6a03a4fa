"""Database errors leave the state layer as StateErrors naming the database, whichever path
met them: SQLAlchemy's, or a driver's own cursor (outbox pages, staging)."""

import pytest

from audsync.errors import StateError
from audsync.state import open_store


def test_a_raw_cursor_path_failing_raises_a_state_error_naming_the_database(state_url):
    store = open_store(state_url)  # never migrated: no outbox, no members table
    try:
        with pytest.raises(StateError, match=r"state database .*outbox"):
            list(store.pending_pages(1))
        with pytest.raises(StateError, match="state database"):
            with store.work(1) as work:
                work.load(iter([[("user1", None, None)]]), computed=False)
                work.build_current(computed=False)
        with pytest.raises(StateError, match=r"state database .*outbox"):
            store.pending_count(1)
    finally:
        store.close()
