"""Alias calls (17.9): a User Mapping API operation, only with enable_alias (the Portfolio add-on)."""

from __future__ import annotations

from ._common import check_id, invalid
from ._tables import Tables


def alias(message: dict, options: dict, tables: Tables) -> list[dict]:
    if not tables.settings.enable_alias:
        raise invalid("type", "alias calls are not sent unless amplitude.enable_alias is on")
    min_length = tables.min_length
    unmap = options.get("unmap")
    if unmap is True:  # the doc passes the id; `true` reasonably means "unmap previousId"
        unmap = message.get("previousId")
        if unmap is None:
            raise invalid("previousId", "integrations.Amplitude.unmap = true needs the previousId to unmap")
        user_id = check_id(unmap, "previousId", min_length)
    elif unmap is not None and unmap is not False:
        user_id = check_id(unmap, "integrations.Amplitude.unmap", min_length)
    else:
        user_id = None
        previous = check_id(message.get("previousId"), "previousId", min_length)
        if previous is None:
            raise invalid("previousId", "an alias call needs a previousId (or integrations.Amplitude.unmap)")
        global_id = check_id(message.get("userId"), "userId", min_length)
        if global_id is None:
            raise invalid("userId", "an alias call needs the userId to map previousId to")
        return [{"api": "usermap", "body": {"user_id": previous, "global_user_id": global_id}}]
    if user_id is None:
        raise invalid("integrations.Amplitude.unmap", "names no user id")
    return [{"api": "usermap", "body": {"user_id": user_id, "unmap": True}}]
