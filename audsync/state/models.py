"""SQLAlchemy 2 models of the state database. Migrations in `migrations/` mirror them exactly
(tests/state/test_migrations.py runs Alembic's compare on SQLite and PostgreSQL).

State is per (audience key, destination). Identities are text compared byte for byte (COLLATE
"C" on PostgreSQL, BINARY on SQLite) so that the anti-joins of the diff never depend on a locale:
"u" + user_id, or "a" + anonymous_id for a profile without a user id.

Values are canonical JSON text (sorted keys); an audience member's value is `true`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Byte-wise comparison on PostgreSQL: faster than a locale collation and independent of it.
IdText = Text().with_variant(Text(collation="C"), "postgresql")
# Keys of the ingest tables, which a server fills at tens of thousands of rows a second: a 32-bit
# sequence would run out within days on PostgreSQL. On SQLite the key must stay "INTEGER" to be
# the rowid (a BIGINT primary key is not, and gets no automatic values).
RowKey = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Audience(Base):
    """One audience (or computed trait) as synced to one destination (endpoint + API key)."""

    __tablename__ = "audiences"
    __table_args__ = (Index("uq_audiences_destination_key", "destination", "key", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    destination: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[float] = mapped_column(Float)
    # Set by the first run that planned (or, with --skip-backfill, recorded) its members: from
    # then on a run sends only changes.
    first_synced_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class Member(Base):
    """The synced state: what Amplitude acknowledged, per user. Advances only on acknowledgement."""

    __tablename__ = "members"
    __table_args__ = ({"sqlite_with_rowid": False},)

    audience_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # no foreign key: see 0001_initial
    identity: Mapped[str] = mapped_column(IdText, primary_key=True)
    user_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    anonymous_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    value: Mapped[str] = mapped_column(Text)


class Outbox(Base):
    """The plan: at most one open operation per user (a newer plan replaces an older one).

    `value` is the target (NULL: exit, or $unset for a computed trait); with `change` and
    `run_id` it rebuilds the exact operations deterministically, so no JSON is stored per row.
    `status` is "pending" until Amplitude answers; "rejected" rows stay as the planned state so
    that a rejected value is not resent until it changes again.
    """

    __tablename__ = "outbox"
    __table_args__ = ({"sqlite_with_rowid": False},)

    audience_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # no foreign key: see 0001_initial
    identity: Mapped[str] = mapped_column(IdText, primary_key=True)
    user_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    anonymous_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    value: Mapped[str | None] = mapped_column(Text, nullable=True)
    change: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))


class Rejection(Base):
    """Users whose latest operation Amplitude rejected for good, with Amplitude's reason."""

    __tablename__ = "rejections"
    __table_args__ = ({"sqlite_with_rowid": False},)

    audience_id: Mapped[int] = mapped_column(Integer, primary_key=True)  # no foreign key: see 0001_initial
    identity: Mapped[str] = mapped_column(IdText, primary_key=True)
    user_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    anonymous_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    value: Mapped[str | None] = mapped_column(Text, nullable=True)
    change: Mapped[str] = mapped_column(String(16))
    api: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    run_id: Mapped[int] = mapped_column(Integer)
    rejected_at: Mapped[float] = mapped_column(Float)


class Run(Base):
    """One pass over one audience, with its counts (kept for `status`)."""

    __tablename__ = "runs"
    __table_args__ = (Index("ix_runs_audience_id_started_at", "audience_id", "started_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    audience_id: Mapped[int] = mapped_column(ForeignKey("audiences.id"))
    mode: Mapped[str] = mapped_column(String(16))  # run | backfill | skip-backfill
    status: Mapped[str] = mapped_column(String(16))  # running | ok | partial | failed | stopped | interrupted | guarded
    started_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[str] = mapped_column(Text, default="{}")  # JSON: reason -> rows
    entered: Mapped[int] = mapped_column(Integer, default=0)
    exited: Mapped[int] = mapped_column(Integer, default=0)
    changed: Mapped[int] = mapped_column(Integer, default=0)
    unset: Mapped[int] = mapped_column(Integer, default=0)
    resent: Mapped[int] = mapped_column(Integer, default=0)
    delivered: Mapped[int] = mapped_column(Integer, default=0)
    rejected: Mapped[int] = mapped_column(Integer, default=0)
    pending: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class Lease(Base):
    """Who runs an audience right now; a lease is taken when absent or expired (database clock)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255))
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)


# ------------------------------------------------------------------ ingest (`audsync serve`)
# Times are Unix seconds, as elsewhere in the state; the messages keep Segment's ISO texts.


class IngestMessage(Base):
    """The ingest log: messages accepted (committed before the 200) and not yet forwarded.

    A forwarded message leaves the log (the events store keeps the event); one Amplitude rejected
    for good stays as "rejected" with its reason (`settled_at`). Order per user (`partition_key`:
    "u" + user_id, else "a" + anonymous_id, as identities elsewhere) is the order of `id`.
    Whether a forwarder holds the message is its user's lease in ingest_partitions: a claim
    writes nothing here (audsync.state.ingest).
    """

    __tablename__ = "ingest_log"
    __table_args__ = (
        Index("ix_ingest_log_status_id", "status", "id"),
        # A user's pending messages in order, whatever the planner knows of the table.
        Index("ix_ingest_log_partition_key_status_id", "partition_key", "status", "id"),
    )

    id: Mapped[int] = mapped_column(RowKey, primary_key=True)
    message_id: Mapped[str] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(255), nullable=True)  # never a write key itself
    type: Mapped[str] = mapped_column(String(16))
    user_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    anonymous_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    partition_key: Mapped[str] = mapped_column(IdText)
    received_at: Mapped[float] = mapped_column(Float)
    body: Mapped[str] = mapped_column(Text)  # the message as JSON, with the server's receivedAt and timestamp
    status: Mapped[str] = mapped_column(String(16))  # pending | rejected
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    settled_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class IngestPartition(Base):
    """A user (partition key) whose messages a forwarder has in flight, until it settles or
    releases them or its lease expires: the lock that keeps one user's messages in one sender's
    hands, in order, across several servers. The messages in flight are the user's pending ones
    up to `handed_upto`, the last ingest_log id the claim read."""

    __tablename__ = "ingest_partitions"
    __table_args__ = ({"sqlite_with_rowid": False},)

    partition_key: Mapped[str] = mapped_column(IdText, primary_key=True)
    claimed_by: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[float] = mapped_column(Float)
    handed_upto: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class IngestSeen(Base):
    """messageIds accepted in the last 24 hours: a resend is acknowledged and not stored again."""

    __tablename__ = "ingest_dedup"
    __table_args__ = (Index("ix_ingest_dedup_received_at", "received_at"), {"sqlite_with_rowid": False})

    message_id: Mapped[str] = mapped_column(IdText, primary_key=True)
    received_at: Mapped[float] = mapped_column(Float)


class IngestForwardMinute(Base):
    """What the forwarders settled in one UTC minute (`minute`: its Unix time), by the minute of
    Amplitude's answer: messages forwarded, skipped (the settings send nothing for them) and
    refused for good, and the sum and maximum of the forwarded ones' lags (seconds from receivedAt
    to the acknowledgement). Forwarded messages leave the log: this is what the status page shows
    of forwarding, from any process."""

    __tablename__ = "ingest_forward_minutes"

    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    forwarded: Mapped[int] = mapped_column(BigInteger)
    skipped: Mapped[int] = mapped_column(BigInteger)
    refused: Mapped[int] = mapped_column(BigInteger)
    lag_sum: Mapped[float] = mapped_column(Float)
    lag_max: Mapped[float] = mapped_column(Float)


class IngestRejection(Base):
    """A message of a request refused by validation, with its reason, its index in the request
    and a truncated example of it (for `audsync status`)."""

    __tablename__ = "ingest_rejections"
    __table_args__ = (Index("ix_ingest_rejections_reason_id", "reason", "id"),)

    id: Mapped[int] = mapped_column(RowKey, primary_key=True)
    received_at: Mapped[float] = mapped_column(Float)
    source: Mapped[str | None] = mapped_column(String(255), nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    message_index: Mapped[int] = mapped_column(Integer)  # its place in the request
    message_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    example: Mapped[str | None] = mapped_column(Text, nullable=True)


class Event(Base):
    """The events store: accepted track, page, screen, identify, group and alias messages, kept
    for `ingest.keep_events_days`, the input of rule audiences. The columns are those rule
    queries filter on (Segment's warehouse columns); properties, traits and context stay JSON.
    `event` is a track's event name, or a page's or screen's name. `timestamp` is the corrected
    event time (Engage's windows are on it); `received_at` decides when an event is pruned."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_user_id_timestamp", "user_id", "timestamp"),
        Index("ix_events_anonymous_id_timestamp", "anonymous_id", "timestamp"),
        Index("ix_events_event_timestamp", "event", "timestamp"),
        # For rule audiences (migration 0003): page windows and identify rows; alias links.
        Index("ix_events_type_timestamp", "type", "timestamp"),
        Index("ix_events_alias_previous_id_timestamp", "previous_id", "timestamp",
              postgresql_where=text("type = 'alias'"), sqlite_where=text("type = 'alias'")),
    )

    id: Mapped[int] = mapped_column(RowKey, primary_key=True)
    message_id: Mapped[str] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(255), nullable=True)
    type: Mapped[str] = mapped_column(String(16))
    event: Mapped[str | None] = mapped_column(IdText, nullable=True)
    user_id: Mapped[str | None] = mapped_column(IdText, nullable=True)
    anonymous_id: Mapped[str | None] = mapped_column(IdText, nullable=True)
    group_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    previous_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    timestamp: Mapped[float] = mapped_column(Float)
    received_at: Mapped[float] = mapped_column(Float)
    properties: Mapped[str | None] = mapped_column(Text, nullable=True)
    traits: Mapped[str | None] = mapped_column(Text, nullable=True)
    context: Mapped[str | None] = mapped_column(Text, nullable=True)


metadata = Base.metadata
