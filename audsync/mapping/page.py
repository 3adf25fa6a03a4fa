"""Page and screen calls: one event per matching setting, in the documented order (17.6)."""

from __future__ import annotations

from ..config import AmplitudeSettings
from ._common import text_field
from .events import EventBase, add_message_fields, event_properties


def event_names(kind: str, name: str | None, category: str | None, settings: AmplitudeSettings) -> list[str]:
    noun = "Screen" if kind == "screen" else "Page"
    names = []
    loaded = settings.track_all_pages or (kind == "screen" and settings.track_all_screens)
    if loaded:
        names.append(f"Loaded a {noun}")
    if settings.track_categorized_pages and category:
        names.append(f"Viewed {category} {noun}")
    if settings.track_named_pages and name:
        full = f"{category} {name}" if category else name
        names.append(f"Viewed {full} {noun}")
    return names


def page(message: dict, kind: str, context: dict, base: EventBase, properties: dict,
         settings: AmplitudeSettings) -> list[dict]:
    name = text_field(message.get("name"), "name") or text_field(properties.get("name"), "properties.name")
    category = (text_field(message.get("category"), "category")
                or text_field(properties.get("category"), "properties.category"))
    names = event_names(kind, name, category, settings)
    if not names:
        return []
    props = event_properties(properties, settings)
    if name:
        props["name"] = name
    if category:
        props["category"] = category
    props = add_message_fields(message, context, props, settings)
    # The first event keeps the bare messageId; the others get distinct, deterministic suffixes.
    return [base.make(event, dict(props), insert_suffix=None if i == 0 else f"{kind}-{i}")
            for i, event in enumerate(names)]
