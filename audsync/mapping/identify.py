"""Identify, group and alias calls (17.7-17.9)."""

from __future__ import annotations

from typing import Any

from ..config import AmplitudeSettings
from ..errors import ValidationError
from ._common import (
    UserProperties, campaign_properties, check_id, clean_props, context_fields, page_search,
    text_field, type_name,
)

SEGMENT_GROUP = "[Segment] Group"


def _identification(message: dict, context: dict, traits: dict, options: dict,
                    ids: tuple[str | None, str | None], settings: AmplitudeSettings) -> dict:
    body: dict[str, Any] = {}
    if ids[0] is not None:
        body["user_id"] = ids[0]
    if ids[1] is not None:
        body["device_id"] = ids[1]
    body.update(context_fields(message, context, traits, settings))
    for field in ("paying", "start_version"):
        value = options.get(field)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            body[field] = str(value)
        elif isinstance(value, bool):
            body[field] = "true" if value else "false"
    return body


def _groups_option(options: dict) -> dict | None:
    groups = options.get("groups")
    if groups is None:
        return None
    if not isinstance(groups, dict):
        raise ValidationError("integrations.Amplitude.groups: must be an object",
                              field="integrations.Amplitude.groups")
    return clean_props(groups) or None


def identify(message: dict, context: dict, traits: dict, options: dict, ids: tuple[str | None, str | None],
             settings: AmplitudeSettings) -> list[dict]:
    props = UserProperties()
    operation_of = {}
    for op, names in (("$add", settings.traits_to_increment), ("$setOnce", settings.traits_to_set_once),
                      ("$append", settings.traits_to_append), ("$prepend", settings.traits_to_prepend)):
        for name in names:
            operation_of.setdefault(name, op)
    for key, value in traits.items():
        if key == "address":
            continue
        props.add(operation_of.get(key, "$set"), key, value)
    campaign_properties(context, props, settings)
    search = page_search(context)
    if search is not None:
        for name in settings.map_query_params:  # identify always writes user properties
            props.add("$set", name, search)
    body = _identification(message, context, traits, options, ids, settings)
    user_properties = props.render()
    if user_properties:
        body["user_properties"] = user_properties
    groups = _groups_option(options)
    if groups:
        body["groups"] = groups
    return [{"api": "identify", "body": body}]


def _group_text(value: Any, field: str) -> str | None:
    if isinstance(value, (dict, list)):
        raise ValidationError(f"{field}: a group type or value must be a string or a number, not {type_name(value)}",
                              field=field)
    if isinstance(value, bool):
        return "true" if value else "false"
    return text_field(value, field)


def group(message: dict, context: dict, traits: dict, options: dict, ids: tuple[str | None, str | None],
          settings: AmplitudeSettings) -> list[dict]:
    group_id = text_field(message.get("groupId"), "groupId")
    if group_id is None:
        raise ValidationError("groupId: a group call needs a groupId", field="groupId")
    body = _identification(message, context, {}, options, ids, settings)
    group_type = group_value = None
    if settings.group_type_trait and settings.group_value_trait:
        group_type = _group_text(traits.get(settings.group_type_trait), f"traits.{settings.group_type_trait}")
        group_value = _group_text(traits.get(settings.group_value_trait), f"traits.{settings.group_value_trait}")
    if group_type and group_value:
        body["groups"] = {group_type: group_value}
        body["user_properties"] = {group_type: group_value}
        group_body = {"group_type": group_type, "group_value": group_value}
        group_properties = clean_props(traits)
        if group_properties:
            group_body["group_properties"] = group_properties
        return [{"api": "identify", "body": body}, {"api": "groupidentify", "body": group_body}]
    body["groups"] = {SEGMENT_GROUP: group_id}
    body["user_properties"] = {SEGMENT_GROUP: group_id}
    return [{"api": "identify", "body": body}]


def alias(message: dict, options: dict, settings: AmplitudeSettings) -> list[dict]:
    if not settings.enable_alias:
        raise ValidationError("type: alias calls are not sent unless amplitude.enable_alias is on", field="type")
    unmap = options.get("unmap")
    if unmap is True:
        unmap = message.get("previousId")
        if unmap is None:
            raise ValidationError("previousId: unmap: true needs the previousId to unmap", field="previousId")
    if unmap is not None and unmap is not False:
        user_id = check_id(unmap, "integrations.Amplitude.unmap", settings)
        if user_id is None:
            raise ValidationError("integrations.Amplitude.unmap: names no user id", field="integrations.Amplitude.unmap")
        return [{"api": "usermap", "body": {"user_id": user_id, "unmap": True}}]
    previous = check_id(message.get("previousId"), "previousId", settings)
    if previous is None:
        raise ValidationError("previousId: an alias call needs a previousId (or integrations.Amplitude.unmap)",
                              field="previousId")
    user_id = check_id(message.get("userId"), "userId", settings)
    if user_id is None:
        raise ValidationError("userId: an alias call needs the userId to map previousId to", field="userId")
    return [{"api": "usermap", "body": {"user_id": previous, "global_user_id": user_id}}]


