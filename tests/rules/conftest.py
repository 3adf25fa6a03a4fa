"""Event sets loaded into real databases in each layout, for the compiler's tests.

An event set is a list of Segment-style messages (`type`, `event`, `userId`, `anonymousId`,
`properties`, `context`, `traits`, `previousId`, `messageId`) with `ago`: how long before AS_OF the
event happened. `load(engine, layout, schema, events)` writes them as that layout stores them: the
`events` table of audsync's state database, or the tables Segment / RudderStack load into a warehouse
(one table per track event with a column per property, pages, screens, identifies, aliases, tracks).

`warehouses` (module scope) gives, per database and layout, a loader that loads each event set once
into its own schema (PostgreSQL, DuckDB) or file (SQLite) and answers (engine, Warehouse).
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

import pg_server

from audsync.rules.compile import Warehouse
from audsync.rules.layouts import rudderstack_event_table, rudderstack_snake, segment_snake
from audsync.state.models import Event

AS_OF = datetime(2026, 1, 31, 12, 0, tzinfo=timezone.utc)

# Which layouts run on which database: the audsync layout is the state database (SQLite or
# PostgreSQL); a warehouse layout runs on PostgreSQL, on DuckDB as a local warehouse, and on SQLite.
COMBINATIONS = [("sqlite", "audsync"), ("postgresql", "audsync"),
                ("sqlite", "segment"), ("postgresql", "segment"), ("duckdb", "segment"),
                ("sqlite", "rudderstack"), ("postgresql", "rudderstack"), ("duckdb", "rudderstack")]


def _when(message) -> datetime:
    ago = message.get("ago", timedelta(days=1))
    return AS_OF - (ago if isinstance(ago, timedelta) else timedelta(days=ago))


def _ids(events):
    counter = itertools.count(1)
    return [dict(m, messageId=m.get("messageId") or f"msg-{next(counter)}") for m in events]


def load(engine: sa.Engine, layout: str, schema: str | None, events: list[dict]) -> Warehouse:
    events = _ids(events)
    if layout == "audsync":
        md = sa.MetaData()
        table = Event.__table__.to_metadata(md, schema=schema)
        md.create_all(engine)
        rows = []
        for m in events:
            ts = _when(m).timestamp()
            kind = m["type"]
            name = m.get("event") if kind == "track" else m.get("name")
            rows.append(dict(message_id=m["messageId"], type=kind, event=name, user_id=m.get("userId"),
                             anonymous_id=m.get("anonymousId"), previous_id=m.get("previousId"),
                             timestamp=ts, received_at=ts,
                             properties=_json(m.get("properties")), traits=_json(m.get("traits")),
                             context=_json(m.get("context"))))
        with engine.begin() as conn:
            conn.execute(sa.insert(table), rows)
        return Warehouse("audsync", schema, None)
    snake = segment_snake if layout == "segment" else rudderstack_snake
    event_table = segment_snake if layout == "segment" else rudderstack_event_table
    tables: dict[str, list[dict]] = {}
    for m in events:
        kind = m["type"]
        row = {"id": m["messageId"], "user_id": m.get("userId"), "anonymous_id": m.get("anonymousId"),
               "timestamp": _when(m)}
        for path, value in _flatten(m.get("context") or {}):
            row["context_" + "_".join(snake(p) for p in path)] = value
        if kind == "track":
            common = dict(row, event=event_table(m["event"]), event_text=m["event"])
            tables.setdefault("tracks", []).append(common)
            tables.setdefault(event_table(m["event"]), []).append(
                dict(common, **{snake(k): v for k, v in (m.get("properties") or {}).items()}))
        elif kind in ("page", "screen"):
            tables.setdefault(kind + "s", []).append(
                dict(row, name=m.get("name"), **{snake(k): v for k, v in (m.get("properties") or {}).items()}))
        elif kind == "identify":
            tables.setdefault("identifies", []).append(
                dict(row, **{snake(k): v for k, v in (m.get("traits") or {}).items()}))
        elif kind == "alias":
            tables.setdefault("aliases", []).append(dict(row, previous_id=m.get("previousId")))
    md = sa.MetaData(schema=schema)
    made = []
    for name, rows in tables.items():
        columns = {}
        for row in rows:
            for key, value in row.items():
                columns.setdefault(key, set()).add(type(value))
        table = sa.Table(name, md, *(sa.Column(key, _type(kinds)) for key, kinds in columns.items()))
        made.append((table, [{k: row.get(k) for k in columns} for row in rows]))
    md.create_all(engine)
    with engine.begin() as conn:
        for table, rows in made:
            conn.execute(sa.insert(table), rows)
    return Warehouse(layout, schema, frozenset(tables))


def _json(value):
    return None if value is None else json.dumps(value)


def _flatten(obj, prefix=()):
    for key, value in obj.items():
        if isinstance(value, dict):
            yield from _flatten(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def _type(kinds: set) -> sa.types.TypeEngine:
    kinds = kinds - {type(None)}
    if not kinds or kinds == {str}:
        return sa.Text()
    if kinds <= {datetime}:
        return sa.DateTime(timezone=True)
    if kinds <= {bool}:
        return sa.Boolean()
    if kinds <= {int}:
        return sa.BigInteger()
    if kinds <= {int, float}:
        return sa.Float()
    return sa.Text()


class Warehouses:
    """Engines per database, and each (layout, event set) loaded once."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.engines: dict[str, sa.Engine] = {}
        self.loaded: dict[tuple, tuple[sa.Engine, Warehouse]] = {}
        self.pg_url: str | None = None

    def engine(self, database: str, key: str) -> tuple[sa.Engine, str | None]:
        if database == "sqlite":
            # A file per event set: SQLite's schemas are attached files, one engine is simpler.
            if key not in self.engines:
                self.engines[key] = sa.create_engine(f"sqlite:///{self.tmp / (key + '.db')}")
            return self.engines[key], None
        if database == "duckdb":
            if "duckdb" not in self.engines:
                self.engines["duckdb"] = sa.create_engine(f"duckdb:///{self.tmp / 'warehouse.duckdb'}")
            engine = self.engines["duckdb"]
        else:
            if "postgresql" not in self.engines:
                pg_server.require()
                self.pg_url = pg_server.create_database()
                self.engines["postgresql"] = sa.create_engine(self.pg_url)
            engine = self.engines["postgresql"]
        with engine.begin() as conn:
            conn.execute(sa.schema.CreateSchema(key, if_not_exists=True))
        return engine, key

    def get(self, database: str, layout: str, set_name: str, events: list[dict]):
        key = (database, layout, set_name)
        if key not in self.loaded:
            engine, schema = self.engine(database, f"{layout}_{set_name}")
            self.loaded[key] = (engine, load(engine, layout, schema, events))
        return self.loaded[key]

    def close(self):
        for engine in self.engines.values():
            engine.dispose()
        if self.pg_url:
            pg_server.drop_database(self.pg_url)


@pytest.fixture(scope="module")
def warehouses(tmp_path_factory):
    found = Warehouses(tmp_path_factory.mktemp("warehouses"))
    yield found
    found.close()
