"""Alias calls (section 17.9): usermap only with enable_alias."""

from __future__ import annotations

import pytest

from audsync.errors import ValidationError

from .helpers import run


def alias(**fields) -> dict:
    base = {"type": "alias", "userId": "global-1", "previousId": "old-12345", "messageId": "m-1"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not ...}


@pytest.mark.parametrize("message", [alias(), alias(integrations={"Amplitude": {"unmap": "old-12345"}})])
def test_alias_is_rejected_as_unsupported_without_enable_alias(message):
    with pytest.raises(ValidationError, match="enable_alias") as info:
        run(message)
    assert info.value.field == "type"


def test_alias_with_enable_alias_maps_previous_id_to_the_global_user_id():
    assert run(alias(), enable_alias=True) == [
        {"api": "usermap", "body": {"user_id": "old-12345", "global_user_id": "global-1"}}]


def test_alias_unmap_option_unmaps_that_id_without_a_global_user_id():
    operations = run(alias(userId=..., previousId=..., integrations={"Amplitude": {"unmap": "old-99999"}}),
                     enable_alias=True)
    assert operations == [{"api": "usermap", "body": {"user_id": "old-99999", "unmap": True}}]


def test_alias_unmap_true_unmaps_the_previous_id():
    operations = run(alias(integrations={"Amplitude": {"unmap": True}}), enable_alias=True)
    assert operations == [{"api": "usermap", "body": {"user_id": "old-12345", "unmap": True}}]


@pytest.mark.parametrize("message, field", [
    (alias(previousId=...), "previousId"),
    (alias(userId=...), "userId"),
    (alias(previousId="null"), "previousId"),
    (alias(userId="abc"), "userId"),
    (alias(previousId=..., integrations={"Amplitude": {"unmap": True}}), "previousId"),
    (alias(integrations={"Amplitude": {"unmap": "none"}}), "integrations.Amplitude.unmap"),
    (alias(integrations={"Amplitude": {"unmap": {"id": 1}}}), "integrations.Amplitude.unmap"),
])
def test_alias_without_usable_ids_is_rejected_naming_the_field(message, field):
    with pytest.raises(ValidationError) as info:
        run(message, enable_alias=True)
    assert info.value.field == field and str(info.value).startswith(field + ":")


def test_alias_dropped_by_integrations_gives_nothing_even_without_enable_alias():
    assert run(alias(integrations={"Amplitude": False})) == []
