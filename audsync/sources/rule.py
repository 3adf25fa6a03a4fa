"""Rule sources (DESIGN.md section 7): an audience's rule, compiled to one query that runs where the
events are and streams user_id (and value) into the sync like a SQL source's rows.

The query is compiled when the source is read, on the connection that runs it: the compiler is told
which tables the warehouse holds (an event without a table counts as zero occurrences, with a
warning), and the run's start time (`as_of`), from which every window is measured back.

`trait('<key of another configured audience>')` means "member of that audience". Its members come
from that audience's own rule, compiled into this query as a subquery, when both rules read one
database; otherwise from its synced members in the state database, which this query can read only
when its events are there too (the "audsync" layout: config.py refuses any other case). The run
syncs referenced audiences first (Config.in_run_order), so those members are current; a dry run
changes no state, so there they are the members as last synced. The compiler's CTE names are
anonymous, numbered for the whole statement, so a rule compiled into another meets none twice.

`explain` gives the compiled SQL of a rule audience for its database's dialect, with its parameters.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Mapping

from ..config import AudienceConfig, Config, RuleSource as RuleSourceConfig, reads_inline
from ..errors import ConfigError, SourceError
from .._redact import redact
from .hygiene import quoted
from .sql import SqlSource

log = logging.getLogger("audsync.rules")

Columns = Mapping[str, frozenset[str]]
Shape = tuple[frozenset[str] | None, Columns | None, Columns | None]
Tables = Callable[[str | None], Shape]
"""schema -> the names of the tables (and views) there, each one's columns, and each one's columns
of a number type; None for what cannot be known."""
_UNKNOWN: Tables = lambda schema: (None, None, None)  # noqa: E731


@dataclass(frozen=True)
class CompiledAudience:
    query: Any                       # sqlalchemy Select: user_id [, anonymous_id] [, value]
    warnings: tuple[str, ...]        # each naming its audience
    value_json: bool = False         # the value column is JSON text to decode


def _rule_of(audience: AudienceConfig, config: Config) -> RuleSourceConfig:
    if not isinstance(audience.source, RuleSourceConfig):
        raise ConfigError(f"{config.path}: audience {quoted(audience.name)} has a {audience.source.type} source, "
                          "not a rule (source = { type = \"rule\", rule = \"...\" }): only a rule is compiled to SQL")
    return audience.source


def synced_members(config: Config, key: str) -> Any:
    """The state database's current synced members of audience `key` (for this destination), as a
    selectable with a user_id column."""
    import sqlalchemy as sa

    from ..state.models import Audience, Member

    members, audiences = Member.__table__, Audience.__table__
    return (sa.select(members.c.user_id)
            .join(audiences, audiences.c.id == members.c.audience_id)
            .where(audiences.c.destination == config.amplitude.destination_id, audiences.c.key == key,
                   members.c.user_id.is_not(None))
            .subquery(f"members_of_{key}"))


def compile_audience(config: Config, audience: AudienceConfig, as_of: datetime, tables: Tables) -> CompiledAudience:
    """The query of a rule audience as of `as_of`, with the rules of the audiences it reads compiled
    in where they read the same database; raises ConfigError for an audience without a rule."""
    from ..rules.compile import Warehouse, compile_rule

    _rule_of(audience, config)
    by_key = {a.key: a for a in config.audiences}
    warnings: list[str] = []
    shared: dict = {}  # what the rules compiled into this one query build once (compile_rule)

    def build(current: AudienceConfig, through: tuple[str, ...]) -> Any:  # the Compiled of `current`
        spec = current.source
        assert isinstance(spec, RuleSourceConfig)
        references: dict[str, Any] = {}
        for key in spec.references:
            other = by_key[key]
            if reads_inline(spec, other):
                references[key] = build(other, through + (other.name,)).query.subquery(f"audience_{key}")
            else:
                references[key] = synced_members(config, key)
        compiled = compile_rule(spec.tree, kind=current.kind,
                                warehouse=Warehouse(layout=spec.layout, schema=spec.schema,
                                                    **_shape(spec, tables)),
                                as_of=as_of, include_anonymous=current.include_anonymous,
                                audiences=references or None, shared=shared)
        chain = ""
        if through:
            via = "".join(f" through {quoted(name)}" for name in through[:-1])
            chain = f" (in the rule of audience {quoted(through[-1])}, which this rule reads{via})"
        warnings.extend(f"audience {quoted(audience.name)}: {warning}{chain}" for warning in compiled.warnings)
        return compiled

    compiled = build(audience, ())
    return CompiledAudience(compiled.query, tuple(warnings), compiled.value_json)


def _shape(spec: RuleSourceConfig, tables: Tables) -> dict[str, Any]:
    """Warehouse's `tables` and `columns` for a rule. The events store of the "audsync" layout is
    one table that the state's migrations create, whatever events it holds: nothing to inspect."""
    if spec.layout == "audsync":
        return {"tables": None, "columns": None}
    names, columns, numeric = tables(spec.schema)
    return {"tables": names, "columns": columns, "numeric": numeric}


def inspected_tables(conn: Any) -> Tables:
    """Per schema (cached), the tables and views the connection's database holds there, with their
    columns: a warehouse creates a property's column only once a value arrives, and the compiler
    reads a missing one as null (with a warning) rather than sending a query that fails."""
    import sqlalchemy as sa

    inspector = sa.inspect(conn)
    known: dict[str | None, Shape] = {}

    def tables(schema: str | None) -> Shape:
        if schema not in known:
            names = frozenset(inspector.get_table_names(schema=schema)) | \
                frozenset(inspector.get_view_names(schema=schema))
            columns, numeric = _columns(conn, inspector, schema)
            known[schema] = (names | frozenset(columns or ()), columns, numeric)
        return known[schema]

    return tables


# information_schema's data_type of number columns, lower-cased (PostgreSQL, DuckDB and the others'
# spellings); any other type may hold text, which the compiler reads as a number only when it is one.
_NUMBER_TYPES = frozenset({"smallint", "integer", "int", "bigint", "hugeint", "tinyint", "ubigint", "uinteger",
                           "usmallint", "utinyint", "real", "float", "double", "double precision", "numeric",
                           "decimal", "number", "float4", "float8", "int2", "int4", "int8", "int64", "float64"})


def _columns(conn: Any, inspector: Any, schema: str | None) -> tuple[Columns | None, Columns | None]:
    """The columns of every table and view of `schema`, and of those the ones of a number type, in
    one catalogue query where the dialect has one (rather than one per table of a warehouse that may
    hold hundreds); the standard information_schema where the dialect's own reflection fails
    (duckdb-engine's reads PostgreSQL catalogues DuckDB lacks); None when neither answers (the
    compiler then takes columns as named)."""
    import sqlalchemy as sa

    errors = (sa.exc.SQLAlchemyError, conn.dialect.loaded_dbapi.Error)
    try:
        found = inspector.get_multi_columns(schema=schema, kind=sa.engine.ObjectKind.ANY)
        rows = [(table, column["name"], isinstance(column["type"], (sa.Integer, sa.Numeric, sa.Float)))
                for (_, table), described in found.items() for column in described]
    except errors:
        conn.rollback()  # a failed statement leaves some databases' transaction unusable
        info = sa.table("columns", sa.column("table_schema"), sa.column("table_name"), sa.column("column_name"),
                        sa.column("data_type"), schema="information_schema")
        query = sa.select(info.c.table_name, info.c.column_name, info.c.data_type).where(
            info.c.table_schema == (schema if schema is not None else sa.func.current_schema()))
        try:
            rows = [(table, column, str(kind).lower() in _NUMBER_TYPES) for table, column, kind in conn.execute(query)]
        except errors:
            conn.rollback()
            return None, None
    columns: dict[str, set[str]] = {}
    numeric: dict[str, set[str]] = {}
    for table, column, is_number in rows:
        columns.setdefault(table, set()).add(column)
        if is_number:
            numeric.setdefault(table, set()).add(column)
    return ({table: frozenset(names) for table, names in columns.items()},
            {table: frozenset(numeric.get(table, ())) for table in columns})


def _value_processor(compiled: CompiledAudience, dialect: Any) -> Any:
    """What turns the value column's raw driver value into Python's: the JSON text the compiler
    marks, else what SQLAlchemy would do for the column's SQL type (None when nothing)."""
    if compiled.value_json:
        import orjson

        loads = orjson.loads
        return lambda value: loads(value) if isinstance(value, (str, bytes)) else value
    column = compiled.query.selected_columns.get("value")
    return None if column is None else column.type.result_processor(dialect, None)


class RuleSource(SqlSource):
    """Reads a rule audience: its compiled query, streamed in chunks by SqlSource's machinery."""

    def __init__(self, audience: AudienceConfig, config: Config, as_of: datetime, min_id_length: int,
                 chunk_rows: int):
        spec = audience.source
        assert isinstance(spec, RuleSourceConfig)
        super().__init__(audience, spec.url, spec.rule, min_id_length, chunk_rows)
        self.config = config
        self.as_of = as_of

    def __repr__(self) -> str:
        return redact(f"RuleSource({self.audience.name!r}, {self.url!r}, as_of={self.as_of.isoformat()})")

    def _execute(self, conn: Any) -> Any:
        compiled = compile_audience(self.config, self.audience, self.as_of, inspected_tables(conn))
        for warning in compiled.warnings:
            log.warning("%s", warning, extra={"audience": self.audience.key})
        if self.computed:
            self._value_processor = _value_processor(compiled, conn.dialect)
        if conn.dialect.name == "postgresql":
            import sqlalchemy as sa

            # The result is streamed through a server-side cursor, for which PostgreSQL plans to
            # fetch the first 10% of rows fast: nested loops over the compiled CTEs, many times
            # slower than the plan for the whole result, which a run always reads.
            # (set_config, not SET LOCAL: a statement of this streaming connection goes through a
            # cursor, which only a SELECT can have.)
            conn.execute(sa.select(sa.func.set_config("cursor_tuple_fraction", "1", True))).scalar_one()
        return conn.execute(compiled.query)


# --- explain ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Explanation:
    audience: AudienceConfig
    dialect: str
    sql: str
    parameters: Mapping[str, Any]
    warnings: tuple[str, ...]
    as_of: datetime
    tables_unknown: str | None    # why the warehouse's tables could not be inspected, None when they were

    def render(self) -> str:
        source = self.audience.source
        assert isinstance(source, RuleSourceConfig)
        where = f"layout {source.layout}" + (f", schema {source.schema}" if source.schema else "")
        database = "the state database" if source.layout == "audsync" else "the warehouse"
        lines = [f"-- audience {quoted(self.audience.name)} (key {self.audience.key}, {self.audience.kind})",
                 *_comment("rule: ", source.rule),
                 f"-- events: {where}, in {database} ({self.dialect})",
                 f"-- as of {_instant(self.as_of)}: windows are measured back from this instant "
                 "(a run uses its start time)"]
        if self.tables_unknown:
            lines.append(f"-- tables not inspected ({self.tables_unknown}): every event is assumed to have its table")
        lines += [f"-- warning: {warning}" for warning in self.warnings]
        lines.append(self.sql.strip() + ";")
        if self.parameters:
            lines.append("-- parameters:")
            lines += [f"--   {name} = {_shown(value)}" for name, value in self.parameters.items()]
        return "\n".join(lines)


def _comment(head: str, text: str) -> list[str]:
    first, *rest = text.strip().splitlines() or [""]
    return [f"-- {head}{first}"] + [f"-- {' ' * len(head)}{line}" for line in rest]


def _instant(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _shown(value: Any) -> str:
    if isinstance(value, datetime):
        return _instant(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False, default=str)


def _needs_tables(config: Config, audience: AudienceConfig) -> bool:
    """Whether compiling the audience's query (its references' rules included) asks for a
    warehouse's tables."""
    by_key = {a.key: a for a in config.audiences}
    spec = audience.source
    assert isinstance(spec, RuleSourceConfig)
    return spec.layout != "audsync" or any(reads_inline(spec, by_key[key]) and _needs_tables(config, by_key[key])
                                           for key in spec.references)


def _missing_sqlite_file(engine: Any) -> str | None:
    from pathlib import Path

    database = engine.url.database
    if (engine.dialect.name == "sqlite" and database and database != ":memory:"
            and not database.startswith("file:") and not Path(database).is_file()):
        return f"no SQLite database file {database}"
    return None


def explain(config: Config, name: str, as_of: datetime) -> Explanation:
    """The SQL a run of rule audience `name` would send as of `as_of`, for its database's dialect,
    with its bound parameters apart (never pasted into the text). The warehouse is asked which
    tables it holds, as a run does; when it cannot be reached the SQL is compiled as if every
    event had its table, and the explanation says so."""
    import sqlalchemy as sa

    audience = config.audience(name)
    source = _rule_of(audience, config)
    place = f"audience {quoted(audience.name)}: source.url"
    try:
        engine = sa.create_engine(source.url)
    except ImportError as exc:
        raise SourceError(redact(f"{place} {source.url!r} needs a database driver that is not installed "
                                 f"({exc.name or exc})")) from None
    except sa.exc.SQLAlchemyError as exc:
        raise SourceError(redact(f"{place} {source.url!r} cannot be used ({exc})")) from None
    unknown: str | None = None
    try:
        if not _needs_tables(config, audience):
            compiled = compile_audience(config, audience, as_of, _UNKNOWN)
        elif (missing := _missing_sqlite_file(engine)) is not None:
            unknown = missing  # connecting would create an empty database there
            compiled = compile_audience(config, audience, as_of, _UNKNOWN)
        else:
            try:
                with engine.connect() as conn:
                    compiled = compile_audience(config, audience, as_of, inspected_tables(conn))
            except (sa.exc.SQLAlchemyError, engine.dialect.loaded_dbapi.Error) as exc:
                text = str(getattr(exc, "orig", None) or exc).strip()
                unknown = redact(f"cannot connect to {source.url}: "
                                 f"{text.splitlines()[0] if text else type(exc).__name__}")
                compiled = compile_audience(config, audience, as_of, _UNKNOWN)
        sql = compiled.query.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
    finally:
        engine.dispose()
    return Explanation(audience=audience, dialect=engine.dialect.name, sql=str(sql), parameters=dict(sql.params),
                       warnings=compiled.warnings, as_of=as_of, tables_unknown=unknown)
