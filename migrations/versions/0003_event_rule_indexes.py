"""Events: the indexes rule audiences of the audsync layout use (issue 17).

- (type, timestamp): page and screen windows (`event('Page Viewed').within(14 days)`: a page's
  `event` column holds its name, so ix_events_event_timestamp cannot serve them) and the identify
  rows that traits and identity links read;
- (previous_id, timestamp) of alias rows only: the alias links, a few rows that the links otherwise
  find by reading the whole table. Partial, so that other rows cost the write path nothing.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06
"""
from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: Union[str, Sequence[str], None] = "0002"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

ALIAS_ROWS = sa.text("type = 'alias'")


def upgrade() -> None:
    op.create_index("ix_events_type_timestamp", "events", ["type", "timestamp"])
    op.create_index("ix_events_alias_previous_id_timestamp", "events", ["previous_id", "timestamp"],
                    postgresql_where=ALIAS_ROWS, sqlite_where=ALIAS_ROWS)


def downgrade() -> None:
    op.drop_index("ix_events_alias_previous_id_timestamp", table_name="events")
    op.drop_index("ix_events_type_timestamp", table_name="events")
