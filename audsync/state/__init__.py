"""The state database: models, migrations (audsync.state.migrate) and the store."""

from .leases import Fence, LeaseInfo, LeaseKeeper
from .plan import AudienceWork
from .records import AudienceRow, CurrentCounts, PendingRow, Rejected, canonical_json
from .settle import Settlement
from .store import StateStore, open_store

__all__ = [
    "AudienceRow", "AudienceWork", "CurrentCounts", "Fence", "LeaseInfo", "LeaseKeeper", "PendingRow", "Rejected",
    "Settlement", "StateStore", "canonical_json", "open_store",
]
