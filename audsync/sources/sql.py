"""SQL sources: the audience query runs in the source database and is streamed in chunks.

The query is sent as written (no bind-parameter parsing, so `'a:b'`, `::jsonb` and `LIKE 'x%'`
mean what they mean in that database), through a server-side cursor where the driver has one
(PostgreSQL), and fetched `chunk_rows` at a time straight from the DBAPI cursor: SQLAlchemy's
row objects would double the cost of ten million rows. Columns are found by name, ignoring case
(some warehouses answer USER_ID).
"""

from __future__ import annotations

from operator import itemgetter
from pathlib import Path
from typing import Any, Iterator

from ..config import AudienceConfig
from ..errors import SourceError
from .._redact import redact
from .hygiene import Hygiene, ids_from_python, quoted, values_from_python


class SqlSource:
    def __init__(self, audience: AudienceConfig, url: str, query: str, min_id_length: int, chunk_rows: int):
        self.audience = audience
        self.url = url
        self.query = query
        self.chunk_rows = chunk_rows
        self.computed = audience.kind == "computed_trait"
        self.hygiene = Hygiene(min_id_length, self.computed)
        self.skipped = self.hygiene.skipped
        self.rows_read = 0
        self._prefix = f"audience {quoted(audience.name)}"
        # Turns the driver's value into Python's where the query's value column has a SQL type that
        # needs it (JSON text on SQLite, say): the DBAPI rows are read without SQLAlchemy's processing.
        self._value_processor: Any = None

    def __repr__(self) -> str:
        return redact(f"SqlSource({self.audience.name!r}, {self.url!r})")

    def _fail(self, message: str) -> SourceError:
        return SourceError(redact(f"{self._prefix}: {message}"))

    def _detail(self, exc: BaseException) -> str:
        """The database's own message, first line (_fail masks a password should a driver echo it)."""
        text = str(getattr(exc, "orig", None) or exc).strip()
        return text.splitlines()[0] if text else type(exc).__name__

    def _execute(self, conn: Any) -> Any:
        """Runs the source's query on `conn` (with the streaming options set); its Result."""
        return conn.execution_options(no_parameters=True).exec_driver_sql(self.query)

    def chunks(self) -> Iterator[list[tuple[str | None, str | None, Any]]]:
        import sqlalchemy as sa

        try:
            engine = sa.create_engine(self.url)
        except ImportError as exc:
            raise self._fail(f"source.url {self.url!r} needs a database driver that is not "
                             f"installed ({exc.name or exc})") from None
        except sa.exc.SQLAlchemyError as exc:
            raise self._fail(f"source.url {self.url!r} cannot be used ({self._detail(exc)})") from None
        db_errors = (sa.exc.SQLAlchemyError, engine.dialect.loaded_dbapi.Error)
        database = engine.url.database
        if (engine.dialect.name == "sqlite" and database and database != ":memory:"
                and not database.startswith("file:") and not Path(database).is_file()):
            engine.dispose()
            # SQLite would create an empty file there and then report "no such table".
            directory = Path(database).parent
            missing = f"the directory {directory} does not exist" if not directory.is_dir() else \
                "no such SQLite database file"
            raise self._fail(f"source.url {self.url!r}: {missing}")
        try:
            try:
                conn = engine.connect()
            except db_errors as exc:
                raise self._fail(f"cannot connect to {self.url} ({self._detail(exc)})") from None
            with conn:
                try:
                    result = self._execute(conn.execution_options(stream_results=True, yield_per=self.chunk_rows))
                except db_errors as exc:
                    raise self._fail(f"the query failed: {self._detail(exc)}") from None
                if not result.returns_rows:
                    raise self._fail("the query returns no rows (it must be a SELECT)")
                yield from self._read(result, list(result.keys()), db_errors)
        finally:
            engine.dispose()

    def _columns(self, names: list[str]) -> dict[str, int]:
        shown = ", ".join(names) or "none"
        index: dict[str, int] = {}
        for i, name in enumerate(names):
            key = name.lower()
            if key in ("user_id", "anonymous_id", "value") and key in index:
                raise self._fail(f"the query returns {key} twice (columns: {shown})")
            index.setdefault(key, i)
        if "user_id" not in index and "anonymous_id" not in index:
            raise self._fail(f"the query returns no user_id or anonymous_id column (columns: {shown})")
        if self.computed and "value" not in index:
            raise self._fail(f"the query returns no value column, which a computed trait needs (columns: {shown})")
        return index

    def _read(self, result: Any, names: list[str], db_errors: tuple) -> Iterator[list[tuple]]:
        index = self._columns(names)
        u, a = index.get("user_id"), index.get("anonymous_id")
        v = index.get("value") if self.computed else None
        cursor = result.cursor
        try:
            # SQLAlchemy pre-reads a row of a server-side cursor to learn the columns: take it
            # through SQLAlchemy, then read the DBAPI cursor directly (SQLAlchemy's row objects
            # would double the cost of ten million rows).
            head = result.fetchmany(1)
            rows = [tuple(row) for row in head]
            if rows and self.chunk_rows > 1:
                rows += cursor.fetchmany(self.chunk_rows - 1)
        except db_errors as exc:
            raise self._fail(f"the query failed: {self._detail(exc)}") from None
        while rows:
            first = self.rows_read + 1

            def where(i: int, first: int = first) -> str:
                return f"{self._prefix}: query row {first + i}"

            users = ids_from_python(list(map(itemgetter(u), rows)), "user_id", where) if u is not None else None
            anons = ids_from_python(list(map(itemgetter(a), rows)), "anonymous_id", where) if a is not None else None
            if v is not None:
                raw = list(map(itemgetter(v), rows))
                if self._value_processor is not None:
                    raw = list(map(self._value_processor, raw))
                values = values_from_python(raw, where)
            else:
                values = None
            self.rows_read += len(rows)
            kept = self.hygiene.rows(users, anons, values, len(rows))
            if kept:
                yield kept
            if len(rows) < self.chunk_rows:
                return  # DBAPI: fewer rows than asked means there are no more
            try:
                rows = cursor.fetchmany(self.chunk_rows)
            except db_errors as exc:
                raise self._fail(f"the query failed after {self.rows_read:,} rows: {self._detail(exc)}") from None
