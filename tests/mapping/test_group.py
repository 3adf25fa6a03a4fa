"""Group calls (section 17.8)."""

from __future__ import annotations

import pytest

from audsync.errors import ValidationError

from .helpers import DEVICE, USER, message, run

TRAIT_SETTINGS = {"group_type_trait": "kind", "group_value_trait": "org"}


def group(**fields) -> dict:
    return message("group", **{"groupId": "g-42", **fields})


def test_group_with_type_and_value_traits_sends_identify_with_groups_and_a_groupidentify():
    operations = run(group(traits={"kind": "company", "org": "Acme", "size": 50, "gone": None}), **TRAIT_SETTINGS)
    assert [op["api"] for op in operations] == ["identify", "groupidentify"]
    identify, group_identify = (op["body"] for op in operations)
    assert identify["user_id"] == USER
    assert identify["groups"] == {"company": "Acme"}
    assert identify["user_properties"] == {"company": "Acme"}
    assert group_identify == {"group_type": "company", "group_value": "Acme",
                              "group_properties": {"kind": "company", "org": "Acme", "size": 50}}


@pytest.mark.parametrize("settings, traits", [
    ({}, {"kind": "company", "org": "Acme"}),
    ({"group_type_trait": "kind"}, {"kind": "company", "org": "Acme"}),
    ({"group_value_trait": "org"}, {"kind": "company", "org": "Acme"}),
    (TRAIT_SETTINGS, {"kind": "company"}),
    (TRAIT_SETTINGS, {"org": "Acme"}),
    (TRAIT_SETTINGS, {"kind": "", "org": "Acme"}),
    (TRAIT_SETTINGS, {"kind": "company", "org": None}),
])
def test_group_falls_back_to_legacy_segment_group_without_both_settings_and_traits(settings, traits):
    operations = run(group(traits=traits), **settings)
    assert [op["api"] for op in operations] == ["identify"]
    body = operations[0]["body"]
    assert body["groups"] == {"[Segment] Group": "g-42"}
    assert body["user_properties"] == {"[Segment] Group": "g-42"}


def test_group_numeric_type_or_value_uses_its_string_form():
    operations = run(group(groupId=42, traits={"kind": "company", "org": 1234}), **TRAIT_SETTINGS)
    assert operations[0]["body"]["groups"] == {"company": "1234"}
    assert operations[1]["body"]["group_value"] == "1234"


@pytest.mark.parametrize("value", [{"a": 1}, ["a"], True])
def test_group_object_list_or_boolean_value_is_rejected_naming_the_trait(value):
    with pytest.raises(ValidationError, match=r"^traits\.org: ") as info:
        run(group(traits={"kind": "company", "org": value}), **TRAIT_SETTINGS)
    assert info.value.field == "traits.org"


@pytest.mark.parametrize("group_id", [..., None, ""])
def test_group_without_group_id_is_rejected(group_id):
    with pytest.raises(ValidationError, match=r"^groupId: ") as info:
        run(group(groupId=group_id))
    assert info.value.field == "groupId"


def test_group_uses_the_same_device_id_rule():
    operations = run(group(userId=..., context={"device": {"id": DEVICE}}))
    assert operations[0]["body"]["device_id"] == DEVICE
    operations = run(group(userId=..., context={"device": {"id": DEVICE}}), prefer_anonymous_id_for_device_id=True)
    assert operations[0]["body"]["device_id"] != DEVICE
