"""File sources (.csv, .parquet, .jsonl): streamed in chunks, bad rows fail naming file and line."""

from __future__ import annotations

import json

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from audsync.config import AudienceConfig, FileSource
from audsync.errors import SourceError
from audsync.sources import file as file_module, open_source


def audience(path, kind: str = "audience", name: str = "VIP Users") -> AudienceConfig:
    return AudienceConfig(name=name, key="vip_users", kind=kind, schedule=None, send_track_events=False,
                          source=FileSource(path))


def read(aud: AudienceConfig, **kw):
    source = open_source(aud, **kw)
    rows = [row for chunk in source.chunks() for row in chunk]
    return rows, source


def jsonl(path, *records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def write(path, frame: dict) -> None:
    """One table as .csv, .parquet or .jsonl, by the path's suffix."""
    df = pd.DataFrame(frame)
    if path.suffix == ".csv":
        df.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_json(path, orient="records", lines=True)


# CSV ---------------------------------------------------------------------------------------------

def test_csv_ids_keep_leading_zeros(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("user_id,anonymous_id\n00123456,000777000\n")
    assert read(audience(path))[0] == [("00123456", "000777000", None)]


def test_csv_values_stay_strings_even_numbers_and_true_false(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("user_id,value\nuser-0001,42\nuser-0002,true\nuser-0003,FALSE\nuser-0004, 3.50 \n")
    rows, _ = read(audience(path, "computed_trait"))
    assert rows == [("user-0001", None, "42"), ("user-0002", None, "true"), ("user-0003", None, "FALSE"),
                    ("user-0004", None, " 3.50 ")]


def test_csv_empty_fields_are_missing(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text('user_id,anonymous_id,value\n,anon-0001,1\nuser-0002,,\n"",,2\n')
    rows, source = read(audience(path, "computed_trait"))
    assert rows == [(None, "anon-0001", "1")]
    assert source.skipped == {"no value": 1, "no id": 1} and source.rows_read == 3


def test_csv_columns_other_than_ids_and_value_are_ignored(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("email,user_id,plan\na@example.com,user-0001,pro\n")
    assert read(audience(path))[0] == [("user-0001", None, None)]


def test_csv_row_with_too_many_fields_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "members.csv"
    path.write_text("user_id,anonymous_id\n" + "user-0001,\n" * 7 + "user-0009,anon-1,extra\nuser-0010,\n")
    with pytest.raises(SourceError) as info:
        read(audience(path))
    assert str(info.value) == f'audience "VIP Users": {path}:9: 3 fields where the header has 2'


def test_csv_row_with_too_few_fields_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "members.csv"
    path.write_text("user_id,value\nuser-0001,1\nuser-0002\n")
    with pytest.raises(SourceError, match=r"members\.csv:3: 1 fields where the header has 2$"):
        read(audience(path, "computed_trait"))


def test_csv_bad_line_far_down_is_found_after_earlier_chunks_were_read(tmp_path, monkeypatch):
    monkeypatch.setattr(file_module, "_CSV_BLOCK_BYTES", 1024)
    path = tmp_path / "members.csv"
    path.write_text("user_id\n" + "".join(f"user-{i:05d}\n" for i in range(2000)) + "user-x,y\n")
    chunks = open_source(audience(path), chunk_rows=100).chunks()
    first = next(chunks)  # the source streams: the bad line is not read yet
    assert first[0] == ("user-00000", None, None)
    with pytest.raises(SourceError, match=r"members\.csv:2002: 2 fields where the header has 1"):
        list(chunks)


def test_csv_text_that_is_not_utf8_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(b"user_id\nuser-0001\nuser-\xff\xfe02\n")
    with pytest.raises(SourceError, match=r"m\.csv:3: not UTF-8 text"):
        read(audience(path))


def test_csv_quoted_fields_may_hold_commas_quotes_and_newlines(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text('user_id,value\nuser-0001,"a, ""b""\nc"\n')
    assert read(audience(path, "computed_trait"))[0] == [("user-0001", None, 'a, "b"\nc')]


def test_csv_with_a_byte_order_mark_still_has_its_user_id_column(tmp_path):
    path = tmp_path / "m.csv"
    path.write_bytes(b"\xef\xbb\xbfuser_id\r\nuser-0001\r\n")
    assert read(audience(path))[0] == [("user-0001", None, None)]


def test_csv_empty_file_is_an_error_but_a_header_alone_is_an_empty_audience(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("")
    with pytest.raises(SourceError, match="the file is empty"):
        read(audience(path))
    path.write_text("user_id\n")
    assert read(audience(path))[0] == []


def test_csv_header_naming_an_id_column_twice_is_an_error(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("user_id,user_id\nuser-0001,user-0002\n")
    with pytest.raises(SourceError, match="the column user_id appears 2 times"):
        read(audience(path))


# JSON lines --------------------------------------------------------------------------------------

def test_jsonl_bad_line_is_an_error_naming_file_and_line(tmp_path):
    path = tmp_path / "members.jsonl"
    path.write_text('{"user_id": "user-0001"}\n\n{"user_id": "user-0002",}\n')
    with pytest.raises(SourceError) as info:
        read(audience(path))
    assert str(info.value).startswith(f'audience "VIP Users": {path}:3: not valid JSON (')


def test_jsonl_line_numbers_stay_exact_across_chunks_and_blank_lines(tmp_path):
    path = tmp_path / "members.jsonl"
    lines = [json.dumps({"user_id": f"user-{i:04d}"}) for i in range(25)]
    lines[3] = ""
    lines[21] = '{"user_id": true}'
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(SourceError, match=r"members\.jsonl:22: user_id is a boolean, not an id"):
        read(audience(path), chunk_rows=10)


def test_jsonl_line_that_is_not_an_object_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"user_id": "user-0001"}\n["user-0002"]\n')
    with pytest.raises(SourceError, match=r"m\.jsonl:2: not a JSON object"):
        read(audience(path))


@pytest.mark.parametrize("bad, kind", [('["a", "b"]', "a list"), ('{"id": 1}', "an object"), ("true", "a boolean")])
def test_jsonl_id_that_is_a_list_object_or_boolean_is_an_error_naming_file_and_line(tmp_path, bad, kind):
    path = tmp_path / "members.jsonl"
    path.write_text('{"user_id": "user-0001"}\n{"anonymous_id": "anon-0001"}\n'
                    f'{{"user_id": "user-0003", "anonymous_id": {bad}}}\n')
    with pytest.raises(SourceError, match=rf"members\.jsonl:3: anonymous_id is {kind}, not an id"):
        read(audience(path))


def test_jsonl_numeric_ids_become_their_decimal_string(tmp_path):
    path = tmp_path / "m.jsonl"
    jsonl(path, {"user_id": 1234567}, {"user_id": 7654321.0}, {"user_id": "00042"})
    assert read(audience(path))[0] == [("1234567", None, None), ("7654321", None, None), ("00042", None, None)]


def test_jsonl_values_keep_their_json_types(tmp_path):
    path = tmp_path / "m.jsonl"
    jsonl(path, {"user_id": "user-0001", "value": 3.5}, {"user_id": "user-0002", "value": None},
          {"user_id": "user-0003", "value": False}, {"user_id": "user-0004", "value": 0},
          {"user_id": "user-0005", "value": ["a", {"b": 1}]}, {"user_id": "user-0006", "value": "42"},
          {"user_id": "user-0007"})
    rows, source = read(audience(path, "computed_trait"))
    assert rows == [("user-0001", None, 3.5), ("user-0003", None, False), ("user-0004", None, 0),
                    ("user-0005", None, ["a", {"b": 1}]), ("user-0006", None, "42")]
    assert source.skipped == {"no value": 2}  # a null value and a line without one


def test_jsonl_whose_lines_never_name_an_id_is_an_error_naming_file_and_audience(tmp_path):
    path = tmp_path / "m.jsonl"
    jsonl(path, {"userId": "user-0001", "email": "a@example.com"})
    with pytest.raises(SourceError, match=r'^audience "VIP Users": .*m\.jsonl: no user_id or anonymous_id '
                                          r'column \(columns: email, userId\)'):
        read(audience(path))


# Parquet -----------------------------------------------------------------------------------------

def test_parquet_keeps_value_types_and_nan_is_no_value(tmp_path):
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"user_id": ["user-0001", "user-0002", "user-0003", None],
                             "value": [1.5, None, float("nan"), 2.0]}), path)
    rows, source = read(audience(path, "computed_trait"))
    assert rows == [("user-0001", None, 1.5)]
    assert source.skipped == {"no value": 2, "no id": 1}


def test_parquet_values_of_other_types_become_json(tmp_path):
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"user_id": ["user-0001", "user-0002", "user-0003"],
                             "value": pa.array([{"plan": "pro", "seats": 3}, {"plan": "free", "seats": None}, None])}),
                   path)
    rows, _ = read(audience(path, "computed_trait"))
    assert rows == [("user-0001", None, {"plan": "pro", "seats": 3}),
                    ("user-0002", None, {"plan": "free", "seats": None})]


def test_parquet_integer_and_whole_float_ids_become_their_decimal_string(tmp_path):
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"user_id": pa.array([1234567, None], pa.int64()),
                             "anonymous_id": pa.array([None, 7654321.0])}), path)
    assert read(audience(path))[0] == [("1234567", None, None), (None, "7654321", None)]


def test_parquet_boolean_id_column_is_an_error_naming_the_row(tmp_path):
    path = tmp_path / "m.parquet"
    pq.write_table(pa.table({"user_id": pa.array([None, None, True])}), path)
    with pytest.raises(SourceError, match=r'^audience "VIP Users": .*m\.parquet: row 3: user_id is a boolean'):
        read(audience(path))


def test_parquet_file_that_is_not_parquet_is_an_error_naming_file_and_audience(tmp_path):
    path = tmp_path / "m.parquet"
    path.write_text("user_id\nuser-0001\n")
    with pytest.raises(SourceError, match=r'^audience "VIP Users": .*m\.parquet: not a readable Parquet file'):
        read(audience(path))


# Every format ------------------------------------------------------------------------------------

@pytest.fixture(params=["csv", "parquet", "jsonl"])
def suffix(request) -> str:
    return request.param


def test_file_sources_are_read_in_chunks_of_at_most_chunk_rows(tmp_path, suffix):
    path = tmp_path / f"m.{suffix}"
    users = [f"user-{i:05d}" for i in range(25)]
    users[4] = "null"
    write(path, {"user_id": users})
    source = open_source(audience(path), chunk_rows=10)
    chunks = list(source.chunks())
    assert [len(c) for c in chunks] == [9, 10, 5]
    assert [r[0] for c in chunks for r in c] == users[:4] + users[5:]
    assert source.rows_read == 25 and source.skipped == {"blocked id": 1}


def test_file_without_id_column_names_file_and_audience(tmp_path, suffix):
    path = tmp_path / f"m.{suffix}"
    write(path, {"id": ["user-0001"], "email": ["a@example.com"]})
    with pytest.raises(SourceError) as info:
        read(audience(path))
    assert str(info.value).startswith(f'audience "VIP Users": {path}: no user_id or anonymous_id column (columns: ')


def test_computed_trait_file_without_value_column_names_file_and_audience(tmp_path, suffix):
    path = tmp_path / f"m.{suffix}"
    write(path, {"user_id": ["user-0001"], "ltv": [3]})
    with pytest.raises(SourceError) as info:
        read(audience(path, "computed_trait"))
    assert str(info.value).startswith(
        f'audience "VIP Users": {path}: no value column, which a computed trait needs (columns: ')


def test_missing_file_names_audience_and_path(tmp_path, suffix):
    path = tmp_path / f"absent.{suffix}"
    with pytest.raises(SourceError) as info:
        read(audience(path))
    assert str(info.value) == f'audience "VIP Users": {path}: no such file'


def test_anonymous_only_file_rows_are_members(tmp_path, suffix):
    path = tmp_path / f"m.{suffix}"
    write(path, {"user_id": ["user-0001", None], "anonymous_id": [None, "anon-0002"]})
    assert read(audience(path))[0] == [("user-0001", None, None), (None, "anon-0002", None)]
