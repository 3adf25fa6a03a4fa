"""Section 4's row hygiene, column-wise: ids as strings, refused ids and missing values counted."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from decimal import Decimal

import pyarrow as pa
import pytest
from hypothesis import given, settings, strategies as st

from audsync.errors import SourceError
from audsync.mapping._common import BLOCKED_IDS
from audsync.sources.hygiene import (BIG_INTEGER, BLOCKED_ID, NO_ID, NO_VALUE, NUL_ID, SHORT_ID, TOO_DEEP,
                                     Hygiene, ids_from_arrow, ids_from_python, json_value, values_from_python)


def where(i: int) -> str:
    return f"m.jsonl:{i + 1}"


def clean(users, anons=None, values=None, *, min_id_length=5):
    """Hygiene over Python columns, as a source hands them over."""
    hygiene = Hygiene(min_id_length, computed=values is not None)
    size = len(users if users is not None else anons)
    u = ids_from_python(users, "user_id", where) if users is not None else None
    a = ids_from_python(anons, "anonymous_id", where) if anons is not None else None
    v = values_from_python(values, where) if values is not None else None
    return hygiene.rows(u, a, v, size), hygiene.skipped


def test_blocked_ids_are_skipped_and_counted_whatever_their_case():
    blocked = ["NULL", "Undefined", "anonymous", "nil", "None", "n/a", "NA", "unknown", '""',
               "00000000-0000-0000-0000-000000000000", "{}", "LMY47D", "0", "-1"]
    assert {b.lower() for b in blocked} == BLOCKED_IDS  # every id Amplitude refuses is covered
    rows, skipped = clean(blocked + ["user-0001"], min_id_length=0)
    assert rows == [("user-0001", None, None)]
    assert skipped == {BLOCKED_ID: len(blocked)}


def test_ids_shorter_than_min_id_length_are_skipped_and_counted():
    rows, skipped = clean(["abcd", "abcde", "é" * 4, "é" * 5])
    assert rows == [("abcde", None, None), ("ééééé", None, None)]  # length counts characters
    assert skipped == {SHORT_ID: 2}


def test_min_id_length_setting_changes_what_is_too_short():
    assert clean(["abc"], min_id_length=3)[0] == [("abc", None, None)]
    assert clean(["abc"], min_id_length=4)[1] == {SHORT_ID: 1}


def test_a_blocked_id_counts_as_blocked_even_when_it_is_also_short():
    assert clean(["0", "-1", "na"])[1] == {BLOCKED_ID: 3}


def test_rows_without_any_id_are_skipped_and_counted():
    rows, skipped = clean([None, "", "   ", "user-0001"], [None, None, "\t", None])
    assert rows == [("user-0001", None, None)]
    assert skipped == {NO_ID: 3}


def test_a_row_with_an_id_holding_nul_is_skipped_whole_and_counted_once_whichever_id_holds_it():
    rows, skipped = clean(["user-0001", "u-nul\x00002", None, "user-0004", "\x00", "abc\x00"],
                          [None, None, "dev\x00ice-3", "dev\x00ice-4", None, None])
    assert rows == [("user-0001", None, None)]
    assert skipped == {NUL_ID: 5}  # not also short: one reason per row


def test_surrounding_whitespace_is_stripped_from_ids():
    rows, _ = clean(["  user-0001\t", "user 0002"], ["\n anon-0001 ", None])
    assert rows == [("user-0001", "anon-0001", None), ("user 0002", None, None)]


def test_a_refused_anonymous_id_next_to_a_good_user_id_is_left_out_and_not_counted():
    rows, skipped = clean(["user-0001", "user-0002"], ["null", "abc"])
    assert rows == [("user-0001", None, None), ("user-0002", None, None)]
    assert not skipped


def test_a_refused_user_id_skips_the_whole_row_even_with_a_good_anonymous_id():
    rows, skipped = clean(["undefined", "abc", "user-0003"], ["anon-0001", "anon-0002", "anon-0003"])
    assert rows == [("user-0003", "anon-0003", None)]
    assert skipped == {BLOCKED_ID: 1, SHORT_ID: 1}


def test_anonymous_only_rows_are_kept_and_a_refused_anonymous_id_alone_is_counted():
    rows, skipped = clean([None, "", None, None], ["anon-0001", "anon-0002", "unknown", "ab"])
    assert rows == [(None, "anon-0001", None), (None, "anon-0002", None)]
    assert skipped == {BLOCKED_ID: 1, SHORT_ID: 1}


def test_computed_trait_rows_without_value_are_counted_as_no_value():
    rows, skipped = clean(["user-0001", "user-0002", "user-0003", "user-0004", None],
                          values=[1.5, None, float("nan"), False, None])
    assert rows == [("user-0001", None, 1.5), ("user-0004", None, False)]
    assert skipped == {NO_VALUE: 2, NO_ID: 1}  # no id is the reason when both are missing


def _nested(levels: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


def test_values_too_deep_for_amplitude_or_beyond_64_bit_integers_skip_their_rows_with_the_reason():
    values = [2**64, -(2**63) - 1, [1, {"n": 2**70}], _nested(40), _nested(2000), 2**64 - 1, _nested(39), [[1]]]
    rows, skipped = clean([f"user-{i:04d}" for i in range(len(values))], values=values)
    assert rows == [("user-0005", None, 2**64 - 1), ("user-0006", None, _nested(39)), ("user-0007", None, [[1]])]
    assert skipped == {BIG_INTEGER: 3, TOO_DEEP: 2}
    _, skipped = clean(["user-0001", "user-0002"], values=[2**64, 5])  # a column of integers only
    assert skipped == {BIG_INTEGER: 1}


def test_audience_rows_carry_no_value():
    hygiene = Hygiene(5, computed=False)
    rows = hygiene.rows(ids_from_python(["user-0001"], "user_id", where), None, [42], 1)
    assert rows == [("user-0001", None, None)]


def test_numbers_become_their_decimal_string_as_ids():
    ids = ids_from_python([1234567, 7654321.0, Decimal("1234500"), 2**70, None,
                           uuid.UUID("12345678-1234-5678-1234-567812345678")], "user_id", where)
    assert ids.to_pylist() == ["1234567", "7654321", "1234500", str(2**70), None,
                               "12345678-1234-5678-1234-567812345678"]
    assert ids_from_python([7, 12345], "user_id", where).to_pylist() == ["7", "12345"]


@pytest.mark.parametrize("bad, message", [
    ([["a"]], "m.jsonl:2: user_id is a list, not an id"),
    ([{"id": 1}], "m.jsonl:2: user_id is an object, not an id"),
    ([True], "m.jsonl:2: user_id is a boolean, not an id"),
    ([12.5], "m.jsonl:2: user_id is the number 12.5, which has a fraction; not an id"),
])
def test_an_id_that_is_not_text_or_a_whole_number_is_an_error_naming_the_row(bad, message):
    with pytest.raises(SourceError) as info:
        ids_from_python(["user-0001", *bad], "user_id", where)
    assert str(info.value) == message


def test_arrow_id_columns_of_numbers_dictionaries_and_bytes_become_text():
    assert ids_from_arrow(pa.array([12345, None], pa.int32()), "user_id", where).to_pylist() == ["12345", None]
    assert ids_from_arrow(pa.array([12345.0, math.nan, None]), "user_id", where).to_pylist() == ["12345", None, None]
    assert ids_from_arrow(pa.array(["user-1", "user-1"]).dictionary_encode(), "user_id", where).to_pylist() \
        == ["user-1", "user-1"]
    assert ids_from_arrow(pa.array([b"user-1"]), "user_id", where).to_pylist() == ["user-1"]
    assert ids_from_arrow(pa.nulls(2), "user_id", where).to_pylist() == [None, None]


def test_arrow_id_columns_of_booleans_fractions_or_lists_fail_naming_the_first_bad_row():
    with pytest.raises(SourceError, match=r"^m.jsonl:2: user_id is a boolean"):
        ids_from_arrow(pa.array([None, True]), "user_id", where)
    with pytest.raises(SourceError, match=r"^m.jsonl:3: user_id is the number 2.5"):
        ids_from_arrow(pa.array([1.0, None, 2.5]), "user_id", where)
    with pytest.raises(SourceError, match=r"^m.jsonl:1: user_id is a list"):
        ids_from_arrow(pa.array([[1]]), "user_id", where)
    with pytest.raises(SourceError, match=r"^m.jsonl:2: user_id is not UTF-8 text"):
        ids_from_arrow(pa.array([b"ok-id", b"\xff\xfe"]), "user_id", where)


def test_values_become_json_able_python():
    assert json_value(Decimal("12.50"), where, 0) == 12.5
    assert json_value(Decimal("12.00"), where, 0) == 12
    assert json_value(3.0, where, 0) == 3 and type(json_value(3.0, where, 0)) is int
    assert json_value(1e300, where, 0) == 1e300  # too big to be an exact int: stays a float
    assert json_value(dt.date(2026, 11, 1), where, 0) == "2026-11-01"
    assert json_value(dt.datetime(2026, 11, 1, 8, 30, tzinfo=dt.timezone.utc), where, 0) == "2026-11-01T08:30:00+00:00"
    assert json_value({"a": [1.0, math.nan], 2: "x"}, where, 0) == {"a": [1, None], "2": "x"}
    assert json_value(math.nan, where, 0) is None


def test_values_json_cannot_carry_are_errors_naming_the_row():
    with pytest.raises(SourceError, match=r"^m.jsonl:4: value is inf"):
        values_from_python([1.0, 2.0, 3.5, math.inf], where)
    with pytest.raises(SourceError, match=r"^m.jsonl:1: value is bytes"):
        json_value(b"\x00", where, 0)


# The column-wise rules must agree with the rules written out row by row.

def reference(user, anon, value, min_length, computed):
    def refusal(text):
        if text.lower() in BLOCKED_IDS:
            return BLOCKED_ID
        return SHORT_ID if len(text) < min_length else None

    if "\x00" in (user or "") + (anon or ""):
        return NUL_ID
    user = (user or "").strip() or None
    anon = (anon or "").strip() or None
    if user is not None and refusal(user):
        return refusal(user)
    if anon is not None and refusal(anon):
        if user is None:
            return refusal(anon)
        anon = None
    if user is None and anon is None:
        return NO_ID
    if computed and value is None:
        return NO_VALUE
    if computed and not -(2**63) <= value < 2**64:
        return BIG_INTEGER
    return (user, anon, value if computed else None)


ID_TEXT = st.one_of(st.none(),
                    st.sampled_from(sorted(BLOCKED_IDS) + ["", " ", "NULL", " user-1 ", "ab", "us\x00er-1", "\x00"]),
                    st.text(max_size=8))


def arrow_ids(values, column, where):
    return ids_from_arrow(pa.array(values, pa.string()), column, where)


@pytest.mark.parametrize("ids", [ids_from_python, arrow_ids], ids=["python", "arrow"])
@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(ID_TEXT, ID_TEXT, st.one_of(st.none(), st.integers())), max_size=30),
       st.integers(0, 6), st.booleans())
def test_columnwise_hygiene_agrees_with_the_row_by_row_rules(ids, rows, min_length, computed):
    expected_rows, expected_skips = [], {}
    for user, anon, value in rows:
        outcome = reference(user, anon, value, min_length, computed)
        if isinstance(outcome, tuple):
            expected_rows.append(outcome)
        else:
            expected_skips[outcome] = expected_skips.get(outcome, 0) + 1
    hygiene = Hygiene(min_length, computed)
    users = ids([r[0] for r in rows], "user_id", where)
    anons = ids([r[1] for r in rows], "anonymous_id", where)
    values = [r[2] for r in rows] if computed else None
    assert hygiene.rows(users, anons, values, len(rows)) == expected_rows
    assert hygiene.skipped == expected_skips


def test_bytes_are_not_ids_even_though_arrow_would_take_them_as_text():
    with pytest.raises(SourceError, match=r"^m.jsonl:1: user_id is bytes, not an id"):
        ids_from_python([b"user-0001"], "user_id", where)


def test_list_and_object_values_survive_the_skipping_of_other_rows_whole():
    rows, skipped = clean(["user-0001", "abc", "user-0003"], values=[[1, 2], [3, 4], {"a": [5]}])
    assert rows == [("user-0001", None, [1, 2]), ("user-0003", None, {"a": [5]})]
    assert skipped == {SHORT_ID: 1}
