"""Rule text -> typed tree (tree.py), with the type check, and RuleError for every mistake.

Parsing is done with lark: a well-kept, dependency-free parser library whose LALR(1) mode parses in
linear time without recursion, and whose errors carry the exact offset and the tokens that would have
been accepted there. The grammar (grammar.py) only shapes the text; which functions exist and what
each takes are checked here, so that a message can name the function, suggest a known one for a typo
and say what is expected in the words of the language rather than lark's token names.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import unicodedata
from datetime import datetime, timezone
from typing import Literal as TypingLiteral

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from audsync.errors import ConfigError
from audsync.rules import tree as t
from audsync.rules.grammar import GRAMMAR

Kind = TypingLiteral["audience", "computed_trait"]
KINDS = ("audience", "computed_trait")

# Segment's limit on primary expressions in one definition; it also bounds the SQL a rule makes.
MAX_CONDITIONS = 50
# Parentheses, NOT and calls nest; deeper than this is no rule a person writes, and the checker
# recurses once per level.
MAX_DEPTH = 64
_INT64 = 2**63 - 1


class RuleError(ConfigError):
    """A rule that cannot be used. The message names the place (`where`), says what is wrong, and
    quotes the line of the rule with a caret under the column."""

    def __init__(self, rule: str, pos: int, problem: str, where: str | None = None):
        self.rule = rule
        self.pos = max(0, min(pos, len(rule)))
        self.problem = problem
        self.where = where or "rule"
        self.line = rule.count("\n", 0, self.pos) + 1
        line_start = rule.rfind("\n", 0, self.pos) + 1
        self.column = self.pos - line_start + 1
        super().__init__(self._message(line_start))

    def _message(self, line_start: int) -> str:
        line_end = self.rule.find("\n", self.pos)
        line = self.rule[line_start:len(self.rule) if line_end < 0 else line_end].rstrip("\r")
        # One printable character for each character of the line, so that the caret stays under it.
        shown = "".join(ch if ch == "\t" or ch.isprintable() else "\ufffd" for ch in line)
        pad = "".join("\t" if ch == "\t" else " " for ch in shown[:self.column - 1])
        at = f"line {self.line}, column {self.column}" if "\n" in self.rule else f"column {self.column}"
        return f"{self.where}, {at}: {self.problem}\n    {shown}\n    {pad}^"


# --- the vocabulary --------------------------------------------------------------------------------

EXTRACTORS = ("event", "trait", "property", "context", "literal")
FILTERS = ("where", "within", "between")
REDUCERS = ("count", "sum", "avg", "min", "max", "mode", "first", "last", "unique")
# Method names of comparators, Segment's older and newer spellings alike, so that rules copied from
# either version of Engage's documentation read the same.
COMPARATORS: dict[str, t.Op] = {
    "is_set": t.Op.IS_SET, "exists": t.Op.IS_SET,
    "is_null": t.Op.IS_NULL, "absent": t.Op.IS_NULL,
    "eq": t.Op.EQ, "equals": t.Op.EQ,
    "neq": t.Op.NE, "differs": t.Op.NE,
    "gt": t.Op.GT, "greater_than": t.Op.GT,
    "gte": t.Op.GE, "at_least": t.Op.GE,
    "lt": t.Op.LT, "less_than": t.Op.LT,
    "lte": t.Op.LE, "at_most": t.Op.LE,
    "contains": t.Op.CONTAINS, "omits": t.Op.OMITS,
    "starts_with": t.Op.STARTS_WITH, "ends_with": t.Op.ENDS_WITH,
    "one_of": t.Op.ONE_OF, "contains_one": t.Op.CONTAINS_ONE,
    "before_date": t.Op.BEFORE_DATE, "after_date": t.Op.AFTER_DATE,
    "within_last": t.Op.WITHIN_LAST, "before_last": t.Op.BEFORE_LAST,
}
SYMBOLS = {"=": t.Op.EQ, "==": t.Op.EQ, "!=": t.Op.NE, ">": t.Op.GT, ">=": t.Op.GE, "<": t.Op.LT,
           "<=": t.Op.LE}
# Parts of Segment's language that audsync does not evaluate: named, so the message says so instead
# of suggesting a near name that means something else.
UNSUPPORTED = {
    "within_next": "dates in the future are not supported",
    "after_next": "dates in the future are not supported",
    "sources": "filtering by source is not supported",
    "expires_after": "session windows are not supported",
    "entity": "Linked Audiences are not supported",
}
KNOWN = (*EXTRACTORS, *FILTERS, *REDUCERS, *COMPARATORS)

_NUMERIC_REDUCERS = (t.Count, t.Sum, t.Avg, t.Min, t.Max, t.UniqueCount)


def suggest(name: str, candidates=KNOWN) -> str | None:
    """The known function name nearest to `name`, if one is near enough."""
    lowered = {c.lower(): c for c in candidates}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[match[0]] if match else None


# --- entry point -----------------------------------------------------------------------------------

@functools.cache
def _parser() -> Lark:
    return Lark(GRAMMAR, parser="lalr", lexer="basic", propagate_positions=True,
                maybe_placeholders=False)


def parse_rule(text: str, kind: Kind, *, where: str | None = None) -> t.Condition | t.Value:
    """Parse and type-check a rule. An "audience" rule must end in a condition (the tree returned is a
    Condition); a "computed_trait" rule in a value (a reducer or a trait). Raises RuleError, whose
    message starts with `where` (e.g. 'audience "Big Spenders": source.rule')."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    if not text.strip():
        raise RuleError(text, 0, "the rule is empty", where)
    try:
        parsed = _parser().parse(text)
    except UnexpectedInput as exc:
        raise RuleError(text, *_syntax_problem(text, exc), where) from None
    checker = _Checker(text, where)
    node = checker.expression(parsed.children[0], _TOP, 0)
    if kind == "audience":
        node = checker.audience_result(node)
    else:
        checker.computed_trait_result(node)
    count = _count_conditions(node)
    if count > MAX_CONDITIONS:
        raise RuleError(text, 0, f"a rule may hold at most {MAX_CONDITIONS} conditions (Segment's "
                        f"limit too); this one has {count}", where)
    return node


def _count_conditions(node) -> int:
    # Junctions nest at most MAX_DEPTH deep (checked while building), so recursion is bounded.
    if isinstance(node, (t.And, t.Or)):
        return sum(_count_conditions(item) for item in node.items)
    if isinstance(node, t.Not):
        return _count_conditions(node.item)
    return 1


# --- syntax errors in the user's words -----------------------------------------------------------

_EXPRESSION_START = {"NAME", "STRING", "NUMBER", "TRUE", "FALSE", "NULL", "LSQB", "LPAR", "NOT"}
_CONSTANT = {"STRING", "NUMBER", "TRUE", "FALSE", "NULL"}
_UNITS = {"DAYS", "DAY", "HOURS", "HOUR"}
_WORDS = {
    "CMP_OP": "a comparison (`=`, `!=`, `>`, `>=`, `<`, `<=`)",
    "DOT": "`.`", "LPAR": "`(`", "RPAR": "`)`", "LSQB": "`[`", "RSQB": "`]`", "COMMA": "`,`",
    "_AND": "`AND`", "_OR": "`OR`", "NOT": "`NOT`", "NAME": "a function name",
    "STRING": "a string", "NUMBER": "a number", "TRUE": "`true`", "FALSE": "`false`", "NULL": "`null`",
    "$END": "the end of the rule",
}
# Order in which expected things are listed: what most likely completes the rule first.
_ORDER = ["$EXPR", "$CONST", "NAME", "$UNIT", "CMP_OP", "DOT", "LPAR", "RPAR", "LSQB", "RSQB",
          "COMMA", "_AND", "_OR", "$END"]


def _syntax_problem(text: str, exc: UnexpectedInput) -> tuple[int, str]:
    if isinstance(exc, UnexpectedToken):
        token = exc.token
        expected = set(getattr(exc, "accepts", None) or exc.expected)
        if token.type == "$END":
            pos = len(text.rstrip())
            found = "the end of the rule"
        else:
            pos = token.start_pos
            found = _show(token.value)
        if token.type == "NAME" and expected & _UNITS:
            return pos, f"unknown time unit {found}: write `days` or `hours`"
        return pos, f"expected {_describe(expected)}; found {found}"
    if isinstance(exc, UnexpectedCharacters):
        pos = exc.pos_in_stream
        char = text[pos]
        if char in "'\"":
            return pos, f"this string has no closing {char}"
        if text.startswith(("&&", "||"), pos):
            return pos, f"write {'AND' if char == '&' else 'OR'} instead of `{char * 2}`"
        if char == "!":
            return pos, "write NOT (...) to negate a condition; `!` only appears in `!=`"
        if char.isspace() or not char.isprintable():
            name = unicodedata.name(char, f"U+{ord(char):04X}")
            return pos, f"unexpected character {name}"
        return pos, f"unexpected character `{char}`"
    return exc.pos_in_stream or 0, "cannot read this rule"


def _describe(expected: set[str]) -> str:
    groups: set[str] = set()
    rest = set(expected)
    if {"NAME", "STRING", "NUMBER", "LPAR"} <= rest:
        groups.add("$EXPR")
        rest -= _EXPRESSION_START
    if _CONSTANT <= rest:
        groups.add("$CONST")
        rest -= _CONSTANT
    if rest & _UNITS:
        groups.add("$UNIT")
        rest -= _UNITS
    words = {"$EXPR": "a condition or a value (such as `event('…')`, `trait('…')`, a number or a string)",
             "$CONST": "a constant (a string, a number, `true`, `false` or `null`)",
             "$UNIT": "`days` or `hours`"}
    names = [words.get(k) or _WORDS.get(k, f"`{k}`")
             for k in sorted(groups | rest, key=lambda k: (_ORDER.index(k) if k in _ORDER else 99, k))]
    if not names:
        return "something else"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def _show(text: str) -> str:
    """A piece of the rule, on one line: control characters escaped."""
    text = text if len(text) <= 40 else text[:37] + "..."
    return "`" + "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text) + "`"


# --- the type check --------------------------------------------------------------------------------

_TOP = "top"      # the rule itself, or an operand of AND / OR / NOT
_EVENT = "event"  # inside where() or a reducer: property() and context() refer to the event at hand

_TYPE_WORDS = {
    t.ValueType.STREAM: "a stream of events",
    t.ValueType.NUMBER: "a number",
    t.ValueType.STRING: "a string",
    t.ValueType.BOOLEAN: "a boolean",
    t.ValueType.TIMESTAMP: "a timestamp",
    t.ValueType.NULL: "null",
    t.ValueType.ANY: "a value",
    t.ValueType.LIST: "a list",
    t.ValueType.CONDITION: "a condition",
}


def _span(item: Tree | Token) -> t.Span:
    if isinstance(item, Token):
        return t.Span(item.start_pos, item.end_pos)
    return t.Span(item.meta.start_pos, item.meta.end_pos)


class _Checker:
    def __init__(self, text: str, where: str | None):
        self.text = text
        self.where = where

    def error(self, at: Tree | Token | t.Span | int, problem: str) -> RuleError:
        if isinstance(at, (Tree, Token)):
            at = _span(at)
        pos = at.start if isinstance(at, t.Span) else at
        return RuleError(self.text, pos, problem, self.where)

    def source(self, span: t.Span | None) -> str:
        """What the user wrote there, on one line and not too long, to quote in a message."""
        text = " ".join(self.text[span.start:span.end].split()) if span else ""
        text = text if len(text) <= 60 else text[:57] + "..."
        return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)

    # -- results ------------------------------------------------------------------------------

    def audience_result(self, node) -> t.Condition:
        if isinstance(node, t.Trait):
            return t.Compare(node, t.Op.EQ, t.Literal(True, span=node.span), span=node.span)
        if node.type is t.ValueType.CONDITION:
            return node
        if isinstance(node, t.Literal):
            ends = "a constant"
        elif isinstance(node, t.Stream):
            ends = "a stream of events (add a reducer and a comparison, e.g. `.count() >= 1`)"
        else:
            ends = _TYPE_WORDS[node.type]
        raise self.error(len(self.text.rstrip()),
                         f"an audience rule must end in a condition such as `>= 3`; this one ends in {ends}")

    def computed_trait_result(self, node) -> None:
        if node.type is t.ValueType.CONDITION:
            raise self.error(node.span, "a computed trait rule must end in a value such as `.count()` or "
                             "`.sum(property('total'))`; this one ends in a condition")
        if isinstance(node, t.Stream):
            raise self.error(len(self.text.rstrip()), "a computed trait rule must end in a value; this one "
                             "ends in a stream of events: add a reducer such as `.count()`")
        if isinstance(node, t.Literal):
            raise self.error(node.span, "a computed trait rule must compute a value from events or traits; "
                             "this one is a constant")

    # -- expressions --------------------------------------------------------------------------

    def expression(self, item: Tree | Token, scope: str, depth: int):
        if depth > MAX_DEPTH:
            raise self.error(item, f"this rule nests deeper than {MAX_DEPTH} levels")
        depth += 1
        kind = item.data
        if kind in ("or_expr", "and_expr"):
            items = tuple(self.condition(child, scope, depth) for child in item.children)
            cls = t.Or if kind == "or_expr" else t.And
            return cls(items, span=_span(item))
        if kind == "negation":
            return t.Not(self.condition(item.children[1], scope, depth), span=_span(item))
        if kind == "comparison":
            return self.comparison(item, scope, depth)
        if kind == "paren":
            return self.expression(item.children[0], scope, depth)
        if kind == "chain":
            return self.chain(item, scope, depth)
        if kind == "literal":
            return self.literal(item)
        if kind == "duration":
            raise self.error(item, "a duration such as `30 days` only goes inside within(), between(), "
                             "within_last() or before_last()")
        raise AssertionError(f"grammar rule without a check: {kind}")

    def condition(self, item: Tree, scope: str, depth: int) -> t.Condition:
        node = self.expression(item, scope, depth)
        if isinstance(node, t.Trait):
            return t.Compare(node, t.Op.EQ, t.Literal(True, span=node.span), span=node.span)
        if node.type is t.ValueType.CONDITION:
            return node
        shown = self.source(node.span)
        if isinstance(node, t.Stream):
            raise self.error(node.span, f"`{shown}` is a stream of events, not a condition: reduce it "
                             "and compare, e.g. `.count() >= 1`")
        raise self.error(node.span, f"`{shown}` is {_TYPE_WORDS[node.type]}, not a condition: compare "
                         "it, e.g. with `>=`, `=` or `.is_set()`")

    def comparison(self, item: Tree, scope: str, depth: int) -> t.Compare:
        left_item, op_token, right_item = item.children
        left = self.comparable(self.expression(left_item, scope, depth), op_token.value)
        op = SYMBOLS[op_token.value]
        right = self.constant(right_item, op_token.value, depth)
        right = self.check_operand(left, op, right, op_token, right_item)
        return t.Compare(left, op, right, span=_span(item))

    def comparable(self, node, op_name: str):
        """`node` as the left side of a comparator named `op_name`."""
        shown = self.source(node.span)
        if isinstance(node, t.Stream):
            raise self.error(node.span, f"`{shown}` is a stream of events: reduce it before comparing, "
                             "e.g. `.count() >= 1`")
        if isinstance(node, t.Unique):
            raise self.error(node.span, "unique(...) gives a list: only `.count()` can follow it")
        if node.type is t.ValueType.CONDITION:
            raise self.error(node.span, f"`{shown}` is a condition; `{op_name}` compares a value")
        if isinstance(node, t.Literal):
            raise self.error(node.span, "a comparison starts from event(...), trait(...), property(...) "
                             "or context(...), not from a constant")
        return node

    def constant(self, item: Tree, op_name: str, depth: int) -> t.Literal:
        """The right side of a comparison: a constant, bare or as literal(...)."""
        if item.data == "literal":
            return self.literal(item)
        if item.data == "chain" and len(item.children) == 1:
            call = item.children[0]
            if call.children[0].value == "literal":
                return self.literal_call(call)
        if item.data == "paren":
            return self.constant(item.children[0], op_name, depth)
        raise self.error(item, f"`{op_name}` compares with a constant such as 100 or 'pro'; comparing "
                         "with another trait, property or event is not supported")

    def check_operand(self, left, op: t.Op, right: t.Literal, at: Token | Tree, right_item):
        """The right operand of `op`, converted where the comparator needs it (a timestamp)."""
        numeric = isinstance(left, _NUMERIC_REDUCERS)
        left_words = f"`{self.source(left.span)}` gives a number" if numeric else ""
        value = right.value
        kind = right.type
        name = op.value
        if kind is t.ValueType.NULL:
            raise self.error(right_item, "compare with null by `.is_null()` or `.is_set()`")
        if op in (t.Op.EQ, t.Op.NE, t.Op.GT, t.Op.GE, t.Op.LT, t.Op.LE):
            if kind is t.ValueType.LIST:
                raise self.error(right_item, f"`{name}` compares with one value; for any of a list use "
                                 "`.one_of([...])`")
            if op not in (t.Op.EQ, t.Op.NE) and kind is t.ValueType.BOOLEAN:
                raise self.error(right_item, f"`{name}` orders numbers or strings, not true/false")
            if numeric and kind is not t.ValueType.NUMBER:
                raise self.error(right_item, f"{left_words}: compare it with a number")
            return right
        if op in (t.Op.CONTAINS, t.Op.OMITS, t.Op.STARTS_WITH, t.Op.ENDS_WITH):
            if numeric:
                raise self.error(at, f"{left_words}; `{name}` looks for text in a string")
            if kind is not t.ValueType.STRING:
                more = ("; for any of a list use `.contains_one([...])`"
                        if op is t.Op.CONTAINS and kind is t.ValueType.LIST else "")
                raise self.error(right_item, f"`{name}` takes one string{more}")
            return right
        if op in (t.Op.ONE_OF, t.Op.CONTAINS_ONE):
            if not value:
                raise self.error(right_item, f"`{name}` needs at least one value in its list")
            if None in value:
                raise self.error(right_item, "a list holds no null; test for null with `.is_null()`")
            if op is t.Op.CONTAINS_ONE:
                if numeric:
                    raise self.error(at, f"{left_words}; `{name}` looks for text in a string")
                if not all(isinstance(v, str) for v in value):
                    raise self.error(right_item, f"`{name}` takes a list of strings")
            elif numeric and not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                     for v in value):
                raise self.error(right_item, f"{left_words}: its list must hold numbers")
            return right
        if op in (t.Op.BEFORE_DATE, t.Op.AFTER_DATE):
            if numeric:
                raise self.error(at, f"{left_words}; `{name}` compares a date")
            if kind is not t.ValueType.STRING:
                raise self.error(right_item, f"`{name}` takes an ISO 8601 timestamp such as "
                                 "'2024-01-31T00:00:00Z'")
            try:
                stamp = datetime.fromisoformat(value)
            except ValueError:
                raise self.error(right_item, f"`{name}` takes an ISO 8601 timestamp such as "
                                 f"'2024-01-31T00:00:00Z', not {_show(value)}") from None
            # A timestamp without a zone is UTC, as Engage converts its UI's time zones to UTC.
            stamp = stamp.replace(tzinfo=timezone.utc) if stamp.tzinfo is None else stamp
            try:
                stamp = stamp.astimezone(timezone.utc)
            except OverflowError:
                raise self.error(right_item, f"{_show(value)} is out of the range of dates") from None
            return t.Literal(stamp, span=right.span)
        raise AssertionError(f"comparator without a check: {op}")

    # -- chains of calls ----------------------------------------------------------------------

    def chain(self, item: Tree, scope: str, depth: int):
        calls = item.children
        node = self.head(calls[0], scope, depth)
        start = _span(item).start
        for call in calls[1:]:
            # Each step spans the chain so far, so that its source text is what the user wrote.
            node = _respan(self.method(node, call, depth), t.Span(start, _span(call).end))
        return node

    def head(self, call: Tree, scope: str, depth: int):
        name_token = call.children[0]
        name = name_token.value
        args = call.children[1:]
        if name == "event":
            if scope == _EVENT:
                raise self.error(name_token, "event() cannot be used inside where() or a reducer: "
                                 "conditions between two events (funnels) are not supported")
            return t.Stream(t.Event(self.name_arg(call, args, "the event's name", "'Order Completed'"),
                                    span=_span(call)), span=_span(call))
        if name == "trait":
            if scope == _EVENT:
                raise self.error(name_token, "trait() cannot be used inside where() or a reducer: "
                                 "comparing an event with a trait is not supported")
            return t.Trait(self.name_arg(call, args, "the trait's key", "'plan'"), span=_span(call))
        if name in ("property", "context"):
            if scope != _EVENT:
                raise self.error(name_token, f"{name}() refers to an event: use it inside where() or a "
                                 f"reducer, e.g. event('Order Completed').where({name}("
                                 f"'{'total' if name == 'property' else 'page.url'}') > 100)")
            if name == "property":
                return t.Property(self.name_arg(call, args, "the property's name", "'total'"),
                                  span=_span(call))
            path = self.name_arg(call, args, "a path", "'page.url'")
            if "" in path.split("."):
                raise self.error(args[0], f"{_show(path)} is not a path such as 'page.url'")
            return t.Context(path, span=_span(call))
        if name == "literal":
            return self.literal_call(call)
        raise self.unknown(name_token, call, start=True)

    def unknown(self, name_token: Token, call: Tree, start: bool) -> RuleError:
        name = name_token.value
        if name in UNSUPPORTED:
            return self.error(name_token, f"`{name}` is in Segment's language but not in what audsync "
                              f"evaluates: {UNSUPPORTED[name]}")
        if start and name in KNOWN:
            return self.error(name_token, f"`{name}()` cannot start a rule: it follows a `.`, as in "
                              f"event('Order Completed').{name}(...); a rule starts from "
                              "event(...) or trait(...)")
        near = suggest(name, KNOWN)
        hint = f"; did you mean `{near}`?" if near else ""
        return self.error(name_token, f"unknown function `{name}`{hint}")

    def method(self, node, call: Tree, depth: int):
        name_token = call.children[0]
        name = name_token.value
        args = call.children[1:]
        shown = self.source(node.span)
        if name not in KNOWN:
            raise self.unknown(name_token, call, start=False)
        if node.type is t.ValueType.CONDITION:
            raise self.error(name_token, f"nothing can follow a condition; `{shown}` ends here")
        if isinstance(node, t.Literal):
            raise self.error(name_token, "nothing can follow a constant")
        if name in EXTRACTORS:
            raise self.error(name_token, f"{name}() starts an expression; it cannot follow a `.`")
        if isinstance(node, t.Unique):
            if name != "count":
                raise self.error(name_token, "unique(...) gives a list: only `.count()` can follow it")
            self.no_args(call, args, name)
            return t.UniqueCount(node, span=node.span)
        if isinstance(node, t.Stream):
            if name in FILTERS:
                return self.filter(node, call, name, args, depth)
            if name in REDUCERS:
                return self.reducer(node, call, name, args, depth)
            raise self.error(name_token, self.comparable_message(name))
        # A value: only comparators may follow.
        if name in FILTERS or name in REDUCERS:
            what = "filters events" if name in FILTERS else "reduces a stream of events"
            raise self.error(name_token, f"`{shown}` is {_TYPE_WORDS[node.type]}; `.{name}()` {what}, so "
                             "it follows event(...)")
        return self.comparator(node, call, COMPARATORS[name], args, depth)

    def comparable_message(self, name: str) -> str:
        return (f"`.{name}()` compares a value, and a stream of events is not one yet: reduce it first, "
                "e.g. `.count() >= 1`")

    def filter(self, stream: t.Stream, call: Tree, name: str, args, depth: int) -> t.Stream:
        if name == "where":
            if len(args) != 1:
                raise self.error(call, "where() takes one condition, e.g. where(property('total') > 100)")
            new = t.Where(self.condition(args[0], _EVENT, depth), span=_span(call))
        else:
            if stream.window is not None:
                raise self.error(call, f"this stream already has a window ({self.source(stream.window.span)}); "
                                 "give one within() or between()")
            if name == "within":
                if len(args) != 1:
                    raise self.error(call, "within() takes one duration, e.g. within(30 days)")
                new = t.Within(self.duration(args[0], "within"), span=_span(call))
            else:
                if len(args) != 2:
                    raise self.error(call, "between() takes two durations, e.g. between(7 days, 30 days)")
                start, end = self.duration(args[0], "between"), self.duration(args[1], "between")
                if start.timedelta >= end.timedelta:
                    raise self.error(args[0], "between(A, B) looks back from A ago to B ago, so A must be "
                                     "shorter than B, e.g. between(7 days, 30 days)")
                new = t.Between(start, end, span=_span(call))
        return t.Stream(stream.event, (*stream.filters, new), span=stream.span)

    def reducer(self, stream: t.Stream, call: Tree, name: str, args, depth: int):
        span = _span(call)
        if name == "count":
            self.no_args(call, args, name)
            return t.Count(stream, span=span)
        example = f"{name}(property('total'))" if name != "mode" else "mode(property('plan'), 2)"
        if name == "mode":
            if len(args) != 2:
                raise self.error(call, f"mode() takes a property and a minimum frequency, e.g. {example}")
            of = self.event_field(args[0], name, example, depth)
            return t.Mode(stream, of, self.whole_number(args[1], "mode()'s minimum frequency"), span=span)
        if len(args) != 1:
            raise self.error(call, f"{name}() takes one property, e.g. {example}")
        of = self.event_field(args[0], name, example, depth)
        cls = {"sum": t.Sum, "avg": t.Avg, "min": t.Min, "max": t.Max, "first": t.First, "last": t.Last,
               "unique": t.Unique}[name]
        return cls(stream, of, span=span)

    def comparator(self, left, call: Tree, op: t.Op, args, depth: int) -> t.Compare:
        name = call.children[0].value
        left = self.comparable(left, name)
        span = t.Span(left.span.start, _span(call).end)
        if op in (t.Op.IS_SET, t.Op.IS_NULL):
            self.no_args(call, args, name)
            return t.Compare(left, op, None, span=span)
        if op in (t.Op.WITHIN_LAST, t.Op.BEFORE_LAST):
            if isinstance(left, _NUMERIC_REDUCERS):
                raise self.error(call.children[0], f"`{self.source(left.span)}` gives a number; `{name}` "
                                 "compares a date")
            if len(args) != 1:
                raise self.error(call, f"{name}() takes one duration, e.g. {name}(7 days)")
            return t.Compare(left, op, self.duration(args[0], name), span=span)
        if op in (t.Op.ONE_OF, t.Op.CONTAINS_ONE) and len(args) >= 1 and not (
                len(args) == 1 and self.is_list(args[0])):
            # Segment's newer documentation writes one_of('a', 'b'): the same as one_of(['a', 'b']).
            values = [self.constant(arg, name, depth) for arg in args]
            for arg, value in zip(args, values):
                if value.type is t.ValueType.LIST:
                    raise self.error(arg, f"`{name}` takes one list, or values separated by commas")
            right = t.Literal(tuple(v.value for v in values), span=t.Span(_span(args[0]).start,
                                                                           _span(args[-1]).end))
            right_item = args[0]
        else:
            if len(args) != 1:
                example = "['a', 'b']" if op in (t.Op.ONE_OF, t.Op.CONTAINS_ONE) else "'a'"
                raise self.error(call, f"{name}() takes one value, e.g. {name}({example})")
            right = self.constant(args[0], name, depth)
            right_item = args[0]
        right = self.check_operand(left, op, right, call.children[0], right_item)
        return t.Compare(left, op, right, span=span)

    # -- arguments ----------------------------------------------------------------------------

    def is_list(self, item: Tree) -> bool:
        if item.data == "literal":
            return isinstance(item.children[0], Tree)
        if item.data == "chain" and len(item.children) == 1:
            call = item.children[0]
            return (call.children[0].value == "literal" and len(call.children) == 2
                    and self.is_list(call.children[1]))
        return False

    def no_args(self, call: Tree, args, name: str) -> None:
        if args:
            raise self.error(args[0], f"{name}() takes no arguments")

    def name_arg(self, call: Tree, args, what: str, example: str) -> str:
        name = call.children[0].value
        if len(args) != 1 or args[0].data != "literal" or not isinstance(args[0].children[0], Token) \
                or args[0].children[0].type != "STRING":
            at = args[0] if args else call
            raise self.error(at, f"{name}() takes one string, {what}: {name}({example})")
        value = self.string(args[0].children[0])
        if not value:
            raise self.error(args[0], f"{name}() needs a non-empty name")
        return value

    def event_field(self, item: Tree, name: str, example: str, depth: int) -> t.EventField:
        if item.data == "chain" and len(item.children) == 1 and \
                item.children[0].children[0].value in ("property", "context"):
            return self.expression(item, _EVENT, depth)
        raise self.error(item, f"{name}() takes property('name') or context('path'), e.g. {example}")

    def duration(self, item: Tree, name: str) -> t.Duration:
        if item.data != "duration":
            raise self.error(item, f"{name}() takes a duration such as `30 days` or `12 hours`")
        number, unit = item.children
        amount = self.number(number)
        if not isinstance(amount, int) or amount < 1:
            raise self.error(number, "a duration is a whole number of days or hours, at least 1")
        unit_value = t.Unit.DAYS if unit.type in ("DAYS", "DAY") else t.Unit.HOURS
        return t.Duration(amount, unit_value, span=_span(item))

    def whole_number(self, item: Tree, what: str) -> int:
        if item.data == "literal" and isinstance(item.children[0], Token) and item.children[0].type == "NUMBER":
            value = self.number(item.children[0])
            if isinstance(value, int) and value >= 1:
                return value
        raise self.error(item, f"{what} is a whole number, at least 1")

    def literal_call(self, call: Tree) -> t.Literal:
        args = call.children[1:]
        if len(args) != 1 or args[0].data != "literal":
            raise self.error(args[0] if args else call,
                             "literal() takes one constant: a string, a number, true, false or a list")
        return t.Literal(self.literal(args[0]).value, span=_span(call))

    def literal(self, item: Tree) -> t.Literal:
        child = item.children[0]
        if isinstance(child, Tree):  # a list
            return t.Literal(tuple(self.scalar(token) for token in child.children), span=_span(item))
        return t.Literal(self.scalar(child), span=_span(item))

    def scalar(self, token: Token) -> t.Scalar:
        kind = token.type
        if kind == "STRING":
            return self.string(token)
        if kind == "NUMBER":
            return self.number(token)
        if kind == "TRUE":
            return True
        if kind == "FALSE":
            return False
        return None

    def number(self, token: Token) -> int | float:
        text = token.value
        try:
            if any(ch in text for ch in ".eE"):
                value = float(text)
                if not math.isfinite(value):
                    raise ValueError
                return value
            value = int(text)
        except ValueError:
            raise self.error(token, f"{_show(text)} is too large a number") from None
        if abs(value) > _INT64:
            raise self.error(token, f"{_show(text)} is too large a whole number (databases store at most "
                             f"{_INT64})")
        return value

    def string(self, token: Token) -> str:
        """The text between the quotes, escapes decoded (grammar.py lists them)."""
        raw = token.value[1:-1]
        out: list[str] = []
        i = 0
        while i < len(raw):
            ch = raw[i]
            if ch != "\\":
                out.append(ch)
                i += 1
                continue
            nxt = raw[i + 1]  # the grammar admits no lone backslash at the end
            if nxt in _UNESCAPE:
                out.append(_UNESCAPE[nxt])
                i += 2
            elif nxt == "u" and len(raw) >= i + 6 and all(c in "0123456789abcdefABCDEF" for c in raw[i + 2:i + 6]):
                out.append(chr(int(raw[i + 2:i + 6], 16)))
                i += 6
            else:
                shown = "\\u followed by four hexadecimal digits" if nxt == "u" else f"`\\{nxt}`"
                raise self.error(token.start_pos + 1 + i,
                                 f"unknown escape {shown} in a string; the escapes are "
                                 "\\\\ \\' \\\" \\n \\t \\r \\uXXXX")
        return "".join(out)


_UNESCAPE = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t", "r": "\r"}


def _respan(node, span: t.Span):
    return node if node.span == span else dataclasses.replace(node, span=span)
