"""Page and screen naming (17.6) under all 16 combinations of track_all_pages,
track_categorized_pages, track_named_pages and track_all_screens, written out as a table."""

from __future__ import annotations

import itertools

import pytest

from .helpers import MID, message, run

FLAGS = ("track_all_pages", "track_categorized_pages", "track_named_pages", "track_all_screens")
COMBINATIONS = list(itertools.product((False, True), repeat=4))

T, F = True, False
# (track_all_pages, track_categorized_pages, track_named_pages, track_all_screens) -> event names
# for page(category='Docs', name='Signup'); written out row by row, not computed.
PAGE_TABLE = {
    (F, F, F, F): [],
    (F, F, F, T): [],
    (F, F, T, F): ["Viewed Docs Signup Page"],
    (F, F, T, T): ["Viewed Docs Signup Page"],
    (F, T, F, F): ["Viewed Docs Page"],
    (F, T, F, T): ["Viewed Docs Page"],
    (F, T, T, F): ["Viewed Docs Page", "Viewed Docs Signup Page"],
    (F, T, T, T): ["Viewed Docs Page", "Viewed Docs Signup Page"],
    (T, F, F, F): ["Loaded a Page"],
    (T, F, F, T): ["Loaded a Page"],
    (T, F, T, F): ["Loaded a Page", "Viewed Docs Signup Page"],
    (T, F, T, T): ["Loaded a Page", "Viewed Docs Signup Page"],
    (T, T, F, F): ["Loaded a Page", "Viewed Docs Page"],
    (T, T, F, T): ["Loaded a Page", "Viewed Docs Page"],
    (T, T, T, F): ["Loaded a Page", "Viewed Docs Page", "Viewed Docs Signup Page"],
    (T, T, T, T): ["Loaded a Page", "Viewed Docs Page", "Viewed Docs Signup Page"],
}
# The same for screen(category='Docs', name='Signup'): track_all_screens counts for screens, and
# with both "all" settings a screen still gives one "Loaded a Screen".
SCREEN_TABLE = {
    (F, F, F, F): [],
    (F, F, F, T): ["Loaded a Screen"],
    (F, F, T, F): ["Viewed Docs Signup Screen"],
    (F, F, T, T): ["Loaded a Screen", "Viewed Docs Signup Screen"],
    (F, T, F, F): ["Viewed Docs Screen"],
    (F, T, F, T): ["Loaded a Screen", "Viewed Docs Screen"],
    (F, T, T, F): ["Viewed Docs Screen", "Viewed Docs Signup Screen"],
    (F, T, T, T): ["Loaded a Screen", "Viewed Docs Screen", "Viewed Docs Signup Screen"],
    (T, F, F, F): ["Loaded a Screen"],
    (T, F, F, T): ["Loaded a Screen"],
    (T, F, T, F): ["Loaded a Screen", "Viewed Docs Signup Screen"],
    (T, F, T, T): ["Loaded a Screen", "Viewed Docs Signup Screen"],
    (T, T, F, F): ["Loaded a Screen", "Viewed Docs Screen"],
    (T, T, F, T): ["Loaded a Screen", "Viewed Docs Screen"],
    (T, T, T, F): ["Loaded a Screen", "Viewed Docs Screen", "Viewed Docs Signup Screen"],
    (T, T, T, T): ["Loaded a Screen", "Viewed Docs Screen", "Viewed Docs Signup Screen"],
}


def test_the_tables_cover_all_16_combinations_and_spot_values_match_the_settings_doc():
    assert len(PAGE_TABLE) == len(SCREEN_TABLE) == 16
    assert PAGE_TABLE[(False, True, True, False)] == ["Viewed Docs Page", "Viewed Docs Signup Page"]  # defaults
    assert PAGE_TABLE[(False, False, False, True)] == []  # track_all_screens ignores pages
    assert SCREEN_TABLE[(True, False, False, True)] == ["Loaded a Screen"]  # one, not two
    assert SCREEN_TABLE[(False, False, False, False)] == []


def _names(kind: str, combo: tuple, **fields) -> list[str]:
    return [o["body"]["event_type"] for o in run(message(kind, **fields), **dict(zip(FLAGS, combo)))]


@pytest.mark.parametrize("combo", COMBINATIONS, ids=lambda c: "-".join(f for f, on in zip(FLAGS, c) if on) or "none")
def test_page_names_follow_the_settings_table(combo):
    assert _names("page", combo, category="Docs", name="Signup") == PAGE_TABLE[combo]


@pytest.mark.parametrize("combo", COMBINATIONS, ids=lambda c: "-".join(f for f, on in zip(FLAGS, c) if on) or "none")
def test_screen_names_follow_the_settings_table(combo):
    assert _names("screen", combo, category="Docs", name="Signup") == SCREEN_TABLE[combo]


@pytest.mark.parametrize("kind, noun", [("page", "Page"), ("screen", "Screen")])
@pytest.mark.parametrize("combo", COMBINATIONS, ids=lambda c: "-".join(f for f, on in zip(FLAGS, c) if on) or "none")
def test_named_without_category_is_viewed_name_and_bare_calls_only_load(kind, noun, combo):
    all_pages, categorized, named, all_screens = combo
    loaded = all_pages or (kind == "screen" and all_screens)
    expected = ([f"Loaded a {noun}"] if loaded else []) + ([f"Viewed Signup {noun}"] if named else [])
    assert _names(kind, combo, name="Signup") == expected
    assert _names(kind, combo) == ([f"Loaded a {noun}"] if loaded else [])
    expected = ([f"Loaded a {noun}"] if loaded else []) + ([f"Viewed Docs {noun}"] if categorized else [])
    assert _names(kind, combo, category="Docs") == expected


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_no_matching_setting_drops_the_call_without_error(kind):
    assert run(message(kind), track_named_pages=False, track_categorized_pages=False) == []


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_page_event_properties_are_the_properties_plus_name_and_category_on_every_event(kind):
    out = run(message(kind, name="Signup", category="Docs", properties={"path": "/signup", "title": None}),
              track_all_pages=True)
    assert len(out) == 3
    for o in out:
        assert o["body"]["event_properties"] == {"path": "/signup", "name": "Signup", "category": "Docs"}
    assert out[0]["body"]["insert_id"] == MID
