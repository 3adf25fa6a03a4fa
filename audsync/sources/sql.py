"""SQL sources: the audience query runs in the source database and is streamed in chunks."""

from __future__ import annotations

from typing import Iterator

from ..config import AudienceConfig
from ..errors import SourceError
from .hygiene import SourceBase


def _safe_url(url: str) -> str:
    from sqlalchemy.engine.url import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as a placeholder, never as written
        return "<invalid URL>"


class SqlSource(SourceBase):
    def __init__(self, audience: AudienceConfig, url: str, query: str, min_id_length: int, chunk_rows: int):
        super().__init__(audience, min_id_length, chunk_rows)
        self.url = url
        self.query = query

    def _fail(self, message: str) -> SourceError:
        return SourceError(f"audience {self.audience.name!r}: {message}")

    def chunks(self) -> Iterator[list[tuple]]:
        import sqlalchemy as sa

        try:
            engine = sa.create_engine(self.url)
        except Exception as exc:  # bad URL or missing driver: the user's config
            raise self._fail(f"source.url {_safe_url(self.url)!r} cannot be used ({exc})") from None
        try:
            with engine.connect() as conn:
                result = conn.execution_options(stream_results=True, yield_per=self.chunk_rows).execute(
                    sa.text(self.query))
                columns = list(result.keys())
                index = {name.lower(): i for i, name in enumerate(columns)}
                if "user_id" not in index and "anonymous_id" not in index:
                    raise self._fail(f"the query returns no user_id or anonymous_id column (columns: {', '.join(columns)})")
                if self.computed and "value" not in index:
                    raise self._fail(f"the query of a computed trait returns no value column (columns: {', '.join(columns)})")
                yield from self._read(result, index)
        except SourceError:
            raise
        except sa.exc.SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            raise self._fail(f"the source query failed on {_safe_url(self.url)}: {detail[0] if detail else type(exc).__name__}") from None
        finally:
            engine.dispose()

    def _read(self, result, index: dict[str, int]) -> Iterator[list[tuple]]:
        u, a, v = index.get("user_id"), index.get("anonymous_id"), index.get("value")
        row = self.hygiene.row
        name = self.audience.name
        while True:
            rows = result.fetchmany(self.chunk_rows)
            if not rows:
                return
            out = []
            start = self.rows_read + 1
            place = f"audience {name!r}: query row"
            for i, r in enumerate(rows):
                kept = row(r[u] if u is not None else None, r[a] if a is not None else None,
                           r[v] if (v is not None and self.computed) else None, place, start + i)
                if kept is not None:
                    out.append(kept)
            self.rows_read += len(rows)
            yield out
