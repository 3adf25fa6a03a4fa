"""Audience sources: files and SQL queries streamed in chunks, with section 4's row hygiene."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from audsync.config import AudienceConfig, FileSource, SqlSource
from audsync.errors import SourceError
from audsync.sources import open_source


def audience(source, kind: str = "audience", name: str = "VIP Users") -> AudienceConfig:
    return AudienceConfig(name=name, key="vip_users", kind=kind, schedule=None, send_track_events=False,
                          source=source)


def read(aud: AudienceConfig, **kw) -> tuple[list[tuple], object]:
    source = open_source(aud, **kw)
    rows = [row for chunk in source.chunks() for row in chunk]
    return rows, source


def test_csv_ids_keep_leading_zeros_and_values_stay_strings(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("user_id,value\n00123456,42\n  user-0002  ,true\n")
    rows, _ = read(audience(FileSource(path), "computed_trait"))
    assert rows == [("00123456", None, "42"), ("user-0002", None, "true")]


def test_rows_without_any_id_are_skipped_and_counted(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("user_id,anonymous_id\nuser-0001,\n,\n,anon-00001\n")
    rows, source = read(audience(FileSource(path)))
    assert rows == [("user-0001", None, None), (None, "anon-00001", None)]
    assert source.skipped == {"no id": 1} and source.rows_read == 3


def test_blocked_and_short_ids_are_skipped_and_counted(tmp_path):
    path = tmp_path / "m.jsonl"
    lines = [{"user_id": "NULL"}, {"user_id": "undefined"}, {"user_id": "abc"}, {"user_id": "user-0001"},
             {"user_id": "00000000-0000-0000-0000-000000000000"}]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    rows, source = read(audience(FileSource(path)))
    assert rows == [("user-0001", None, None)]
    assert source.skipped == {"blocked id": 3, "id shorter than min_id_length": 1}


def test_min_id_length_setting_changes_what_is_too_short(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("user_id\nabc\n")
    rows, _ = read(audience(FileSource(path)), min_id_length=3)
    assert rows == [("abc", None, None)]


def test_bad_anonymous_id_next_to_a_good_user_id_is_dropped_not_the_row(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("user_id,anonymous_id\nuser-0001,null\n")
    rows, source = read(audience(FileSource(path)))
    assert rows == [("user-0001", None, None)] and not source.skipped


def test_computed_trait_rows_without_value_are_counted_as_no_value(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"user_id": "user-0001", "value": 3.5}\n{"user_id": "user-0002", "value": null}\n'
                    '{"user_id": "user-0003", "value": false}\n{"user_id": "user-0004", "value": 0}\n')
    rows, source = read(audience(FileSource(path), "computed_trait"))
    assert rows == [("user-0001", None, 3.5), ("user-0003", None, False), ("user-0004", None, 0)]
    assert source.skipped == {"no value": 1}


def test_jsonl_bad_line_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"user_id": "user-0001"}\n\n{"user_id": "user-0002",}\n')
    with pytest.raises(SourceError, match=r"m\.jsonl:3: not valid JSON"):
        read(audience(FileSource(path)))


def test_an_id_that_is_a_list_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"user_id": "user-0001"}\n{"user_id": ["a"]}\n')
    with pytest.raises(SourceError, match=r"m\.jsonl:2: user_id is list"):
        read(audience(FileSource(path)))


def test_numeric_ids_become_their_decimal_string(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"user_id": 1234567}\n{"user_id": 7654321.0}\n')
    rows, _ = read(audience(FileSource(path)))
    assert rows == [("1234567", None, None), ("7654321", None, None)]


def test_file_without_id_column_names_file_and_audience(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("email\na@example.com\n")
    with pytest.raises(SourceError, match=r"audience 'VIP Users': .*m\.csv: no user_id or anonymous_id column"):
        read(audience(FileSource(path)))


def test_computed_trait_file_without_value_column_is_an_error(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("user_id\nuser-0001\n")
    with pytest.raises(SourceError, match="needs a value column"):
        read(audience(FileSource(path), "computed_trait"))


def test_missing_file_names_audience_and_path(tmp_path):
    with pytest.raises(SourceError, match=r"audience 'VIP Users': .*absent\.csv: no such file"):
        read(audience(FileSource(tmp_path / "absent.csv")))


def test_parquet_keeps_value_types(tmp_path):
    path = tmp_path / "m.parquet"
    pd.DataFrame({"user_id": ["user-0001", "user-0002", None], "value": [1.5, None, 2.0]}).to_parquet(path)
    rows, source = read(audience(FileSource(path), "computed_trait"))
    assert rows == [("user-0001", None, 1.5)]
    assert source.skipped == {"no value": 1, "no id": 1}


def test_file_source_is_read_in_chunks(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("user_id\n" + "".join(f"user-{i:05d}\n" for i in range(25)))
    chunks = list(open_source(audience(FileSource(path)), chunk_rows=10).chunks())
    assert [len(c) for c in chunks] == [10, 10, 5]


@pytest.fixture(params=["sqlite", "postgresql"])
def warehouse_url(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'warehouse.db'}" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE people (id TEXT, anon TEXT, ltv REAL)"))
        conn.execute(sa.text("INSERT INTO people VALUES (:i, :a, :v)"),
                     [{"i": f"user-{n:04d}", "a": None, "v": n * 1.5} for n in range(1, 26)]
                     + [{"i": None, "a": "anon-00001", "v": 2.0}, {"i": "null", "a": None, "v": 1.0}])
    engine.dispose()
    return url


def test_sql_source_streams_rows_in_chunks_with_hygiene(warehouse_url):
    aud = audience(SqlSource(url=warehouse_url, query="SELECT id AS user_id, anon AS anonymous_id, ltv AS value "
                                                     "FROM people ORDER BY ltv"), "computed_trait")
    source = open_source(aud, chunk_rows=10)
    chunks = list(source.chunks())
    rows = [row for chunk in chunks for row in chunk]
    assert len(chunks) == 3 and source.rows_read == 27
    assert ("user-0001", None, 1.5) in rows and (None, "anon-00001", 2) in rows
    assert source.skipped == {"blocked id": 1}


def test_sql_query_without_user_id_column_names_the_audience(warehouse_url):
    aud = audience(SqlSource(url=warehouse_url, query="SELECT id, ltv FROM people"))
    with pytest.raises(SourceError, match=r"audience 'VIP Users': the query returns no user_id or anonymous_id column \(columns: id, ltv\)"):
        read(aud)


def test_sql_computed_trait_without_value_column_names_the_audience(warehouse_url):
    aud = audience(SqlSource(url=warehouse_url, query="SELECT id AS user_id FROM people"), "computed_trait")
    with pytest.raises(SourceError, match="audience 'VIP Users': the query of a computed trait returns no value column"):
        read(aud)


def test_sql_error_names_the_audience_and_hides_the_password(tmp_path):
    aud = audience(SqlSource(url="postgresql+psycopg://reader:hunter2@127.0.0.1:1/nowhere", query="SELECT 1"))
    with pytest.raises(SourceError) as info:
        read(aud)
    assert "VIP Users" in str(info.value) and "hunter2" not in str(info.value)


def test_sql_syntax_error_is_a_source_error(warehouse_url):
    with pytest.raises(SourceError, match="the source query failed"):
        read(audience(SqlSource(url=warehouse_url, query="SELEC user_id FROM people")))
