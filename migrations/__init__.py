"""Alembic migrations of the state database, shipped as the package audsync.migrations.

Configured from Python by audsync.state.migrate (no alembic.ini needed at runtime).
"""
