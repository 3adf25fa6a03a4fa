"""Page and screen naming under every combination of the page settings (section 17.6)."""

from __future__ import annotations

import itertools

import pytest

from .helpers import MID, message, run

FLAGS = ("track_all_pages", "track_categorized_pages", "track_named_pages", "track_all_screens")


def expected_names(kind: str, name: str | None, category: str | None, flags: dict) -> list[str]:
    noun = "Screen" if kind == "screen" else "Page"
    names = []
    if flags["track_all_pages"] or (kind == "screen" and flags["track_all_screens"]):
        names.append(f"Loaded a {noun}")
    if flags["track_categorized_pages"] and category:
        names.append(f"Viewed {category} {noun}")
    if flags["track_named_pages"] and name:
        names.append(f"Viewed {category + ' ' if category else ''}{name} {noun}")
    return names


CASES = [
    (kind, name, category, dict(zip(FLAGS, values)))
    for kind in ("page", "screen")
    for name, category in (("Signup", "Conversion"), ("Signup", None), (None, "Docs"), (None, None))
    for values in itertools.product((False, True), repeat=4)
]


@pytest.mark.parametrize("kind, name, category, flags", CASES,
                         ids=[f"{k}-{n}-{c}-" + "".join("1" if f[x] else "0" for x in FLAGS) for k, n, c, f in CASES])
def test_page_and_screen_send_one_event_per_matching_setting_in_order(kind, name, category, flags):
    fields = {k: v for k, v in (("name", name), ("category", category)) if v is not None}
    operations = run(message(kind, **fields), **flags)
    assert [op["body"]["event_type"] for op in operations] == expected_names(kind, name, category, flags)


@pytest.mark.parametrize("kind, settings, expected", [
    ("page", {}, ["Viewed Docs Page", "Viewed Docs Index Page"]),
    ("page", {"track_all_pages": True}, ["Loaded a Page", "Viewed Docs Page", "Viewed Docs Index Page"]),
    ("page", {"track_all_screens": True, "track_named_pages": False, "track_categorized_pages": False}, []),
    ("screen", {"track_all_pages": True, "track_all_screens": True, "track_named_pages": False,
                "track_categorized_pages": False}, ["Loaded a Screen"]),
    ("screen", {"track_all_screens": True}, ["Loaded a Screen", "Viewed Docs Screen", "Viewed Docs Index Screen"]),
])
def test_page_examples_from_the_settings_table(kind, settings, expected):
    operations = run(message(kind, name="Index", category="Docs"), **settings)
    assert [op["body"]["event_type"] for op in operations] == expected


def test_page_without_a_matching_setting_is_dropped_not_rejected():
    assert run(message("page")) == []


def test_page_name_and_category_may_come_from_properties():
    operations = run(message("page", properties={"name": "Index", "category": "Docs"}))
    assert [op["body"]["event_type"] for op in operations] == ["Viewed Docs Page", "Viewed Docs Index Page"]


def test_page_event_properties_are_the_properties_plus_name_and_category():
    operations = run(message("page", name="Index", category="Docs", properties={"path": "/docs", "gone": None}))
    for op in operations:
        assert op["body"]["event_properties"] == {"path": "/docs", "name": "Index", "category": "Docs"}


def test_page_extra_events_get_distinct_insert_ids_and_the_first_keeps_the_message_id():
    operations = run(message("page", name="Index", category="Docs"), track_all_pages=True)
    ids = [op["body"]["insert_id"] for op in operations]
    assert ids[0] == MID and len(set(ids)) == 3 and all(i.startswith(MID) for i in ids)


def test_page_single_event_keeps_the_bare_message_id():
    assert run(message("page", name="Index"))[0]["body"]["insert_id"] == MID


def test_page_referrer_becomes_set_and_initial_set_once_user_properties():
    operations = run(message("page", name="Index", context={"page": {"referrer": "https://news.example.org/a"}}))
    assert operations[0]["body"]["user_properties"] == {
        "$set": {"referrer": "https://news.example.org/a", "referring_domain": "news.example.org"},
        "$setOnce": {"initial_referrer": "https://news.example.org/a",
                     "initial_referring_domain": "news.example.org"},
    }


def test_page_referrer_is_not_sent_with_track_referrer_off():
    operations = run(message("page", name="Index", context={"page": {"referrer": "https://a.example/"}}),
                     track_referrer=False)
    assert "user_properties" not in operations[0]["body"]


@pytest.mark.parametrize("kind, event", [("screen", "Viewed Index Screen"), ("track", "Index")])
def test_referrer_is_applied_only_on_page_calls(kind, event):
    fields = {"name": "Index"} if kind == "screen" else {"event": "Index"}
    operations = run(message(kind, context={"page": {"referrer": "https://a.example/"}}, **fields))
    assert operations[0]["body"]["event_type"] == event
    assert "user_properties" not in operations[0]["body"]


def test_page_events_follow_append_fields_and_query_params():
    operations = run(message("page", name="Index", context={"page": {"path": "/p", "search": "?a=1"}}),
                     append_fields_to_event_properties={"context.page.path": "page_path"},
                     map_query_params={"qs": "event_properties"})
    assert operations[0]["body"]["event_properties"] == {"page_path": "/p", "qs": "?a=1", "name": "Index"}
