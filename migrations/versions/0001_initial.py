"""State database: audiences, members, outbox, rejections, runs, leases.

Revision ID: 0001
Revises:
Create Date: 2026-05-10
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: Union[str, Sequence[str], None] = None
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

IdText = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")


def _user_columns() -> list[sa.Column]:
    return [
        sa.Column("audience_id", sa.Integer(), nullable=False),
        sa.Column("identity", IdText, nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("anonymous_id", sa.Text(), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "audiences",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(length=32), nullable=False),
        sa.Column("key", sa.String(length=255), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("first_synced_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_audiences"),
    )
    op.create_index("uq_audiences_destination_key", "audiences", ["destination", "key"], unique=True)
    # The per-user tables carry no foreign key to audiences: PostgreSQL checks one per inserted
    # row, which made writing a plan and settling acknowledgements much slower. Only audsync
    # writes them, always under an audience row it created first and never deletes.
    op.create_table(
        "members",
        *_user_columns(),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("audience_id", "identity", name="pk_members"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "outbox",
        *_user_columns(),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("audience_id", "identity", name="pk_outbox"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "rejections",
        *_user_columns(),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("change", sa.String(length=16), nullable=False),
        sa.Column("api", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("rejected_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("audience_id", "identity", name="pk_rejections"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("audience_id", sa.Integer(), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.Text(), nullable=False),
        sa.Column("entered", sa.Integer(), nullable=False),
        sa.Column("exited", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("unset", sa.Integer(), nullable=False),
        sa.Column("resent", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["audience_id"], ["audiences.id"], name="fk_runs_audience_id_audiences"),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
    )
    op.create_index("ix_runs_audience_id_started_at", "runs", ["audience_id", "started_at"])
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("acquired_at", sa.Float(), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_leases"),
    )


def downgrade() -> None:
    for table in ("leases", "runs", "rejections", "outbox", "members"):
        op.drop_table(table)
    op.drop_index("uq_audiences_destination_key", table_name="audiences")
    op.drop_table("audiences")
