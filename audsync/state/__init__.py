"""The state database: models, migrations (audsync.state.migrate) and the store."""

from .store import (
    AudienceRow,
    AudienceWork,
    CurrentCounts,
    Fence,
    LeaseInfo,
    LeaseKeeper,
    PendingRow,
    Rejected,
    StateStore,
    canonical_json,
    open_store,
)

__all__ = [
    "AudienceRow", "AudienceWork", "CurrentCounts", "Fence", "LeaseInfo", "LeaseKeeper", "PendingRow", "Rejected",
    "StateStore", "canonical_json", "open_store",
]
