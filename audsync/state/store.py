"""The state store: audiences per destination, the synced members, the outbox, rejections, run
history and leases, on SQLite or PostgreSQL.

StateStore is assembled from one part per job, each in its own module: leases (leases.py),
audiences and runs (runs.py), the outbox's pages (outbox.py), settling answers (settle.py),
staging and planning (plan.py) and status queries (status.py). What SQLite and PostgreSQL do
differently is in dialects.py; database errors are translated at one edge (db.db_errors).
"""

from __future__ import annotations

from .outbox import Outbox
from .plan import Planning
from .runs import Runs
from .settle import Settling
from .status import StatusQueries
from ..errors import StateError
from .._redact import redact


class StateStore(Runs, Outbox, Settling, Planning, StatusQueries):
    """One state database. Thread-safe: every method takes its own pooled connection."""

    def __enter__(self) -> "StateStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check_schema(self) -> None:
        """Fail with a clear message when migrations were never applied."""
        from . import migrate

        if migrate.current(self.url) != migrate.head():
            raise StateError(f"state database {redact(self.url)} is not at the current schema; "
                             "run `audsync db upgrade`")


def open_store(url: str) -> StateStore:
    return StateStore(url)
