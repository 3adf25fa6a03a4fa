import multiprocessing

import sqlalchemy as sa

from audsync.state import migrate
from audsync.state.models import metadata


def test_upgrade_applies_every_migration_once_and_then_nothing(state_url):
    assert migrate.upgrade(state_url) == ["0001", "0002", "0003", "0004", "0005"]
    assert migrate.upgrade(state_url) == []
    assert migrate.current(state_url) == migrate.head()


def test_models_and_migrations_agree(state_url):
    migrate.upgrade(state_url)
    assert migrate.check(state_url) == []
    engine = sa.create_engine(state_url)
    try:
        tables = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
    finally:
        engine.dispose()
    assert tables == set(metadata.tables)


def _upgrade(url, queue):
    queue.put(migrate.upgrade(url))


def test_two_processes_upgrading_at_once_apply_each_migration_once(state_url):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_upgrade, args=(state_url, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    results = sorted([queue.get(timeout=5), queue.get(timeout=5)])
    assert results == [[], ["0001", "0002", "0003", "0004", "0005"]]


def test_sqlite_state_tables_are_keyed_without_rowid(sqlite_url):
    migrate.upgrade(sqlite_url)
    engine = sa.create_engine(sqlite_url)
    with engine.connect() as conn:
        for table in ("members", "outbox", "rejections"):
            sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = ?", (table,)).scalar_one()
            assert "WITHOUT ROWID" in sql
    engine.dispose()
