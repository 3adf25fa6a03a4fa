"""Identify (17.2, 17.7), group (17.8) and alias (17.9)."""

from __future__ import annotations

import pytest

from .helpers import ABSENT, ANON, USER, as_ops, message, only, rejected, run


def test_identify_is_one_identify_operation_with_plain_traits():
    out = run(message("identify", traits={"plan": "pro", "age": 30}))
    assert out == [{"api": "identify", "body": {"user_id": USER, "device_id": ANON, "library": "segment",
                                                "user_properties": {"plan": "pro", "age": 30}}}]


@pytest.mark.parametrize("setting, operation", [
    ("traits_to_increment", "$add"), ("traits_to_set_once", "$setOnce"),
    ("traits_to_append", "$append"), ("traits_to_prepend", "$prepend"),
])
def test_identify_configured_traits_go_under_their_operation_and_plain_traits_under_set(setting, operation):
    b = only(message("identify", traits={"logins": 1, "plan": "pro"}), **{setting: ("logins",)})
    assert b["user_properties"] == {operation: {"logins": 1}, "$set": {"plan": "pro"}}


@pytest.mark.parametrize("lists, operation", [
    ({"traits_to_increment": ("x",), "traits_to_set_once": ("x",), "traits_to_append": ("x",),
      "traits_to_prepend": ("x",)}, "$add"),
    ({"traits_to_set_once": ("x",), "traits_to_append": ("x",), "traits_to_prepend": ("x",)}, "$setOnce"),
    ({"traits_to_append": ("x",), "traits_to_prepend": ("x",)}, "$append"),
])
def test_identify_trait_in_several_lists_goes_under_the_first_match_only(lists, operation):
    assert only(message("identify", traits={"x": 1}), **lists)["user_properties"] == {operation: {"x": 1}}


def test_identify_configured_trait_absent_from_the_call_produces_nothing():
    b = only(message("identify", traits={"plan": "pro"}), traits_to_increment=("logins",))
    assert b["user_properties"] == {"plan": "pro"}


def test_identify_user_properties_are_never_a_mix_of_plain_keys_and_operations():
    b = only(message("identify", traits={"logins": 1, "plan": "pro", "first": "x"},
                 context={"campaign": {"source": "s"}}),
             traits_to_increment=("logins",), traits_to_set_once=("first",))
    up = b["user_properties"]
    assert all(k.startswith("$") for k in up)
    assert up == {"$add": {"logins": 1}, "$set": {"plan": "pro", "utm_source": "s"},
                  "$setOnce": {"first": "x", "initial_utm_source": "s"}}


def test_identify_address_trait_is_not_sent_but_fills_city_country_region():
    b = only(message("identify", traits={"plan": "pro", "address": {"city": "Oslo", "country": "Norway",
                                                                "region": "OS", "street": "x"}}))
    assert b["user_properties"] == {"plan": "pro"}
    assert (b["city"], b["country"], b["region"]) == ("Oslo", "Norway", "OS")


@pytest.mark.parametrize("value", [False, 0, 0.0, "", True, 12.5])
def test_identify_false_and_zero_trait_values_are_kept(value):
    assert only(message("identify", traits={"k": value}))["user_properties"] == {"k": value}


def test_identify_engage_audience_trait_is_an_ordinary_set_value():
    b = only(message("identify", traits={"order_completed_last_30days": True}))
    assert b["user_properties"] == {"order_completed_last_30days": True}
    b = only(message("identify", traits={"order_completed_last_30days": False}))
    assert b["user_properties"] == {"order_completed_last_30days": False}


def test_identify_null_traits_are_not_sent():
    assert "user_properties" not in only(message("identify", traits={"k": None}))


def test_identify_groups_option_and_app_version():
    b = only(message("identify", traits={}, context={"app": {"version": "1.2"}},
                 integrations={"Amplitude": {"groups": {"org": "acme"}}}))
    assert b["groups"] == {"org": "acme"} and b["app_version"] == "1.2"


GROUP_SETTINGS = {"group_type_trait": "kind", "group_value_trait": "name"}


def test_group_with_type_and_value_traits_sends_identify_and_groupidentify():
    traits = {"kind": "team", "name": "Red", "size": 3, "empty": None}
    out = run(message("group", traits=traits), **GROUP_SETTINGS)
    assert [o["api"] for o in out] == ["identify", "groupidentify"]
    ident = out[0]["body"]
    assert ident["groups"] == {"team": "Red"} and as_ops(ident["user_properties"]) == {"$set": {"team": "Red"}}
    assert (ident["user_id"], ident["device_id"]) == (USER, ANON)
    group_body = out[1]["body"]
    assert group_body["group_type"] == "team" and group_body["group_value"] == "Red"
    assert as_ops(group_body["group_properties"]) == {"$set": {"kind": "team", "name": "Red", "size": 3}}


@pytest.mark.parametrize("settings, traits", [
    ({}, {"kind": "team", "name": "Red"}),
    ({"group_type_trait": "kind"}, {"kind": "team", "name": "Red"}),
    ({"group_value_trait": "name"}, {"kind": "team", "name": "Red"}),
    (GROUP_SETTINGS, {"kind": "team"}),
    (GROUP_SETTINGS, {"name": "Red"}),
    (GROUP_SETTINGS, {"kind": "", "name": "Red"}),
    (GROUP_SETTINGS, {}),
])
def test_group_falls_back_to_legacy_segment_group_without_both_settings_and_traits(settings, traits):
    out = run(message("group", traits=traits), **settings)
    assert len(out) == 1 and out[0]["api"] == "identify"
    assert out[0]["body"]["groups"] == {"[Segment] Group": "group-0001"}
    assert out[0]["body"]["user_properties"] == {"[Segment] Group": "group-0001"}


def test_group_numeric_type_or_value_is_sent_as_its_string_form():
    out = run(message("group", traits={"kind": "team", "name": 42}), **GROUP_SETTINGS)
    assert out[0]["body"]["groups"] == {"team": "42"} and out[1]["body"]["group_value"] == "42"


@pytest.mark.parametrize("value", [{"a": 1}, ["Red"]])
def test_group_object_or_list_type_value_is_rejected(value):
    exc = rejected(message("group", traits={"kind": "team", "name": value}), **GROUP_SETTINGS)
    assert "traits.name" in str(exc)


def test_group_follows_the_device_id_rule():
    out = run(message("group", context={"device": {"id": "device-0001"}}), prefer_anonymous_id_for_device_id=True)
    assert out[0]["body"]["device_id"] == ANON
    out = run(message("group", context={"device": {"id": "device-0001"}}))
    assert out[0]["body"]["device_id"] == "device-0001"


def test_alias_with_enable_alias_off_is_rejected_even_with_unmap():
    assert "enable_alias" in str(rejected(message("alias")))
    assert "enable_alias" in str(rejected(message("alias", integrations={"Amplitude": {"unmap": "old-user-1"}})))


def test_alias_with_enable_alias_maps_previous_id_to_user_id():
    assert run(message("alias"), enable_alias=True) == [
        {"api": "usermap", "body": {"user_id": "previous-0001", "global_user_id": USER}}]


def test_alias_unmap_unmaps_that_id_without_global_user_id():
    out = run(message("alias", integrations={"Amplitude": {"unmap": "old-user-1"}}), enable_alias=True)
    assert out == [{"api": "usermap", "body": {"user_id": "old-user-1", "unmap": True}}]


def test_alias_without_previous_id_and_without_unmap_is_rejected():
    assert rejected(message("alias", previousId=ABSENT), enable_alias=True).field == "previousId"
