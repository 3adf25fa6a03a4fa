"""Ingest: what the forwarders settled per minute, for the status page (issue 18).

A forwarded message leaves ingest_log; this table keeps, per UTC minute of Amplitude's answer,
how many messages were forwarded, skipped (filtered out by the settings) and refused for good,
with the sum and maximum of the forward lags (receivedAt to acknowledgement) of those forwarded.
One row per minute, upserted once per forwarder round; pruned after a day.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: Union[str, Sequence[str], None] = "0003"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        "ingest_forward_minutes",
        sa.Column("minute", sa.BigInteger(), nullable=False),
        sa.Column("forwarded", sa.BigInteger(), nullable=False),
        sa.Column("skipped", sa.BigInteger(), nullable=False),
        sa.Column("refused", sa.BigInteger(), nullable=False),
        sa.Column("lag_sum", sa.Float(), nullable=False),
        sa.Column("lag_max", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("minute", name="pk_ingest_forward_minutes"),
    )


def downgrade() -> None:
    op.drop_table("ingest_forward_minutes")
