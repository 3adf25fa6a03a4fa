"""Alembic environment: runs on the connection audsync.state.migrate hands over.

audsync.state.migrate opens the connection, takes the migration lock (an exclusive SQLite
transaction or a PostgreSQL advisory lock) and passes it in `config.attributes["connection"]`,
so that two processes starting at once never apply the same migration twice.
"""

from alembic import context

from audsync.state.models import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through audsync.state.migrate (audsync db upgrade)")

applied = config.attributes.setdefault("applied", [])


def _record(ctx, step, heads, run_args):  # noqa: ANN001 (Alembic's callback signature)
    applied.extend(step.up_revision_ids if step.is_upgrade else [])


context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    on_version_apply=_record,
)
with context.begin_transaction():
    context.run_migrations()
