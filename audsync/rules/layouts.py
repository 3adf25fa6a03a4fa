"""Where events live: the tables and columns the rule compiler reads, per layout.

- `audsync`: the `events` table of the state database (what `audsync serve` stores; see
  audsync.state.models.Event). Track rows have type 'track' and the event's name; page and screen
  rows type 'page' / 'screen' (their `event` column holds the page's name, so `Page Viewed` means
  every page row, and its property('name') — or 'page_name' / 'screen_name', Engage's names — is
  that column). Properties, traits and context are JSON text read by audsync.rules.sqlfuncs.
  `timestamp` is float epoch seconds.
- `segment`: Segment Warehouses (reference/segment-warehouse-schema.md): one table per track event,
  named by go-snakecase, with one column per property (snake_cased too); `pages`, `screens`,
  `identifies` (a column per trait), `aliases`; `id` is the messageId; `timestamp` is a real
  timestamp. Context fields are `context_` columns (`context('page.url')` is `context_page_url`).
- `rudderstack`: the same tables, named by RudderStack's rules (lodash-style snake case, a `_` before
  a leading digit, an event named like one of its own tables goes to `_<name>`).

Identifiers from a rule reach the SQL through sa.table / sa.column, which quote them as each
database needs; snake casing already keeps them to [a-z0-9_].
"""

from __future__ import annotations

import abc
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa

from audsync.rules import sqlfuncs
from audsync.rules import tree as t

PAGE_VIEWED = "Page Viewed"
SCREEN_VIEWED = "Screen Viewed"
LAYOUTS = ("audsync", "segment", "rudderstack")


# --- naming ----------------------------------------------------------------------------------------

def segment_snake(name: str) -> str:
    """Segment's go-snakecase on the UTF-8 bytes of `name`: runs of letters and digits become
    lowercase words joined by `_` (an upper-case run starts a word, a digit stays with what precedes
    it); any other byte, non-ASCII included, only separates."""
    s = name.encode("utf-8")

    def lower(c): return 97 <= c <= 122
    def upper(c): return 65 <= c <= 90
    def digit(c): return 48 <= c <= 57

    i = 0
    while i < len(s) and (lower(s[i]) or digit(s[i]) or (
            s[i] == 95 and i < len(s) - 1 and (lower(s[i + 1]) or digit(s[i + 1])))):
        i += 1
    if i == len(s):
        return name
    if i > 0 and digit(s[i - 1]):
        i -= 1
    out = bytearray(s[:i])
    while i < len(s):
        if not (lower(s[i]) or upper(s[i]) or digit(s[i])):
            i += 1
            continue
        if out:
            out.append(95)
        while i < len(s) and (upper(s[i]) or digit(s[i])):
            out.append(s[i] + 32 if upper(s[i]) else s[i])
            i += 1
        while i < len(s) and (lower(s[i]) or digit(s[i])):
            out.append(s[i])
            i += 1
    return out.decode("ascii")


# lodash's word split, reduced to ASCII (RudderStack's snakecase package, ToSnakeCaseWithNumbers, its
# default): letters with the digits after or before them, a capitalised or lower-case word, an
# upper-case run (ending before a capitalised word), ordinals, digit runs.
_RS_WORD = re.compile(
    r"[A-Z]?[a-z]+\d+|[A-Z]+\d+|\d+[A-Z]?[a-z]+|\d+[A-Z]+"
    r"|[A-Z]?[a-z]+(?=[^A-Za-z0-9]|[A-Z]|$)"
    r"|[A-Z]+(?=[^A-Za-z0-9]|[A-Z][a-z]|$)"
    r"|[A-Z]?[a-z]+"
    r"|[A-Z]+"
    r"|\d*(?:1ST|2ND|3RD|(?![123])\dTH)(?=\b|[a-z_])"
    r"|\d*(?:1st|2nd|3rd|(?![123])\dth)(?=\b|[A-Z_])"
    r"|\d+")
_RS_TABLES = frozenset({"tracks", "pages", "screens", "aliases", "groups", "accounts", "users",
                        "identifies"})


def rudderstack_snake(name: str) -> str:
    """RudderStack's column and table names: lodash snake case of the ASCII words (other characters
    separate), a `_` before a leading digit."""
    words = _RS_WORD.findall(name.replace("'", "").replace("\u2019", ""))
    out = "_".join(w.lower() for w in words)
    return "_" + out if out[:1].isdigit() else out


def rudderstack_event_table(name: str) -> str:
    table = rudderstack_snake(name)
    return "_" + table if table in _RS_TABLES else table


# --- fields of an event row -----------------------------------------------------------------------

class Field(abc.ABC):
    """One value of an event or identify row, in the forms comparisons need: `text`, `number`, and
    `value` (what a computed trait returns: JSON text for JSON layouts, the column otherwise)."""

    @abc.abstractmethod
    def text(self) -> sa.ColumnElement:
        """The value as text (NULL when missing)."""

    @abc.abstractmethod
    def number(self) -> sa.ColumnElement:
        """The value as a number (NULL when missing or, for JSON, not a number)."""

    @abc.abstractmethod
    def value(self) -> sa.ColumnElement:
        """The value as a computed trait returns it."""


@dataclass(frozen=True)
class JsonField(Field):
    doc: sa.ColumnElement
    keys: tuple[str, ...]

    def text(self):
        return sqlfuncs.json_text(self.doc, self.keys)

    def number(self):
        return sqlfuncs.json_number(self.doc, self.keys)

    def value(self):
        return sqlfuncs.json_raw(self.doc, self.keys)


@dataclass(frozen=True)
class DottedJsonField(Field):
    """property('a.b') of a JSON document: the top-level key 'a.b' when the document has it, else the
    nested a -> b (D-SQL: '.' traverses nested objects; a warehouse flattens both to the column a_b)."""

    literal: JsonField
    nested: JsonField

    def _pick(self, form: str) -> sa.ColumnElement:
        present = self.literal.value().is_not(None)
        return sa.case((present, getattr(self.literal, form)()), else_=getattr(self.nested, form)())

    def text(self):
        return self._pick("text")

    def number(self):
        return self._pick("number")

    def value(self):
        return self._pick("value")


def _property(doc: sa.ColumnElement, name: str) -> Field:
    literal = JsonField(doc, (name,))
    parts = tuple(name.split("."))
    return literal if len(parts) == 1 else DottedJsonField(literal, JsonField(doc, parts))


@dataclass(frozen=True)
class TextColumnField(Field):
    """A text column in a layout whose values are JSON text (the page name of the audsync layout)."""

    col: sa.ColumnElement

    def text(self):
        return self.col

    def number(self):
        return sa.null()

    def value(self):
        return sqlfuncs.json_string(self.col)


@dataclass(frozen=True)
class ColumnField(Field):
    col: sa.ColumnElement
    numeric: bool = False   # a column of a number type: no text in it to check

    def text(self):
        return sa.cast(self.col, sa.String())

    def number(self):
        return sa.cast(self.col, sa.Float()) if self.numeric else sqlfuncs.to_number(self.col)

    def value(self):
        return self.col


class NullField(Field):
    """A field no table has (a trait when there is no identifies table)."""

    def text(self):
        return sa.null()

    def number(self):
        return sa.null()

    def value(self):
        return sa.null()


@dataclass
class Rows:
    """Rows of one table holding events (or identifies): the columns every layout has, the filters
    that select the event, and how to read a field."""

    table: sa.FromClause
    message_id: sa.ColumnElement
    user_id: sa.ColumnElement
    anonymous_id: sa.ColumnElement
    timestamp: sa.ColumnElement
    filters: tuple[sa.ColumnElement, ...]
    layout: "Layout"
    # "page" / "screen" for Page Viewed / Screen Viewed rows: their name is property('name'), or
    # property('page_name') / property('screen_name') as Engage calls it.
    page_kind: str | None = None

    def is_name(self, node) -> bool:
        return self.page_kind is not None and isinstance(node, t.Property) and \
            node.name in ("name", f"{self.page_kind}_name")

    def field(self, node: t.Property | t.Context | t.Trait) -> Field:
        return self.layout.field(self, node)


@dataclass
class LinkRows:
    """Rows that tie an anonymous id (or an alias's previous id) to a user id."""

    table: sa.FromClause
    message_id: sa.ColumnElement
    anonymous_id: sa.ColumnElement
    user_id: sa.ColumnElement
    timestamp: sa.ColumnElement


class Layout(abc.ABC):
    name: str
    value_json: bool = False
    # Whether identifies share a user_id index with every other event (the audsync layout's
    # migration): a few hundred profiles' identifies are then cheaper to find among all identify
    # rows than through that index, which reads each profile's every event.
    user_index: bool = False
    # Whether a stream's rows with a user id and its anonymous-only rows are read apart (two scans,
    # UNION ALL), only the latter joined to the links. A warehouse has no index: a scan for each part
    # spares sorting or hashing every row by anonymous id for the join, which PostgreSQL did for the
    # joined form at 10M events. The audsync layout finds a stream's rows through its (event,
    # timestamp) index, and one read of them, joined, measured the cheaper there (bench/RESULTS.md,
    # 2026-12-06, 22:39-22:50 UTC).
    split_streams: bool = True

    def __init__(self, schema: str | None, tables: frozenset[str] | None,
                 columns: Mapping[str, frozenset[str]] | None = None,
                 numeric: Mapping[str, frozenset[str]] | None = None):
        self.schema = schema
        self.tables = tables
        self.columns = columns
        self.numeric = numeric or {}
        self.warnings: list[str] = []

    def where(self) -> str:
        return self.schema or "the database"

    def has(self, table: str) -> bool:
        return self.tables is None or table in self.tables

    def value_text(self, value: sa.ColumnElement) -> sa.ColumnElement:
        """A Field's `text` form computed from its `value` form."""
        return sqlfuncs.json_value_text(value) if self.value_json else sa.cast(value, sa.String())

    @abc.abstractmethod
    def instant(self, moment: datetime) -> sa.ColumnElement:
        """A bound instant comparable with this layout's timestamp columns."""

    @abc.abstractmethod
    def events(self, name: str) -> Rows | None:
        """The rows of event `name`; None when no table holds it."""

    @abc.abstractmethod
    def identifies(self) -> Rows | None:
        """The identify rows; None when there is no table of them."""

    @abc.abstractmethod
    def links(self) -> list[LinkRows]:
        """Every kind of row that links an anonymous id to a user id."""

    @abc.abstractmethod
    def everyone(self) -> list[Rows]:
        """Rows that together name every known profile."""

    @abc.abstractmethod
    def field(self, rows: Rows, node) -> Field:
        """How to read a property, a context field or a trait on `rows`."""


class AudsyncLayout(Layout):
    name = "audsync"
    value_json = True
    user_index = True
    split_streams = False

    def _rows(self, *filters) -> Rows:
        e = sa.table("events", *(sa.column(c) for c in (
            "message_id", "type", "event", "user_id", "anonymous_id", "previous_id", "timestamp",
            "properties", "traits", "context")), schema=self.schema)
        return Rows(e, e.c.message_id, e.c.user_id, e.c.anonymous_id, e.c.timestamp,
                    tuple(f(e) for f in filters), self)

    def instant(self, moment):
        return sa.literal(moment.astimezone(timezone.utc).timestamp(), sa.Float())

    def events(self, name):
        if name in (PAGE_VIEWED, SCREEN_VIEWED):
            kind = "page" if name == PAGE_VIEWED else "screen"
            rows = self._rows(lambda e: e.c.type == kind)
            rows.page_kind = kind
            return rows
        return self._rows(lambda e: e.c.type == "track", lambda e: e.c.event == sa.literal(name, sa.String()))

    def identifies(self):
        return self._rows(lambda e: e.c.type == "identify")

    def links(self):
        e = self._rows().table
        ident = sa.select(e.c.message_id, e.c.anonymous_id, e.c.user_id, e.c.timestamp).where(
            e.c.type == "identify").subquery("identify_links")
        alias = sa.select(e.c.message_id, e.c.previous_id.label("anonymous_id"), e.c.user_id,
                          e.c.timestamp).where(e.c.type == "alias").subquery("alias_links")
        return [LinkRows(q, q.c.message_id, q.c.anonymous_id, q.c.user_id, q.c.timestamp)
                for q in (ident, alias)]

    def everyone(self):
        return [self._rows()]

    def field(self, rows, node):
        if rows.is_name(node):
            # What `audsync serve` stored as the page's name: its `name`, else properties.name.
            return TextColumnField(rows.table.c.event)
        if isinstance(node, t.Property):
            return _property(rows.table.c.properties, node.name)
        if isinstance(node, t.Context):
            return JsonField(rows.table.c.context, node.parts)
        return JsonField(rows.table.c.traits, (node.key,))


class SegmentLayout(Layout):
    name = "segment"

    def snake(self, name: str) -> str:
        return segment_snake(name)

    def event_table(self, name: str) -> str:
        return self.snake(name)

    def instant(self, moment):
        return sqlfuncs.instant_param(moment)

    def _table(self, name: str) -> sa.TableClause | None:
        if not name or not self.has(name):
            return None
        return sa.table(name, schema=self.schema)

    def _rows_of(self, table, filters) -> Rows:
        cols = {c: sa.column(c) for c in ("id", "user_id", "anonymous_id", "timestamp", "event_text")}
        table = sa.table(table.name, *cols.values(), schema=table.schema)
        return Rows(table, table.c.id, table.c.user_id, table.c.anonymous_id, sqlfuncs.event_time(table.c.timestamp),
                    tuple(f(table) for f in filters), self)

    def events(self, name):
        if name in (PAGE_VIEWED, SCREEN_VIEWED):
            kind = "page" if name == PAGE_VIEWED else "screen"
            table = self._table(kind + "s")
            if table is None:
                return None
            rows = self._rows_of(table, ())
            rows.page_kind = kind
            return rows
        table = self._table(self.event_table(name))
        if table is None:
            return None
        # Names that differ only in case or punctuation share a table: event_text tells them apart.
        return self._rows_of(table, (lambda tb: tb.c.event_text == sa.literal(name, sa.String()),))

    def identifies(self):
        table = self._table("identifies")
        return None if table is None else self._rows_of(table, ())

    def links(self):
        out = []
        ident = self._table("identifies")
        if ident is not None:
            tb = sa.table("identifies", *(sa.column(c) for c in ("id", "anonymous_id", "user_id", "timestamp")),
                          schema=self.schema)
            out.append(LinkRows(tb, tb.c.id, tb.c.anonymous_id, tb.c.user_id, sqlfuncs.event_time(tb.c.timestamp)))
        if self._table("aliases") is not None:
            tb = sa.table("aliases", *(sa.column(c) for c in ("id", "previous_id", "user_id", "timestamp")),
                          schema=self.schema)
            out.append(LinkRows(tb, tb.c.id, tb.c.previous_id, tb.c.user_id, sqlfuncs.event_time(tb.c.timestamp)))
        return out

    def everyone(self):
        return [self._rows_of(table, ()) for table in (self._table(n) for n in ("identifies", "tracks", "pages", "screens"))
                if table is not None]

    def field(self, rows, node):
        if rows.is_name(node):
            name = "name"
        elif isinstance(node, t.Property):
            name = self.snake(node.name)
        elif isinstance(node, t.Context):
            name = "context_" + "_".join(self.snake(p) for p in node.parts)
        else:
            name = self.snake(node.key)
        table = rows.table.name
        known = self.columns.get(table) if self.columns is not None else None
        if not name.strip("_") or (known is not None and name not in known):
            what = {t.Property: "property", t.Context: "context", t.Trait: "trait"}[type(node)]
            label = node.name if isinstance(node, t.Property) else node.path if isinstance(node, t.Context) \
                else node.key
            shown = f"{self.schema}.{table}" if self.schema else table
            self.warnings.append(f"{what} {label!r} has no column {name or '(empty name)'} in {shown}: "
                                 "read as null")
            return NullField()
        return ColumnField(_column(rows.table, name), name in self.numeric.get(table, ()))


class RudderstackLayout(SegmentLayout):
    name = "rudderstack"

    def snake(self, name: str) -> str:
        return rudderstack_snake(name)

    def event_table(self, name: str) -> str:
        return rudderstack_event_table(name)


def _column(table: sa.TableClause, name: str) -> sa.ColumnClause:
    if name not in table.c:
        table.append_column(sa.column(name))
    return table.c[name]


def layout_for(name: str, schema: str | None, tables: frozenset[str] | None,
               columns: Mapping[str, frozenset[str]] | None = None,
               numeric: Mapping[str, frozenset[str]] | None = None) -> Layout:
    classes = {"audsync": AudsyncLayout, "segment": SegmentLayout, "rudderstack": RudderstackLayout}
    if name not in classes:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {name!r}")
    return classes[name](schema, tables, columns, numeric)
