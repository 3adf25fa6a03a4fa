"""SQLAlchemy 2 models of the state database. Migrations in `migrations/` mirror them exactly
(tests/state/test_migrations.py runs Alembic's compare on SQLite and PostgreSQL).

State is per (audience key, destination). Identities are text compared byte for byte (COLLATE
"C" on PostgreSQL, BINARY on SQLite) so that the anti-joins of the diff never depend on a locale:
"u" + user_id, or "a" + anonymous_id for a profile without a user id.

Values are canonical JSON text (sorted keys); an audience member's value is `true`.
"""

from __future__ import annotations

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
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


metadata = Base.metadata
