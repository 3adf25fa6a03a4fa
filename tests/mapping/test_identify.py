"""Identify calls (sections 17.2 and 17.7): traits as user-property operations, never mixed."""

from __future__ import annotations

import pytest

from .helpers import ANON, USER, as_ops, message, only, run


def identify(**fields) -> dict:
    return message("identify", **fields)


def test_identify_is_one_identify_operation_with_traits_as_plain_user_properties():
    operations = run(identify(traits={"plan": "pro", "age": 30}))
    assert [op["api"] for op in operations] == ["identify"]
    body = operations[0]["body"]
    assert body["user_id"] == USER and body["device_id"] == ANON
    assert body["user_properties"] == {"plan": "pro", "age": 30}
    assert body["library"] == "segment"


def test_identify_has_no_event_only_fields():
    body = only(identify(traits={"a": 1}, integrations={"Amplitude": {"session_id": 123, "event_id": 4}}))
    for field in ("session_id", "event_id", "event_type", "insert_id", "time"):
        assert field not in body


@pytest.mark.parametrize("value", [True, False, 0, 12.5, "gold", [1, 2], {"tier": 2}])
def test_identify_engage_trait_values_are_sent_as_set_values(value):
    body = only({"type": "identify", "userId": "u-123456", "traits": {"order_completed_last_30days": value},
                 "integrations": {"All": False, "Amplitude": True}})
    assert body["user_properties"] == {"order_completed_last_30days": value}


def test_identify_null_traits_are_not_sent():
    body = only(identify(traits={"a": None, "b": 1}))
    assert body["user_properties"] == {"b": 1}


def test_identify_with_only_null_traits_has_no_user_properties():
    assert "user_properties" not in only(identify(traits={"a": None}))


@pytest.mark.parametrize("setting, operation", [
    ("traits_to_increment", "$add"),
    ("traits_to_set_once", "$setOnce"),
    ("traits_to_append", "$append"),
    ("traits_to_prepend", "$prepend"),
])
def test_identify_configured_trait_goes_under_its_operation_and_plain_values_under_set(setting, operation):
    body = only(identify(traits={"logins": 1, "plan": "pro"}), **{setting: ("logins",)})
    assert body["user_properties"] == {operation: {"logins": 1}, "$set": {"plan": "pro"}}


def test_identify_trait_named_in_several_lists_goes_under_the_first_operation_only():
    body = only(identify(traits={"x": 1}), traits_to_increment=("x",), traits_to_set_once=("x",),
                traits_to_append=("x",), traits_to_prepend=("x",))
    assert body["user_properties"] == {"$add": {"x": 1}}
    body = only(identify(traits={"x": 1}), traits_to_append=("x",), traits_to_set_once=("x",))
    assert body["user_properties"] == {"$setOnce": {"x": 1}}


def test_identify_configured_trait_absent_from_the_call_produces_nothing():
    body = only(identify(traits={"plan": "pro"}), traits_to_increment=("logins",))
    assert body["user_properties"] == {"plan": "pro"}


def test_identify_user_properties_never_mix_plain_keys_with_operations():
    body = only(identify(traits={"plan": "pro", "logins": 2}, context={"campaign": {"source": "ad"}}),
                traits_to_increment=("logins",))
    assert all(key.startswith("$") for key in body["user_properties"])
    assert body["user_properties"] == {"$set": {"plan": "pro", "utm_source": "ad"}, "$add": {"logins": 2},
                                       "$setOnce": {"initial_utm_source": "ad"}}


def test_identify_address_trait_is_not_a_user_property_but_fills_location_fields():
    body = only(identify(traits={"plan": "pro", "address": {"city": "Lyon", "country": "France", "region": "ARA"}}))
    assert body["user_properties"] == {"plan": "pro"}
    assert (body["city"], body["country"], body["region"]) == ("Lyon", "France", "ARA")


def test_identify_map_query_params_always_writes_a_user_property():
    body = only(identify(traits={"a": 1}, context={"page": {"search": "?q=1"}}),
                map_query_params={"qs": "event_properties"})
    assert as_ops(body["user_properties"]) == {"$set": {"a": 1, "qs": "?q=1"}}


def test_identify_integration_groups_become_the_identification_groups():
    body = only(identify(integrations={"Amplitude": {"groups": {"company": "acme", "teams": ["a", "b"]}}}))
    assert body["groups"] == {"company": "acme", "teams": ["a", "b"]}


@pytest.mark.parametrize("option, value, sent", [("paying", True, "true"), ("start_version", "1.0", "1.0"),
                                                 ("start_version", 2, "2")])
def test_identify_paying_and_start_version_options_are_sent_as_strings(option, value, sent):
    assert only(identify(integrations={"Amplitude": {option: value}}))[option] == sent


@pytest.mark.parametrize("context, version_name, expected", [
    ({"app": {"version": "3.1"}}, "", "3.1"),
    ({"app": {"version": "3.1"}}, "9.9", "3.1"),
    ({}, "9.9", "9.9"),
    ({}, "", None),
])
def test_identify_app_version_from_context_else_version_name(context, version_name, expected):
    assert only(identify(context=context), version_name=version_name).get("app_version") == expected


def test_identify_without_user_id_uses_the_device_id():
    body = only(identify(userId=..., traits={"a": 1}))
    assert "user_id" not in body and body["device_id"] == ANON


def test_identify_trait_named_like_an_operation_is_sent_under_set():
    body = only(identify(traits={"$add": 1, "plan": "pro"}))
    assert body["user_properties"] == {"$set": {"$add": 1, "plan": "pro"}}
