"""The state database: models, migrations (audsync.state.migrate) and the store."""

from .ingest import ClaimedMessage, GroupCommitter, IngestLog, IngestStatus
from .leases import Fence, LeaseInfo, LeaseKeeper
from .plan import AudienceWork
from .records import AudienceRow, CurrentCounts, PendingRow, Rejected, canonical_json
from .settle import Settlement
from .store import StateStore, open_store

__all__ = [
    "AudienceRow", "AudienceWork", "ClaimedMessage", "CurrentCounts", "Fence", "GroupCommitter", "IngestLog",
    "IngestStatus", "LeaseInfo", "LeaseKeeper", "PendingRow", "Rejected",
    "Settlement", "StateStore", "canonical_json", "open_store",
]
