"""SQL sources on a real SQLite file and the real PostgreSQL: streamed, columns by name, clear errors."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from audsync.config import AudienceConfig, SqlSource
from audsync.errors import SourceError
from audsync.sources import open_source


def audience(url: str, query: str, kind: str = "audience") -> AudienceConfig:
    return AudienceConfig(name="VIP Users", key="vip_users", kind=kind, schedule=None, send_track_events=False,
                          source=SqlSource(url=url, query=query))


def read(aud: AudienceConfig, **kw):
    source = open_source(aud, **kw)
    rows = [row for chunk in source.chunks() for row in chunk]
    return rows, source


PEOPLE = [{"i": f"user-{n:04d}", "a": None, "v": n * 1.5, "n": n} for n in range(1, 26)] + [
    {"i": None, "a": "anon-00001", "v": 2.0, "n": 26},
    {"i": "null", "a": None, "v": 1.0, "n": 27},
]


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path):
    """A real database with a `people` table: 25 users, one anonymous profile, one blocked id."""
    url = f"sqlite:///{tmp_path / 'warehouse.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE people (id TEXT, anon TEXT, ltv REAL, n INTEGER)"))
        conn.execute(sa.text("INSERT INTO people VALUES (:i, :a, :v, :n)"), PEOPLE)
    engine.dispose()
    return url


@pytest.mark.parametrize("chunk_rows", [1, 7, 27, 1000])
def test_sql_source_streams_in_chunks(warehouse_url, chunk_rows):
    aud = audience(warehouse_url, "SELECT id AS user_id, anon AS anonymous_id, ltv AS value FROM people ORDER BY n",
                   "computed_trait")
    source = open_source(aud, chunk_rows=chunk_rows)
    chunks = list(source.chunks())
    assert all(len(chunk) <= chunk_rows for chunk in chunks)
    assert len(chunks) == -(-27 // chunk_rows) - (1 if chunk_rows == 1 else 0)  # the blocked row leaves one empty
    rows = [row for chunk in chunks for row in chunk]
    assert rows == [(f"user-{n:04d}", None, n * 1.5 if n % 2 else int(n * 1.5)) for n in range(1, 26)] \
        + [(None, "anon-00001", 2)]
    assert source.rows_read == 27 and source.skipped == {"blocked id": 1}


def test_postgresql_query_is_read_through_a_server_side_cursor(pg_url):
    # A client-side cursor would fail on execute; a streamed one hands over the first rows first.
    query = "SELECT 'user-' || n AS user_id, 1 / (n - 2500) AS x FROM generate_series(1, 3000) AS n"
    chunks = open_source(audience(pg_url, query), chunk_rows=100).chunks()
    assert next(chunks)[0] == ("user-1", None, None)
    with pytest.raises(SourceError, match=r'^audience "VIP Users": the query failed after [\d,]+ rows: division by zero'):
        list(chunks)


def test_sql_query_without_user_id_column_names_the_audience(warehouse_url):
    with pytest.raises(SourceError) as info:
        read(audience(warehouse_url, "SELECT id, ltv FROM people"))
    assert str(info.value) == 'audience "VIP Users": the query returns no user_id or anonymous_id column (columns: id, ltv)'


def test_sql_computed_trait_without_value_column_names_the_audience(warehouse_url):
    with pytest.raises(SourceError) as info:
        read(audience(warehouse_url, "SELECT id AS user_id FROM people", "computed_trait"))
    assert str(info.value) == ('audience "VIP Users": the query returns no value column, which a computed trait '
                               'needs (columns: user_id)')


def test_sql_anonymous_id_column_alone_is_enough(warehouse_url):
    rows, source = read(audience(warehouse_url, "SELECT anon AS anonymous_id FROM people"))
    assert rows == [(None, "anon-00001", None)] and source.skipped == {"no id": 26}


def test_sql_columns_are_found_by_name_ignoring_case_and_order(warehouse_url):
    rows, _ = read(audience(warehouse_url, 'SELECT ltv AS "VALUE", n, id AS "USER_ID" FROM people WHERE n = 3',
                            "computed_trait"))
    assert rows == [("user-0003", None, 4.5)]


def test_sql_integer_ids_become_their_decimal_string(warehouse_url):
    rows, _ = read(audience(warehouse_url, "SELECT n * 100001 AS user_id FROM people WHERE n <= 2 ORDER BY n"))
    assert rows == [("100001", None, None), ("200002", None, None)]


def test_sql_query_is_sent_as_written_with_colons_and_percent_signs(warehouse_url):
    query = "SELECT id AS user_id, 'a:b %' AS value FROM people WHERE id LIKE 'user-000%' AND 'x:y' <> ':z' ORDER BY n"
    rows, _ = read(audience(warehouse_url, query, "computed_trait"))
    assert [r[0] for r in rows] == [f"user-{n:04d}" for n in range(1, 10)] and rows[0][2] == "a:b %"


def test_sql_id_of_a_type_that_is_no_id_is_an_error_naming_the_query_row(warehouse_url):
    query = "SELECT CASE WHEN n = 3 THEN 2.5 ELSE n END AS user_id FROM people ORDER BY n"
    with pytest.raises(SourceError, match=r'^audience "VIP Users": query row 3: user_id is the number 2.5'):
        read(audience(warehouse_url, query, "audience"), min_id_length=1)


def test_postgresql_values_become_json_numbers_and_text(pg_url):
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t (id uuid, ltv numeric(10, 2), seen date, tags jsonb)"))
        conn.execute(sa.text("INSERT INTO t VALUES ('12345678-1234-5678-1234-567812345678', 12.50, '2026-11-01', "
                             "'{\"a\": [1, 2]}'::jsonb), ('22345678-1234-5678-1234-567812345678', 3.00, NULL, NULL)"))
    engine.dispose()
    rows, _ = read(audience(pg_url, "SELECT id AS user_id, json_build_array(ltv, seen, tags) AS value FROM t "
                                    "ORDER BY id", "computed_trait"))
    assert rows == [("12345678-1234-5678-1234-567812345678", None, [12.5, "2026-11-01", {"a": [1, 2]}]),
                    ("22345678-1234-5678-1234-567812345678", None, [3, None, None])]
    # numeric arrives from the driver as Decimal and leaves as a JSON number
    rows, _ = read(audience(pg_url, "SELECT id AS user_id, ltv AS value FROM t ORDER BY id", "computed_trait"))
    assert rows[0][2] == 12.5 and rows[1][2] == 3 and type(rows[1][2]) is int
    rows, _ = read(audience(pg_url, "SELECT id AS user_id, seen AS value FROM t ORDER BY id", "computed_trait"))
    assert rows == [("12345678-1234-5678-1234-567812345678", None, dt.date(2026, 11, 1).isoformat())]


def test_sql_syntax_error_names_the_audience_with_the_database_message(warehouse_url):
    with pytest.raises(SourceError) as info:
        read(audience(warehouse_url, "SELEC user_id FROM people"))
    message = str(info.value)
    assert message.startswith('audience "VIP Users": the query failed: ') and "SELEC" in message


def test_sql_connection_error_names_the_audience_and_never_the_password():
    aud = audience("postgresql+psycopg://reader:hunter2@127.0.0.1:1/nowhere", "SELECT 1 AS user_id")
    with pytest.raises(SourceError) as info:
        read(aud)
    message = str(info.value)
    assert message.startswith('audience "VIP Users": cannot connect to postgresql+psycopg://reader:***@127.0.0.1:1/nowhere')
    assert "hunter2" not in message


def test_sql_wrong_password_error_never_shows_the_password(pg_available):
    aud = audience("postgresql+psycopg://no_such_role_x:hunter2@127.0.0.1:5432/postgres", "SELECT 1 AS user_id")
    with pytest.raises(SourceError) as info:
        read(aud)
    assert "VIP Users" in str(info.value) and "hunter2" not in str(info.value)


def test_sql_url_for_an_unknown_database_is_an_error_naming_the_audience():
    with pytest.raises(SourceError, match=r'^audience "VIP Users": source.url .*nosuchdb://u:\*\*\*@h/d.* cannot be used'):
        read(audience("nosuchdb://u:secret@h/d", "SELECT 1"))


def test_sql_statement_that_returns_no_rows_is_an_error(warehouse_url):
    # SQLite runs it and says it returns no rows; PostgreSQL refuses it inside a cursor declaration.
    with pytest.raises(SourceError, match='^audience "VIP Users": the query (returns no rows|failed: syntax error)'):
        read(audience(warehouse_url, "UPDATE people SET ltv = ltv WHERE n = 0"))


def test_sqlite_url_to_a_missing_file_is_an_error_and_creates_nothing(tmp_path):
    missing = tmp_path / "typo.db"
    with pytest.raises(SourceError, match=r'^audience "VIP Users": source.url .*typo\.db.*: no such SQLite database file'):
        read(audience(f"sqlite:///{missing}", "SELECT user_id FROM orders"))
    assert not missing.exists()
