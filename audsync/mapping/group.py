"""Group calls (17.8): trait-based groups with group properties, else the legacy
"[Segment] Group" membership."""

from __future__ import annotations

from typing import Any

from ._common import invalid, text_field, type_name
from ._props import clean_props
from ._tables import Tables
from .identify import identification

SEGMENT_GROUP = "[Segment] Group"


def _group_text(value: Any, field: str) -> str | None:
    """A group type or value: a string, or the string form of a number."""
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        raise invalid(field, f"a group type or value must be a string or a number, not {type_name(value)}")
    found = text_field(value, field)
    return found if found and found.strip() else None


def group(message: dict, traits: dict, context: dict, options: dict, ids: tuple[str | None, str | None],
          tables: Tables) -> list[dict]:
    group_id = text_field(message.get("groupId"), "groupId")
    if group_id is None:
        raise invalid("groupId", "a group call needs a groupId")
    settings = tables.settings
    group_type = group_value = None
    if settings.group_type_trait and settings.group_value_trait:
        group_type = _group_text(traits.get(settings.group_type_trait), f"traits.{settings.group_type_trait}")
        group_value = _group_text(traits.get(settings.group_value_trait), f"traits.{settings.group_value_trait}")
    body = identification(context, None, options, ids, tables)
    if group_type and group_value:
        body["groups"] = {group_type: group_value}
        body["user_properties"] = {group_type: group_value}  # Segment always adds groups as user properties
        group_body: dict[str, Any] = {"group_type": group_type, "group_value": group_value}
        group_properties = clean_props(traits)
        if group_properties:
            group_body["group_properties"] = group_properties
        return [{"api": "identify", "body": body}, {"api": "groupidentify", "body": group_body}]
    # Either setting empty or either trait missing: membership only, no group properties (doc).
    body["groups"] = {SEGMENT_GROUP: group_id}
    body["user_properties"] = {SEGMENT_GROUP: group_id}
    return [{"api": "identify", "body": body}]
