"""Ingest: a claim is recorded on the user's lease alone, not on each message (issue 16).

A forwarder's claim used to rewrite every message it took (claimed_by, attempts): a new row
version and new index entries per message, the largest cost of forwarding. The lease of each user
(ingest_partitions) now says all there is: who holds the user, until when, and handed_upto, the
last ingest_log id the claim read, so that the messages in flight are the user's pending ones up
to it. ingest_log loses claimed_by and attempts.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: Union[str, Sequence[str], None] = "0004"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    # Leases taken before the upgrade have no handed_upto: they count nothing in flight, and run out.
    with op.batch_alter_table("ingest_partitions") as batch:
        batch.add_column(sa.Column("handed_upto", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("ingest_log") as batch:
        batch.drop_column("claimed_by")
        batch.drop_column("attempts")


def downgrade() -> None:
    with op.batch_alter_table("ingest_log") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("claimed_by", sa.String(length=255), nullable=True))
    with op.batch_alter_table("ingest_partitions") as batch:
        batch.drop_column("handed_upto")
