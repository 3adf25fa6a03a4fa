"""Identify calls: one identification whose user_properties carry the traits as Amplitude
operations (17.2, 17.7)."""

from __future__ import annotations

from typing import Any

from ._common import text
from ._context import campaign_properties, context_fields, page_search
from ._props import UserProperties
from ._tables import Tables
from .events import groups_option

# The address trait is not a user property: its city / country / region become the
# identification's location fields (BY).
_NOT_SENT = "address"


def identification(context: dict, traits: dict | None, options: dict, ids: tuple[str | None, str | None],
                   tables: Tables) -> dict:
    """The body every identify operation starts from: ids, context fields, paying / start_version."""
    body: dict[str, Any] = {}
    if ids[0] is not None:
        body["user_id"] = ids[0]
    if ids[1] is not None:
        body["device_id"] = ids[1]
    context_fields(body, context, traits, tables)
    if options:
        for key in ("paying", "start_version"):
            value = options.get(key)
            if isinstance(value, bool):
                body[key] = "true" if value else "false"
            else:
                value = text(value)
                if value is not None:
                    body[key] = value
    return body


def identify(traits: dict, context: dict, options: dict, ids: tuple[str | None, str | None],
             tables: Tables) -> list[dict]:
    props = UserProperties()
    operation = tables.trait_operation
    if operation:
        for key, value in traits.items():
            if key != _NOT_SENT:
                props.add(operation.get(key, "$set"), key, value)
    else:
        props.add_plain(traits, skip=_NOT_SENT)
    campaign_properties(context, props, tables)
    if tables.query_names:
        search = page_search(context)
        if search is not None:
            for name in tables.query_names:  # identify always writes a user property (BY, AJS)
                props.add("$set", name, search)
    body = identification(context, traits, options, ids, tables)
    user_properties = props.render()
    if user_properties:
        body["user_properties"] = user_properties
    if options:
        groups = groups_option(options)
        if groups:
            body["groups"] = groups
    return [{"api": "identify", "body": body}]
