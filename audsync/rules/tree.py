"""The typed tree of a rule: what parse_rule returns and what the SQL compiler reads.

Every node is a frozen dataclass, so trees compare by value and can be shared. Each node carries the
span of the rule text it came from (`span`, left out of comparisons and repr) so that later stages can
point at the place of a problem the parser could not see, such as an event no warehouse table holds.

Types (`ValueType`) follow Segment's language: an event stream must be reduced to a value, a value can
be compared, and a comparison is a condition. `node.type` gives each node's type.

`trait('key')` stays neutral: a Trait node holds the key only. Whether the key is one of the user's
identify traits or the key of another audsync audience ("part of audience") is for the resolver that
knows the configured audiences, later. A bare `trait('key')` where a condition is expected is
Segment's way to test membership and is read as `trait('key') = true` (an audience's key is `true` for
its members, as Engage sends it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta


class ValueType(enum.Enum):
    """What a node evaluates to, per user."""

    STREAM = "a stream of events"
    NUMBER = "a number"
    STRING = "a string"
    BOOLEAN = "true or false"
    TIMESTAMP = "a timestamp"
    NULL = "null"
    # The type of a trait, a property or the first/last/most frequent value of one: known only
    # when the rule runs, so any comparison may apply.
    ANY = "a value"
    LIST = "a list"
    CONDITION = "a condition"


@dataclass(frozen=True)
class Span:
    """Offsets [start, end) into the rule text."""

    start: int
    end: int


def _span() -> Span | None:
    return field(default=None, compare=False, repr=False)


class Unit(enum.Enum):
    DAYS = "days"
    HOURS = "hours"


@dataclass(frozen=True)
class Duration:
    """`30 days`, `12 hours`: a whole positive number of a unit. Segment measures days as 24 hours."""

    amount: int
    unit: Unit
    span: Span | None = _span()

    @property
    def timedelta(self) -> timedelta:
        return timedelta(days=self.amount) if self.unit is Unit.DAYS else timedelta(hours=self.amount)

    def __str__(self) -> str:
        return f"{self.amount} {self.unit.value}"


# --- extractors ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Event:
    """`event('Name')`: the user's track events of that name (page and screen calls as
    `Page Viewed` / `Screen Viewed`)."""

    name: str
    span: Span | None = _span()
    type = ValueType.STREAM


@dataclass(frozen=True)
class Trait:
    """`trait('key')`: the user's latest identify trait of that key, or the membership of the audience
    with that key; the resolver decides."""

    key: str
    span: Span | None = _span()
    type = ValueType.ANY


@dataclass(frozen=True)
class Property:
    """`property('name')`: a property of the event at hand (inside where() or a reducer); with dots,
    the top-level key of that name if the event has one, else the nested path."""

    name: str
    span: Span | None = _span()
    type = ValueType.ANY


@dataclass(frozen=True)
class Context:
    """`context('page.url')`: a field of the event's context; dots go down nested objects."""

    path: str
    span: Span | None = _span()
    type = ValueType.ANY

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("."))


Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Literal:
    """A constant: a string, number, boolean or null, a tuple of scalars (a list), or a timestamp (the
    argument of before_date / after_date, always timezone-aware, UTC when the text named no zone)."""

    value: Scalar | tuple[Scalar, ...] | datetime
    span: Span | None = _span()

    @property
    def type(self) -> ValueType:
        return literal_type(self.value)


def literal_type(value: object) -> ValueType:
    if value is None:
        return ValueType.NULL
    if isinstance(value, bool):
        return ValueType.BOOLEAN
    if isinstance(value, (int, float)):
        return ValueType.NUMBER
    if isinstance(value, str):
        return ValueType.STRING
    if isinstance(value, datetime):
        return ValueType.TIMESTAMP
    return ValueType.LIST


EventField = Property | Context


# --- filters ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Where:
    """`.where(condition)`: keeps the events the condition holds for (property and context only)."""

    condition: Condition
    span: Span | None = _span()


@dataclass(frozen=True)
class Within:
    """`.within(30 days)`: events whose timestamp is at most that long before the run's start."""

    duration: Duration
    span: Span | None = _span()


@dataclass(frozen=True)
class Between:
    """`.between(7 days, 30 days)`: events from `end` ago up to `start` ago (start < end)."""

    start: Duration
    end: Duration
    span: Span | None = _span()


Filter = Where | Within | Between


@dataclass(frozen=True)
class Stream:
    """An event extractor and its filters, in the order written. At most one window (within or
    between); any number of where() filters, which all must hold."""

    event: Event
    filters: tuple[Filter, ...] = ()
    span: Span | None = _span()
    type = ValueType.STREAM

    @property
    def conditions(self) -> tuple[Condition, ...]:
        return tuple(f.condition for f in self.filters if isinstance(f, Where))

    @property
    def window(self) -> Within | Between | None:
        return next((f for f in self.filters if isinstance(f, (Within, Between))), None)


# --- reducers --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Count:
    """`.count()`: the number of events (distinct message ids) in the stream; 0 when there are none."""

    stream: Stream
    span: Span | None = _span()
    type = ValueType.NUMBER


@dataclass(frozen=True)
class Sum:
    stream: Stream
    of: EventField
    span: Span | None = _span()
    type = ValueType.NUMBER


@dataclass(frozen=True)
class Avg:
    stream: Stream
    of: EventField
    span: Span | None = _span()
    type = ValueType.NUMBER


@dataclass(frozen=True)
class Min:
    """Numeric minimum, as Segment's `min` without `as string`."""

    stream: Stream
    of: EventField
    span: Span | None = _span()
    type = ValueType.NUMBER


@dataclass(frozen=True)
class Max:
    """Numeric maximum, as Segment's `max` without `as string`."""

    stream: Stream
    of: EventField
    span: Span | None = _span()
    type = ValueType.NUMBER


@dataclass(frozen=True)
class Mode:
    """`.mode(property('p'), 2)`: the most frequent value seen at least `min_frequency` times; ties go
    to the first in alphabetical order."""

    stream: Stream
    of: EventField
    min_frequency: int
    span: Span | None = _span()
    type = ValueType.ANY


@dataclass(frozen=True)
class First:
    """The value of the earliest event by timestamp."""

    stream: Stream
    of: EventField
    span: Span | None = _span()
    type = ValueType.ANY


@dataclass(frozen=True)
class Last:
    """The value of the latest event by timestamp."""

    stream: Stream
    of: EventField
    span: Span | None = _span()
    type = ValueType.ANY


@dataclass(frozen=True)
class Unique:
    """`.unique(property('p'))`: the distinct values, sorted; only `.count()` may follow."""

    stream: Stream
    of: EventField
    span: Span | None = _span()
    type = ValueType.LIST


@dataclass(frozen=True)
class UniqueCount:
    """`.unique(property('p')).count()`: how many distinct values."""

    unique: Unique
    span: Span | None = _span()
    type = ValueType.NUMBER


Reducer = Count | Sum | Avg | Min | Max | Mode | First | Last | Unique | UniqueCount
Value = Trait | Property | Context | Literal | Reducer


# --- conditions ------------------------------------------------------------------------------------

class Op(enum.Enum):
    """Comparators. The value is how the canonical text writes it."""

    EQ = "="
    NE = "!="
    GT = ">"
    GE = ">="
    LT = "<"
    LE = "<="
    IS_SET = "is_set"
    IS_NULL = "is_null"
    CONTAINS = "contains"
    OMITS = "omits"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    ONE_OF = "one_of"
    CONTAINS_ONE = "contains_one"
    BEFORE_DATE = "before_date"
    AFTER_DATE = "after_date"
    WITHIN_LAST = "within_last"
    BEFORE_LAST = "before_last"

    @property
    def is_symbol(self) -> bool:
        return self in _SYMBOLS


_SYMBOLS = frozenset({Op.EQ, Op.NE, Op.GT, Op.GE, Op.LT, Op.LE})


@dataclass(frozen=True)
class Compare:
    """`left op right`. `right` is a Literal (a tuple of scalars for one_of / contains_one, a datetime
    for before_date / after_date), a Duration for within_last / before_last, or None for is_set /
    is_null."""

    left: Value
    op: Op
    right: Literal | Duration | None = None
    span: Span | None = _span()
    type = ValueType.CONDITION


@dataclass(frozen=True)
class And:
    items: tuple[Condition, ...]
    span: Span | None = _span()
    type = ValueType.CONDITION


@dataclass(frozen=True)
class Or:
    items: tuple[Condition, ...]
    span: Span | None = _span()
    type = ValueType.CONDITION


@dataclass(frozen=True)
class Not:
    item: Condition
    span: Span | None = _span()
    type = ValueType.CONDITION


Condition = Compare | And | Or | Not
Node = Condition | Value | Stream


# --- canonical text --------------------------------------------------------------------------------

def to_text(node: Node | Duration) -> str:
    """The rule in canonical form (single quotes, `AND`/`OR`/`NOT` in capitals, parentheses only where
    needed). Parsing it gives back an equal tree."""
    return _text(node, 0)


# Binding strength, to know where parentheses are needed: OR < AND < NOT < comparison.
_OR, _AND, _NOT, _ATOM = 1, 2, 3, 4


def _text(node: object, context: int) -> str:
    if isinstance(node, Or):
        text = " OR ".join(_text(item, _OR + 1) for item in node.items)
        return f"({text})" if context > _OR else text
    if isinstance(node, And):
        text = " AND ".join(_text(item, _AND + 1) for item in node.items)
        return f"({text})" if context > _AND else text
    if isinstance(node, Not):
        text = f"NOT {_text(node.item, _NOT)}"
        return f"({text})" if context > _NOT else text
    if isinstance(node, Compare):
        left = _text(node.left, _ATOM)
        if node.op.is_symbol:
            return f"{left} {node.op.value} {_text(node.right, _ATOM)}"
        arg = "" if node.right is None else _text(node.right, _ATOM)
        return f"{left}.{node.op.value}({arg})"
    if isinstance(node, Duration):
        return str(node)
    if isinstance(node, Literal):
        return _literal_text(node.value)
    if isinstance(node, Event):
        return f"event({_quote(node.name)})"
    if isinstance(node, Trait):
        return f"trait({_quote(node.key)})"
    if isinstance(node, Property):
        return f"property({_quote(node.name)})"
    if isinstance(node, Context):
        return f"context({_quote(node.path)})"
    if isinstance(node, Stream):
        return _text(node.event, _ATOM) + "".join(_filter_text(f) for f in node.filters)
    if isinstance(node, Count):
        return f"{_text(node.stream, _ATOM)}.count()"
    if isinstance(node, UniqueCount):
        return f"{_text(node.unique, _ATOM)}.count()"
    if isinstance(node, Mode):
        return f"{_text(node.stream, _ATOM)}.mode({_text(node.of, _ATOM)}, {node.min_frequency})"
    if isinstance(node, (Sum, Avg, Min, Max, First, Last, Unique)):
        return f"{_text(node.stream, _ATOM)}.{type(node).__name__.lower()}({_text(node.of, _ATOM)})"
    raise TypeError(f"not a rule node: {node!r}")


def _filter_text(node: Filter) -> str:
    if isinstance(node, Where):
        return f".where({_text(node.condition, 0)})"
    if isinstance(node, Within):
        return f".within({node.duration})"
    return f".between({node.start}, {node.end})"


def _literal_text(value: object) -> str:
    if isinstance(value, tuple):
        return "[" + ", ".join(_literal_text(v) for v in value) + "]"
    if isinstance(value, datetime):
        return _quote(value.isoformat().replace("+00:00", "Z"))
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _quote(value)
    return repr(value)


_ESCAPES = {"\\": "\\\\", "'": "\\'", "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _quote(text: str) -> str:
    return "'" + "".join(_ESCAPES.get(ch, ch) for ch in text) + "'"
