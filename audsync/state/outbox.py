"""The outbox: what is planned and not yet acknowledged, read in pages for delivery."""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import sqlalchemy as sa

from .base import StoreBase


class Outbox(StoreBase):
    def pending_count(self, audience_id: int) -> int:
        with self._conn(write=False) as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM outbox WHERE audience_id = :a AND status = 'pending'"),
                {"a": audience_id}).scalar_one())

    def pending_run_ids(self, audience_id: int) -> list[int]:
        with self._conn(write=False) as conn:
            return [int(r) for r in conn.execute(sa.text(
                "SELECT DISTINCT run_id FROM outbox WHERE audience_id = :a AND status = 'pending' ORDER BY run_id"),
                {"a": audience_id}).scalars()]

    def pending_pages(self, audience_id: int, *, run_id: int | None = None, before_run: int | None = None,
                      page_rows: int = 5000) -> Iterator[list[Sequence]]:
        """Pending outbox rows in pages, walking the primary key (keyset pagination), each page
        read in its own short transaction so outcomes can be committed between pages. A row is a
        tuple or list in PendingRow's field order (building PendingRows costs as much as reading
        the rows, under the interpreter's lock that the delivery loop needs); how a page is read
        is the dialect's (Dialect.page_sql)."""
        cond = ""
        params: dict[str, Any] = {"a": audience_id, "n": page_rows}
        if run_id is not None:
            cond += " AND run_id = :run"
            params["run"] = run_id
        if before_run is not None:
            cond += " AND run_id < :before"
            params["before"] = before_run
        columns = "identity, user_id, anonymous_id, value, change, run_id"
        page = (f"SELECT {columns} FROM outbox WHERE audience_id = :a AND status = 'pending'{cond} "
                "AND identity > :after ORDER BY identity LIMIT :n")
        # Compiled once and run on the driver's cursor: SQLAlchemy's row processing costs as
        # much as everything else on this path at millions of rows.
        compiled = sa.text(self.dialect.page_sql(columns, page)).compile(dialect=self.engine.dialect)
        positional = self.engine.dialect.positional
        after = ""
        while True:
            values = dict(params, after=after)
            args: Any = (tuple(values[name] for name in compiled.positiontup) if positional
                         else compiled.construct_params(values))
            with self._conn(write=False) as conn:  # driver errors too are translated there
                cursor = conn.connection.driver_connection.cursor()
                try:
                    cursor.execute(str(compiled), args)
                    rows, last = self.dialect.read_page(cursor)
                finally:
                    cursor.close()
            if not rows:
                return
            yield rows
            if len(rows) < page_rows:
                return
            after = last
