"""Ingest (`audsync serve`): the ingest log, per-user claims, messageIds seen, rejections, events.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: Union[str, Sequence[str], None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

IdText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
# BIGINT on PostgreSQL; INTEGER on SQLite, where only that makes the key the rowid.
RowKey = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "ingest_log",
        sa.Column("id", RowKey, nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("anonymous_id", sa.Text(), nullable=True),
        sa.Column("partition_key", IdText, nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("claimed_by", sa.String(length=255), nullable=True),
        sa.Column("settled_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ingest_log"),
    )
    op.create_index("ix_ingest_log_status_id", "ingest_log", ["status", "id"])
    op.create_index("ix_ingest_log_partition_key_status_id", "ingest_log", ["partition_key", "status", "id"])
    op.create_table(
        "ingest_partitions",
        sa.Column("partition_key", IdText, nullable=False),
        sa.Column("claimed_by", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("partition_key", name="pk_ingest_partitions"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "ingest_dedup",
        sa.Column("message_id", IdText, nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_ingest_dedup"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_ingest_dedup_received_at", "ingest_dedup", ["received_at"])
    op.create_table(
        "ingest_rejections",
        sa.Column("id", RowKey, nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("message_index", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("example", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ingest_rejections"),
    )
    op.create_index("ix_ingest_rejections_reason_id", "ingest_rejections", ["reason", "id"])
    op.create_table(
        "events",
        sa.Column("id", RowKey, nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=255), nullable=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("event", IdText, nullable=True),
        sa.Column("user_id", IdText, nullable=True),
        sa.Column("anonymous_id", IdText, nullable=True),
        sa.Column("group_id", sa.Text(), nullable=True),
        sa.Column("previous_id", sa.Text(), nullable=True),
        sa.Column("timestamp", sa.Float(), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("properties", sa.Text(), nullable=True),
        sa.Column("traits", sa.Text(), nullable=True),
        sa.Column("context", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
    )
    op.create_index("ix_events_user_id_timestamp", "events", ["user_id", "timestamp"])
    op.create_index("ix_events_anonymous_id_timestamp", "events", ["anonymous_id", "timestamp"])
    op.create_index("ix_events_event_timestamp", "events", ["event", "timestamp"])


def downgrade() -> None:
    op.drop_index("ix_events_event_timestamp", table_name="events")
    op.drop_index("ix_events_anonymous_id_timestamp", table_name="events")
    op.drop_index("ix_events_user_id_timestamp", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_ingest_rejections_reason_id", table_name="ingest_rejections")
    op.drop_table("ingest_rejections")
    op.drop_index("ix_ingest_dedup_received_at", table_name="ingest_dedup")
    op.drop_table("ingest_dedup")
    op.drop_table("ingest_partitions")
    op.drop_index("ix_ingest_log_partition_key_status_id", table_name="ingest_log")
    op.drop_index("ix_ingest_log_status_id", table_name="ingest_log")
    op.drop_table("ingest_log")
