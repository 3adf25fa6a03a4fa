"""A rule's tree (audsync.rules.tree) -> one SQLAlchemy Core query, run where the events live.

`compile_rule` returns a Select whose rows are the audience's members (`user_id`; with
include_anonymous also `anonymous_id`, exactly one of the two set per row) or a computed trait's
values (`user_id` [, `anonymous_id`], `value`). Event rows never leave the database. `value` is a
number for count / sum / avg / min / max / unique count; for first / last / mode / trait it is the
value's JSON text in the audsync layout (Compiled.value_json: JSON values have no single SQL type)
and the warehouse column's own value otherwise; for unique it is JSON array text everywhere. Every name and value from the rule is a bound parameter or an identifier
quoted by SQLAlchemy (layouts.py, sqlfuncs.py): no rule text is pasted into SQL.

Semantics (DESIGN.md section 7, reference/engage-audiences.md):

- Time. Only events with `timestamp <= as_of` exist. `within(N)` keeps `as_of - N <= timestamp`;
  `between(A, B)` keeps `as_of - B <= timestamp <= as_of - A` (both ends inclusive); days are 24 hours.
- Profiles. An event's profile is its user_id; an event with only an anonymous_id belongs to the user
  that an identify (anonymous_id + user_id) or an alias (previous_id -> user_id) links to it, the
  link with the latest timestamp winning (then the greatest message id); links after as_of are not
  used. A profile with no user id is anonymous-only: it can be a member (by anonymous_id) only with
  include_anonymous. Everyone known (for NOT, `count() = 0`, `is_null()`...) is every profile with
  any event or identify up to as_of.
- Counting. `count()` counts distinct message ids (a warehouse may hold duplicates); `sum` and `avg`
  add each message once. A profile without events in the stream has count 0 and no sum, avg, min,
  max, mode, first, last or unique (all null), and unique count 0.
- Values. `sum / avg / min / max` read numbers: in JSON a string such as "100" is no number and is
  skipped (null); in a warehouse's text column (its first value was text) a value is a number when
  its text reads as one ('10'), and missing otherwise ('M'). `first` / `last` take the earliest /
  latest event, by timestamp then message id, that has the property set. `mode(p, k)` is the value
  seen on at least k events, most often; ties go to the smallest text (the database's collation;
  byte order on SQLite and on PostgreSQL's "C"). `property('a.b')` is the key 'a.b' when the
  properties have it, else the nested a -> b (a warehouse flattens both to the column a_b).
  `unique(p)` is a JSON array text of the distinct values' text forms, sorted the same way (numbers
  become strings: 100 -> "100"), on every database; `.count()` counts them.
- Traits. `trait('k')` is the latest identify (by timestamp, then message id) that set k to a
  non-null value. When k is the key of another audience (`audiences`), it is membership instead:
  `= true`, `= false`, `!= ...`, `is_set()` (a member), `is_null()` (not a member); members are
  matched by user_id (an anonymous-only profile is never a member of another audience).
- Comparisons and null. A comparison against a number reads the value as a number, against a string
  as text, against true/false as a boolean. Every comparator is false when the value is missing
  (null) — `!=`, `omits` and `before_date` included — except `is_null()`, which is true exactly then.
  NOT negates that two-valued result, so `NOT (trait('plan') = 'pro')` includes profiles with no
  plan, while `trait('plan') != 'pro'` does not. Text comparators (`contains`, `omits`,
  `starts_with`, `ends_with`, `contains_one`) are case-sensitive on every database. Date comparators
  read the value as an ISO 8601 instant (text that is not one counts as missing): `before_date(d)`
  is `< d`, `after_date(d)` is `> d`, `within_last(N)` is `as_of - N <= value <= as_of`,
  `before_last(N)` is `< as_of - N`.
- Computed traits. A profile gets a value when the reducer over its events gives a non-null one:
  count and unique count as soon as it has one event in the stream. When a profile's events age out
  it has no row, and the sync unsets the trait.
- Missing tables. An event with no table in the warehouse (Warehouse.tables given and lacking it)
  has no events: a warning names it. Without an identifies table every trait is missing.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.sql.elements import _anonymous_label

from audsync.errors import ConfigError
from audsync.rules import sqlfuncs
from audsync.rules import tree as t
from audsync.rules.layouts import ColumnField, Field, Layout, NullField, Rows, layout_for

__all__ = ["Compiled", "Warehouse", "compile_rule"]

# Seeds of SQLAlchemy's anonymous names (what .cte() and .subquery() without a name use: anon_1),
# given a readable stem (_Compiler.name); a seed only has to differ between the names of a process.
_SEEDS = itertools.count(1)


@dataclass(frozen=True)
class Warehouse:
    layout: str                             # "audsync" | "segment" | "rudderstack"
    schema: str | None = None               # the warehouse schema (segment_prod); None for audsync
    tables: frozenset[str] | None = None    # the tables that exist there; None = unknown
    # Optional, the columns of tables there (by table name): a property or trait with no column
    # (Segment and RudderStack create a column only once a non-null value arrives) then reads as
    # null with a warning, instead of the query failing. Tables not in it are taken as they come.
    columns: Mapping[str, frozenset[str]] | None = field(default=None, hash=False)
    # Optional, the columns of a number type (by table name): read as numbers as they are. Any other
    # column may hold text ('M' in a column a first value '10' made text), which is a number only
    # when it reads as one, a check that costs time on every row.
    numeric: Mapping[str, frozenset[str]] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class Compiled:
    query: sa.Select                        # columns: user_id [, anonymous_id] [, value]
    warnings: tuple[str, ...]
    # True when `value` is JSON text to decode (first/last/mode/trait values of the audsync layout,
    # whose JSON values have no single SQL type; unique lists on every layout).
    value_json: bool = False


def compile_rule(rule, *, kind: str, warehouse: Warehouse, as_of: datetime,
                 include_anonymous: bool = False,
                 audiences: Mapping[str, sa.FromClause] | None = None,
                 shared: dict | None = None) -> Compiled:
    """Compile a parsed rule (parse_rule(text, kind)) into one query. `as_of` is the run's start (a
    naive datetime is UTC). `audiences` maps other audiences' keys to selectables with a `user_id`
    column of their members: `trait(key)` of such a key is membership. `shared`, one dict for the
    rules compiled into one query (an audience and those it reads inline), lets them use one CTE of
    the identity links where they read the same events: the database builds it once."""
    if kind not in ("audience", "computed_trait"):
        raise ValueError(f"kind must be 'audience' or 'computed_trait', not {kind!r}")
    as_of = as_of.replace(tzinfo=timezone.utc) if as_of.tzinfo is None else as_of.astimezone(timezone.utc)
    layout = layout_for(warehouse.layout, warehouse.schema, warehouse.tables, warehouse.columns, warehouse.numeric)
    compiler = _Compiler(layout, as_of, include_anonymous, dict(audiences or {}),
                         shared if shared is not None else {}, (warehouse.layout, warehouse.schema))
    if kind == "audience":
        if not _is_condition(rule):
            raise ConfigError("an audience rule must end in a condition")
        query, value_json = compiler.audience(rule), False
    else:
        if _is_condition(rule):
            raise ConfigError("a computed trait rule must end in a value")
        query, value_json = compiler.computed_trait(rule)
    warnings = list(dict.fromkeys([*compiler.warnings, *layout.warnings]))
    return Compiled(query, tuple(warnings), value_json)


def _is_condition(node) -> bool:
    return isinstance(node, (t.Compare, t.And, t.Or, t.Not))


_COUNTS = (t.Count, t.UniqueCount)
_NUMERIC = (t.Count, t.Sum, t.Avg, t.Min, t.Max, t.UniqueCount)
_ORDER_OPS = {t.Op.EQ: "__eq__", t.Op.NE: "__ne__", t.Op.GT: "__gt__", t.Op.GE: "__ge__",
              t.Op.LT: "__lt__", t.Op.LE: "__le__"}


class _AggregateField(ColumnField):
    """An aggregate (count, sum...) in the query's HAVING: already a number."""

    def number(self):
        return self.col


class _CteField(Field):
    """A per-profile value computed in a CTE (columns person, v, t[, n])."""

    def __init__(self, cte, default=None):
        self.cte = cte
        self.default = default

    def text(self):
        return self.cte.c.t

    def number(self):
        return self.cte.c.n if "n" in self.cte.c else sa.cast(self.cte.c.v, sa.Float())

    def value(self):
        v = self.cte.c.v
        return v if self.default is None else sa.func.coalesce(v, self.default)


class _Compiler:
    def __init__(self, layout: Layout, as_of: datetime, include_anonymous: bool,
                 audiences: dict[str, sa.FromClause], shared: dict, events: tuple):
        self.layout = layout
        self.shared = shared
        self.events = events
        self.as_of = as_of
        self.anonymous = include_anonymous
        self.audiences = audiences
        self.warnings: list[str] = []
        self._links = None
        self._links_built = False
        self._ctes: dict = {}
        self._numbers: set = set()  # value nodes compared with numbers: their CTE needs `n`
        self._guard = True
        self._traits: set = set()   # CTEs of trait values
        self._members: set = set()  # CTEs of other audiences' members
        self._candidates = None     # the CTE every member must be in, when it is another audience's
        self._presence_only: set = set()  # counts whose comparisons hold alike for every count >= 1

    # -- profiles ---------------------------------------------------------------------------------

    def name(self, prefix: str) -> str:
        """An anonymous name: SQLAlchemy numbers it when it compiles the whole statement (agg_1, agg_2),
        so a rule compiled into another's query (a referenced audience) never meets its own CTE names
        in the one WITH clause SQLAlchemy gathers them into."""
        return _anonymous_label.safe_construct(next(_SEEDS), prefix)

    def links(self):
        """anonymous_id -> user_id, the latest link of each anonymous id."""
        if self._links_built:
            return self._links
        self._links_built = True
        key = ("links", self.events, self.as_of)
        if key not in self.shared:
            self.shared[key] = self._build_links()
        self._links = self.shared[key]
        return self._links

    def _build_links(self):
        parts = [sa.select(r.anonymous_id.label("anonymous_id"), r.user_id.label("user_id"),
                           r.timestamp.label("ts"), r.message_id.label("mid"))
                 .where(r.anonymous_id.is_not(None), r.user_id.is_not(None),
                        r.timestamp <= self.layout.instant(self.as_of))
                 for r in self.layout.links()]
        if not parts:
            return None
        rows = (parts[0] if len(parts) == 1 else sa.union_all(*parts)).subquery(self.name("link_rows"))
        return sqlfuncs.first_per((rows.c.anonymous_id, rows.c.user_id), rows.c.anonymous_id,
                                  (rows.c.ts.desc(), rows.c.mid.desc()), name=self.name("ranked_links")) \
            .cte(self.name("links"))

    def profile(self, rows: Rows):
        """(FROM clause, profile expression, conditions) of `rows`: the profile each row counts for."""
        links = self.links()
        frm = rows.table
        user_id = rows.user_id
        if links is not None:
            frm = frm.outerjoin(links, sa.and_(rows.user_id.is_(None),
                                               links.c.anonymous_id == rows.anonymous_id))
            user_id = sa.func.coalesce(rows.user_id, links.c.user_id)
        if not self.anonymous:
            return frm, user_id, [user_id.is_not(None)]
        person = sa.case((user_id.is_not(None), self.member_id(user_id)), else_=self.anonymous_id(rows.anonymous_id))
        return frm, person, [sa.or_(user_id.is_not(None), rows.anonymous_id.is_not(None))]

    def split_rows(self, rows: Rows, columns, conds, only=None):
        """SELECT columns(person) FROM rows WHERE conds, as two parts joined by UNION ALL: rows with a
        user id, whose profile is that user, and anonymous-only rows, which alone go through the links.
        Not every row through a join with every link, which sorts or hashes the whole stream by
        anonymous id to give most rows the user id they already have. `only`, a select of profiles
        (user profiles: members of another audience), keeps the rows of those profiles."""
        known = self.member_id(rows.user_id)
        identified = sa.select(*columns(known)).select_from(rows.table).where(rows.user_id.is_not(None), *conds)
        if only is not None:
            identified = identified.where(known.in_(only))
        links = self.links()
        if links is None and (only is not None or not self.anonymous):
            return identified
        # The anonymous-only rows first, then their links: PostgreSQL cannot estimate how many links
        # are left after keeping the latest (it guesses 200), and would otherwise plan a join that
        # builds the links once per parallel worker, or probes an index once per link.
        rows_of = sa.select(*columns(rows.anonymous_id)).select_from(rows.table).where(
            rows.user_id.is_(None), rows.anonymous_id.is_not(None), *conds) \
            .cte(self.name("anonymous")).prefix_with("MATERIALIZED", dialect="postgresql")
        rest = [c for c in rows_of.c if c.key != "person"]
        if links is None:
            frm, person = rows_of, self.anonymous_id(rows_of.c.person)
        elif self.anonymous and only is None:
            frm = rows_of.outerjoin(links, links.c.anonymous_id == rows_of.c.person)
            person = sa.case((links.c.user_id.is_not(None), self.member_id(links.c.user_id)),
                             else_=self.anonymous_id(rows_of.c.person))
        else:
            frm = rows_of.join(links, links.c.anonymous_id == rows_of.c.person)
            person = self.member_id(links.c.user_id)
        anonymous = sa.select(person.label("person"), *rest).select_from(frm)
        if only is not None:
            anonymous = anonymous.where(person.in_(only))
        return sa.union_all(identified, anonymous)

    def member_id(self, user_id):
        """A member list's user_id as a profile expression."""
        if not self.anonymous:
            return user_id
        return sa.literal("u:", sa.String()) + sa.cast(user_id, sa.String())

    @staticmethod
    def anonymous_id(anonymous_id):
        """An anonymous-only profile's anonymous_id as a profile expression (with include_anonymous)."""
        return sa.literal("a:", sa.String()) + sa.cast(anonymous_id, sa.String())

    def everyone(self):
        parts = []
        for rows in self.layout.everyone():
            frm, person, conds = self.profile(rows)
            parts.append(sa.select(person.label("person")).select_from(frm).where(
                *conds, rows.timestamp <= self.layout.instant(self.as_of)))
        if not parts:
            return None
        return sa.union(*parts).cte(self.name("everyone")) if len(parts) > 1 else \
            parts[0].distinct().cte(self.name("everyone"))

    # -- streams ----------------------------------------------------------------------------------

    def stream(self, stream: t.Stream, fields=()):
        """The stream's events as a subquery (person, mid, ts, and per field in `fields` its text
        `t`, number `n` and value `v`), or None when no table has them. Reducers group the subquery's
        plain columns: PostgreSQL takes an expression holding bound parameters in SELECT and in GROUP
        BY for two different expressions."""
        rows = self.layout.events(stream.event.name)
        if rows is None:
            message = (f"event {stream.event.name!r} has no table in {self.layout.where()}: counted as "
                       "0 occurrences")
            if message not in self.warnings:
                self.warnings.append(message)
            return None
        conds = [*rows.filters, rows.timestamp <= self.layout.instant(self.as_of)]
        window = stream.window
        if isinstance(window, t.Within):
            conds.append(rows.timestamp >= self.layout.instant(self.as_of - window.duration.timedelta))
        elif isinstance(window, t.Between):
            conds.append(rows.timestamp >= self.layout.instant(self.as_of - window.end.timedelta))
            conds.append(rows.timestamp <= self.layout.instant(self.as_of - window.start.timedelta))
        for condition in stream.conditions:
            conds.append(self.condition(condition, lambda node, rows=rows: rows.field(node)))
        read = [(form[0], rows.field(form[1])) for form in fields]

        def columns(person):
            return [person.label("person"), rows.message_id.label("mid"), rows.timestamp.label("ts"),
                    *({"t": field.text, "n": field.number, "v": field.value}[form]().label(form)
                      for form, field in read)]

        if self.layout.split_streams:
            return self.split_rows(rows, columns, conds).subquery(self.name("events"))
        frm, person, profiled = self.profile(rows)
        return sa.select(*columns(person)).select_from(frm).where(*conds, *profiled).subquery(self.name("events"))

    def grouped(self, node):
        """A numeric reducer as (SELECT person ... GROUP BY person, aggregate), or None."""
        if isinstance(node, t.Count):
            src = self.stream(node.stream)
            if src is None:
                return None
            agg = sa.func.count(sa.distinct(src.c.mid))
        elif isinstance(node, t.UniqueCount):
            src = self.stream(node.unique.stream, [("t", node.unique.of)])
            if src is None:
                return None
            agg = sa.func.count(sa.distinct(src.c.t))
        else:
            src = self.stream(node.stream, [("n", node.of)])
            if src is None:
                return None
            if isinstance(node, (t.Sum, t.Avg)):
                # One row per message: duplicates of a message add once.
                src = sa.select(src.c.person, src.c.mid, src.c.n).distinct().subquery(self.name("messages"))
                agg = (sa.func.sum if isinstance(node, t.Sum) else sa.func.avg)(src.c.n)
            else:
                agg = (sa.func.min if isinstance(node, t.Min) else sa.func.max)(src.c.n)
        return sa.select(src.c.person).group_by(src.c.person), agg

    def value_cte(self, node):
        """A CTE (person, v, t[, n]) of a value node, or None when it has no rows anywhere."""
        if node in self._ctes:
            return self._ctes[node]
        cte = self._value_cte(node)
        self._ctes[node] = cte
        return cte

    def _value_cte(self, node):
        number = node in self._numbers
        if isinstance(node, t.Count) and node in self._presence_only:
            # Only "any events or none" matters: count(*) tells that without counting distinct message
            # ids, which sorts the stream per profile.
            src = self.stream(node.stream)
            if src is None:
                return None
            return sa.select(src.c.person, sa.func.count().label("v")).group_by(src.c.person).cte(self.name("any"))
        if isinstance(node, _NUMERIC):
            grouped = self.grouped(node)
            if grouped is None:
                return None
            select, agg = grouped
            return select.add_columns(agg.label("v")).cte(self.name("agg"))
        if isinstance(node, t.Trait):
            return self.trait_cte(node, number)
        if isinstance(node, t.Unique):
            src = self.stream(node.stream, [("t", node.of)])
            if src is None:
                return None
            values = sa.select(src.c.person, src.c.t).where(src.c.t.is_not(None)).distinct() \
                .order_by(src.c.person, src.c.t).subquery(self.name("values"))
            listed = sqlfuncs.sorted_json_array(values.c.t)
            return sa.select(values.c.person, listed.label("v"), listed.label("t")) \
                .group_by(values.c.person).cte(self.name("unique"))
        if isinstance(node, (t.First, t.Last)):
            src = self.stream(node.stream, [("v", node.of), ("t", node.of)] + ([("n", node.of)] if number else []))
            if src is None:
                return None
            kept = [c for c in src.c if c.key in ("v", "t", "n")]
            order = (src.c.ts.asc(), src.c.mid.asc()) if isinstance(node, t.First) \
                else (src.c.ts.desc(), src.c.mid.desc())
            return self.pick_one(src, kept, order, src.c.t.is_not(None), "pick")
        if isinstance(node, t.Mode):
            # Grouped by the value, whose text is read per group: not per event, each time parsing the
            # event's JSON again (the text decides ties).
            src = self.stream(node.stream, [("v", node.of)] + ([("n", node.of)] if number else []))
            if src is None:
                return None
            freq = sa.func.count(sa.distinct(src.c.mid))
            extra = [sa.func.min(src.c.n).label("n")] if number else []
            counted = sa.select(src.c.person, src.c.v, *extra, freq.label("freq")) \
                .where(src.c.v.is_not(None)).group_by(src.c.person, src.c.v) \
                .having(freq >= sa.literal(node.min_frequency, sa.Integer())).subquery(self.name("freq"))
            text = self.layout.value_text(counted.c.v).label("t")
            kept = [c for c in counted.c if c.key in ("v", "n")] + [text]
            return self.pick_one(counted, kept, (counted.c.freq.desc(), text.asc()), None, "mode")
        raise AssertionError(f"no SQL for {type(node).__name__}")

    def pick_one(self, src, kept, order, where, prefix):
        """Per person, the row first in `order`: a CTE (person, v, t[, n])."""
        return sqlfuncs.first_per((src.c.person, *kept), src.c.person, order, where,
                                  name=self.name("ranked")).cte(self.name(prefix))

    def likely_size(self, cte) -> int:
        """Which CTE likely has the fewest rows: members of another audience, then profiles with
        events, then profiles with a trait (most profiles have traits)."""
        return 0 if cte in self._members else 2 if cte in self._traits else 1

    # -- traits -----------------------------------------------------------------------------------

    def membership(self, key: str):
        source = self.audiences[key]
        person = self.member_id(source.c.user_id)
        cte = sa.select(person.label("person"), sa.literal(1, sa.Integer()).label("v"),
                        sa.literal(1, sa.Integer()).label("t")).select_from(source) \
            .where(source.c.user_id.is_not(None)).distinct().cte(self.name("member"))
        self._members.add(cte)
        return cte

    def trait_cte(self, node: t.Trait, number: bool):
        if node.key in self.audiences:
            return self.membership(node.key)
        rows = self.layout.identifies()
        if rows is None:
            message = f"no identifies table in {self.layout.where()}: trait {node.key!r} is never set"
            if message not in self.warnings:
                self.warnings.append(message)
            return None
        field = rows.field(node)
        if isinstance(field, NullField):
            return None

        def columns(person):
            out = [person.label("person"), rows.message_id.label("mid"), rows.timestamp.label("ts"),
                   field.value().label("v"), field.text().label("t")]
            return out + [field.number().label("n")] if number else out

        conds = [*rows.filters, rows.timestamp <= self.layout.instant(self.as_of)]
        if self._candidates is None or self.layout.user_index:
            frm, person, profiled = self.profile(rows)
            if self._candidates is not None:
                # Matched on the profile, after the links, so that the database finds them among the
                # identify rows, not through the user_id index (Layout.user_index).
                profiled = [*profiled, person.in_(sa.select(self._candidates.c.person))]
            src = sa.select(*columns(person)).select_from(frm).where(*conds, *profiled)
        else:
            src = self.split_rows(rows, columns, conds, only=sa.select(self._candidates.c.person))
        src = src.subquery(self.name("identifies"))
        kept = [c for c in src.c if c.key in ("v", "t", "n")]
        cte = self.pick_one(src, kept, (src.c.ts.desc(), src.c.mid.desc()), src.c.t.is_not(None), "trait")
        self._traits.add(cte)
        return cte

    # -- conditions -------------------------------------------------------------------------------

    def condition(self, node, field_of, negated: bool = False) -> sa.ColumnElement:
        """The SQL condition. `field_of(value node)` gives the Field of a compared value. Under a NOT
        (`negated`) each comparison is made two-valued (false, not NULL, on a missing value); elsewhere
        SQL's NULL already acts as false, and the guard would only cost time."""
        if isinstance(node, t.And):
            return sa.and_(*(self.condition(item, field_of, negated) for item in node.items))
        if isinstance(node, t.Or):
            return sa.or_(*(self.condition(item, field_of, negated) for item in node.items))
        if isinstance(node, t.Not):
            return sa.not_(self.condition(node.item, field_of, not negated))
        if isinstance(node.left, t.Trait) and node.left.key in self.audiences:
            return self.member_compare(node, field_of(node.left))
        field = field_of(node.left)
        self._guard = negated
        return self.compare(field, node.op, node.right, counts=isinstance(node.left, _COUNTS))

    def guarded(self, x, test) -> sa.ColumnElement:
        return sa.and_(x.is_not(None), test) if self._guard else test

    def member_compare(self, node: t.Compare, field) -> sa.ColumnElement:
        member = field.value().is_not(None) if field is not None else sa.false()
        op, right = node.op, node.right
        if op in (t.Op.EQ, t.Op.NE) and isinstance(right.value, bool):
            positive = right.value if op is t.Op.EQ else not right.value
            return member if positive else sa.not_(member)
        if op is t.Op.IS_SET:
            return member
        if op is t.Op.IS_NULL:
            return sa.not_(member)
        raise ConfigError(f"trait({node.left.key!r}) is the membership of audience {node.left.key!r}: "
                          f"compare it with `= true` or `= false`, not with `{op.value}`")

    def compare(self, field: Field | None, op: t.Op, right, counts: bool = False) -> sa.ColumnElement:
        if field is None:
            # No rows anywhere: a count is 0, anything else is missing.
            if counts:
                return sa.true() if _holds(0, op, right, self.as_of) else sa.false()
            return sa.true() if op is t.Op.IS_NULL else sa.false()
        if op in (t.Op.IS_SET, t.Op.IS_NULL):
            x = field.value()
            return x.is_not(None) if op is t.Op.IS_SET else x.is_(None)
        value = right.value if isinstance(right, t.Literal) else right
        if op in _ORDER_OPS:
            return self.equal_or_order(field, op, value, counts)
        if op is t.Op.ONE_OF:
            return sa.or_(*(self.equal_or_order(field, t.Op.EQ, v, counts) for v in value))
        if op in (t.Op.CONTAINS, t.Op.OMITS, t.Op.STARTS_WITH, t.Op.ENDS_WITH, t.Op.CONTAINS_ONE):
            x = field.text()
            needles = value if op is t.Op.CONTAINS_ONE else (value,)
            tests = []
            for needle in needles:
                lit = sa.literal(needle, sa.String())
                if op in (t.Op.CONTAINS, t.Op.CONTAINS_ONE):
                    tests.append(sqlfuncs.position(x, lit) > 0)
                elif op is t.Op.OMITS:
                    tests.append(sqlfuncs.position(x, lit) == 0)
                elif op is t.Op.STARTS_WITH:
                    tests.append(sa.func.substr(x, 1, sa.func.length(lit)) == lit)
                else:
                    tests.append(sa.and_(sa.func.length(x) >= sa.func.length(lit),
                                         sa.func.substr(x, sa.func.length(x) - sa.func.length(lit) + 1) == lit))
            return self.guarded(x, sa.or_(*tests))
        moment = sqlfuncs.instant(field.text())
        if op is t.Op.BEFORE_DATE:
            test = moment < sqlfuncs.instant_param(value)
        elif op is t.Op.AFTER_DATE:
            test = moment > sqlfuncs.instant_param(value)
        elif op is t.Op.WITHIN_LAST:
            test = sa.and_(moment >= sqlfuncs.instant_param(self.as_of - value.timedelta),
                           moment <= sqlfuncs.instant_param(self.as_of))
        elif op is t.Op.BEFORE_LAST:
            test = moment < sqlfuncs.instant_param(self.as_of - value.timedelta)
        else:
            raise AssertionError(f"no SQL for comparator {op}")
        return self.guarded(moment, test)

    def equal_or_order(self, field: Field, op: t.Op, value, counts: bool) -> sa.ColumnElement:
        method = _ORDER_OPS[op]
        if isinstance(value, bool):
            x = field.text()
            native = field.col if isinstance(field, ColumnField) else \
                field.cte.c.v if isinstance(field, _CteField) and not self.layout.value_json else None
            if native is not None:
                # A warehouse's boolean column: compared as a boolean (SQLite stores 1 / 0).
                x = native
                return self.guarded(x, getattr(x, method)(sa.literal(value, sa.Boolean())))
            return self.guarded(x, getattr(x, method)(sa.literal("true" if value else "false", sa.String())))
        if isinstance(value, (int, float)):
            x = field.value() if counts else field.number()
            lit = sa.literal(value, sa.Integer() if isinstance(value, int) else sa.Float())
            if counts:
                return getattr(x, method)(lit)
            return self.guarded(x, getattr(x, method)(lit))
        x = field.text()
        return self.guarded(x, getattr(x, method)(sa.literal(value, sa.String())))

    # -- whole rules ------------------------------------------------------------------------------

    def audience(self, rule) -> sa.Select:
        compares = list(_compares(rule))
        for c in compares:
            if _wants_number(c):
                self._numbers.add(c.left)
        # The fast shape: one numeric reducer that a profile without events fails.
        if isinstance(rule, t.Compare) and isinstance(rule.left, _NUMERIC) and not _empty_holds(rule, self):
            grouped = self.grouped(rule.left)
            if grouped is None:
                return self.nobody()
            select, agg = grouped
            field = _AggregateField(agg)
            self._guard = False
            test = self.compare(field, rule.op, rule.right, counts=isinstance(rule.left, _COUNTS))
            return self.output(select.having(test))
        counts = {c.left for c in compares if isinstance(c.left, t.Count)}
        self._presence_only = {n for n in counts
                               if all(_alike_from_one(c, self.as_of) for c in compares if c.left == n)}
        # When a member must be a member of another audience, those members are the candidates, and
        # traits are read for them only: the latest identify per profile is a sort of every identify
        # otherwise, to keep a few hundred.
        members = [n for n in _required(rule, self) if isinstance(n, t.Trait) and n.key in self.audiences]
        if members:
            self._candidates = self.value_cte(members[0])
        ctes = {}
        for c in compares:
            ctes[c.left] = self.value_cte(c.left)
        present = [cte for cte in dict.fromkeys(ctes.values()) if cte is not None]
        # A member must have a row in each of these CTEs: the smallest of them, as far as the rule tells,
        # lists the candidates, and the other CTEs are joined to it. (Their union would cost a sort
        # of every profile, and PostgreSQL misjudges its joins by orders of magnitude.)
        required = sorted(dict.fromkeys(ctes.get(n) for n in _required(rule, self)), key=self.likely_size)
        if _empty_holds(rule, self):
            people = self.everyone()
            if people is None:
                return self.nobody()
        elif not present or None in required:
            return self.nobody()
        elif required:
            people = required[0]
        elif len(present) == 1:
            people = present[0]
        else:
            people = sa.union(*(sa.select(cte.c.person) for cte in present)).cte(self.name("people"))
        frm = people
        for cte in present:
            if cte is not people:
                frm = frm.outerjoin(cte, cte.c.person == people.c.person)

        def field_of(node):
            cte = ctes.get(node)
            if cte is None:
                return None
            return _CteField(cte, sa.literal(0, sa.Integer()) if isinstance(node, _COUNTS) else None)

        query = sa.select(people.c.person).select_from(frm).where(self.condition(rule, field_of))
        return self.output(query)

    def output(self, query: sa.Select) -> sa.Select:
        """The members' id columns from a query of one column, person: user_id (and anonymous_id)."""
        return self.ids(query.subquery(self.name("members")))

    def ids(self, inner, *extra) -> sa.Select:
        if not self.anonymous:
            return sa.select(inner.c.person.label("user_id"), *extra)
        kind = sa.func.substr(inner.c.person, 1, 2)
        rest = sa.func.substr(inner.c.person, 3)
        return sa.select(sa.case((kind == "u:", rest)).label("user_id"),
                         sa.case((kind == "a:", rest)).label("anonymous_id"), *extra)

    def nobody(self) -> sa.Select:
        columns = [sa.cast(sa.null(), sa.String()).label("user_id")]
        if self.anonymous:
            columns.append(sa.cast(sa.null(), sa.String()).label("anonymous_id"))
        return sa.select(*columns).where(sa.false())

    def computed_trait(self, rule) -> tuple[sa.Select, bool]:
        if isinstance(rule, t.Trait) and rule.key in self.audiences:
            raise ConfigError(f"trait({rule.key!r}) is the membership of audience {rule.key!r}; a "
                              "computed trait computes a value from events or traits")
        if isinstance(rule, _NUMERIC):
            grouped = self.grouped(rule)
            if grouped is None:
                return self.nobody_valued(), False
            select, agg = grouped
            inner = select.add_columns(agg.label("value")).having(agg.is_not(None)).subquery(self.name("values"))
            return self.ids(inner, inner.c.value), False
        cte = self.value_cte(rule)
        if cte is None:
            return self.nobody_valued(), False
        inner = sa.select(cte.c.person, cte.c.v.label("value")).where(cte.c.v.is_not(None)) \
            .subquery(self.name("values"))
        value_json = isinstance(rule, t.Unique) or self.layout.value_json
        return self.ids(inner, inner.c.value), value_json

    def nobody_valued(self) -> sa.Select:
        return self.nobody().add_columns(sa.null().label("value"))


def _compares(node):
    if isinstance(node, (t.And, t.Or)):
        for item in node.items:
            yield from _compares(item)
    elif isinstance(node, t.Not):
        yield from _compares(node.item)
    else:
        yield node


def _wants_number(c: t.Compare) -> bool:
    if isinstance(c.left, _NUMERIC):
        return False
    value = c.right.value if isinstance(c.right, t.Literal) else None
    values = value if isinstance(value, tuple) else (value,)
    return any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _required(node, compiler: _Compiler) -> list:
    """Value nodes in whose CTE a profile must have a row to satisfy the condition."""
    if isinstance(node, t.And):
        return [n for item in node.items for n in _required(item, compiler)]
    if isinstance(node, (t.Or, t.Not)):
        return []
    return [] if _empty_holds(node, compiler) else [node.left]


def _empty_holds(node, compiler: _Compiler) -> bool:
    """Whether a profile with no events, no traits and no memberships satisfies the condition: then
    the query must start from everyone known, not from the profiles that have rows."""
    if isinstance(node, t.And):
        return all(_empty_holds(item, compiler) for item in node.items)
    if isinstance(node, t.Or):
        return any(_empty_holds(item, compiler) for item in node.items)
    if isinstance(node, t.Not):
        return not _empty_holds(node.item, compiler)
    if isinstance(node.left, t.Trait) and node.left.key in compiler.audiences:
        if node.op in (t.Op.EQ, t.Op.NE) and isinstance(node.right.value, bool):
            return (node.right.value is False) == (node.op is t.Op.EQ)
        return node.op is t.Op.IS_NULL
    if isinstance(node.left, _COUNTS):
        return _holds(0, node.op, node.right, compiler.as_of)
    return node.op is t.Op.IS_NULL


def _alike_from_one(c: t.Compare, as_of) -> bool:
    """Whether a comparison of a count gives the same answer for every count from 1 up: a count
    compared only so needs no counting, only whether the profile has an event."""
    value = c.right.value if isinstance(c.right, t.Literal) else None
    values = [v for v in (value if isinstance(value, tuple) else (value,))
              if isinstance(v, (int, float)) and not isinstance(v, bool)]
    top = max(values, default=0)
    if top > 1000:
        return False
    # Between two constants a comparison with them changes nowhere: checking each count up to
    # the largest constant and one past it covers every count.
    return len({_holds(k, c.op, c.right, as_of) for k in range(1, int(top) + 3)}) == 1


def _holds(value: int, op: t.Op, right, as_of) -> bool:
    """A comparison of a count (a number, never null) with a constant, in Python."""
    if op is t.Op.IS_SET:
        return True
    if op is t.Op.IS_NULL:
        return False
    target = right.value if isinstance(right, t.Literal) else None
    if op is t.Op.ONE_OF:
        return any(value == v for v in target if not isinstance(v, bool))
    if op in _ORDER_OPS and isinstance(target, (int, float)) and not isinstance(target, bool):
        return getattr(value, _ORDER_OPS[op])(target)
    return False
