"""Page and screen calls: one event per matching setting, in the documented order (17.6)."""

from __future__ import annotations

from ._common import text_field
from ._tables import Tables
from .events import EventBase, event_properties


def event_names(kind: str, name: str | None, category: str | None, tables: Tables) -> list[str]:
    """1. track_all_pages (or, for screens, track_all_screens) -> "Loaded a Page/Screen";
    2. track_categorized_pages and a category -> "Viewed {Category} Page/Screen";
    3. track_named_pages and a name -> "Viewed {Category} {Name} Page/Screen"."""
    settings = tables.settings
    noun = "Screen" if kind == "screen" else "Page"
    names = []
    if settings.track_all_pages or (kind == "screen" and settings.track_all_screens):
        names.append(f"Loaded a {noun}")
    if category and settings.track_categorized_pages:
        names.append(f"Viewed {category} {noun}")
    if name and settings.track_named_pages:
        names.append(f"Viewed {category} {name} {noun}" if category else f"Viewed {name} {noun}")
    return names


def page(message: dict, kind: str, properties: dict, context: dict, base_for, tables: Tables) -> list[dict]:
    name = text_field(message.get("name"), "name")
    if name is None and properties:
        name = text_field(properties.get("name"), "properties.name")
    category = text_field(message.get("category"), "category")
    if category is None and properties:
        category = text_field(properties.get("category"), "properties.category")
    names = event_names(kind, name, category, tables)
    if not names:
        return []  # no setting asks for this call: dropped, not rejected
    base: EventBase = base_for(kind == "page" and tables.referrer)
    props = event_properties(message, properties, context, tables)
    if name:
        props["name"] = name
    if category:
        props["category"] = category
    first = base.make(names[0], props)
    if len(names) == 1:
        return [first]
    # The first event keeps the bare messageId; the others get distinct, deterministic suffixes.
    return [first] + [base.make(event, dict(props), insert_suffix=f"{kind}-{i}")
                      for i, event in enumerate(names[1:], start=1)]
