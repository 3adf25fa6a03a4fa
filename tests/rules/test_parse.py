"""Every construct of the rule language (DESIGN.md section 7) parses to the tree it means."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from audsync.rules import parse_rule, to_text
from audsync.rules.tree import (
    And, Avg, Between, Compare, Context, Count, Duration, Event, First, Last, Literal, Max, Min, Mode, Not, Op,
    Or, Property, Stream, Sum, Trait, Unique, UniqueCount, Unit, ValueType, Where, Within,
)


def days(n):
    return Duration(n, Unit.DAYS)


def hours(n):
    return Duration(n, Unit.HOURS)


def stream(name, *filters):
    return Stream(Event(name), tuple(filters))


def cmp(left, op, right=None):
    if right is not None and not isinstance(right, Duration):
        right = Literal(right)
    return Compare(left, op, right)


ORDERS = stream("Order Completed")
TOTAL = Property("total")
A, B, C = (cmp(Trait(k), Op.EQ, "x") for k in "abc")

AUDIENCE_RULES = [
    # The contract's example, and every filter.
    ("event('Order Completed').where(property('total') > 100).within(30 days).count() >= 3",
     cmp(Count(stream("Order Completed", Where(cmp(TOTAL, Op.GT, 100)), Within(days(30)))), Op.GE, 3)),
    ("event('Order Completed').between(7 days, 30 days).count() >= 1",
     cmp(Count(stream("Order Completed", Between(days(7), days(30)))), Op.GE, 1)),
    ("event('Page Viewed').within(12 hours).count() = 0",
     cmp(Count(stream("Page Viewed", Within(hours(12)))), Op.EQ, 0)),
    ("event('Page Viewed').within(1 hour).count() != 2",
     cmp(Count(stream("Page Viewed", Within(hours(1)))), Op.NE, 2)),
    # Several where() filters, in order, around a window.
    ("event('A').where(property('x') = 1).within(2 days).where(context('page.url').starts_with('https'))"
     ".count() >= 1",
     cmp(Count(stream("A", Where(cmp(Property("x"), Op.EQ, 1)), Within(days(2)),
                      Where(cmp(Context("page.url"), Op.STARTS_WITH, "https")))), Op.GE, 1)),
    # Conditions combined inside where().
    ("event('A').where(property('x') > 1 AND NOT property('y').is_set()).count() >= 1",
     cmp(Count(stream("A", Where(And((cmp(Property("x"), Op.GT, 1), Not(cmp(Property("y"), Op.IS_SET))))))),
         Op.GE, 1)),
    # Every reducer, compared.
    ("event('Order Completed').sum(property('total')) > 500", cmp(Sum(ORDERS, TOTAL), Op.GT, 500)),
    ("event('Order Completed').avg(property('total')) >= 20.5", cmp(Avg(ORDERS, TOTAL), Op.GE, 20.5)),
    ("event('Order Completed').min(property('total')) < 1", cmp(Min(ORDERS, TOTAL), Op.LT, 1)),
    ("event('Order Completed').max(context('order.total')) <= 1e3",
     cmp(Max(ORDERS, Context("order.total")), Op.LE, 1000.0)),
    ("event('Order Completed').mode(property('plan'), 2) = 'pro'",
     cmp(Mode(ORDERS, Property("plan"), 2), Op.EQ, "pro")),
    ("event('Order Completed').first(property('plan')) = 'free'",
     cmp(First(ORDERS, Property("plan")), Op.EQ, "free")),
    ("event('Order Completed').last(property('plan')).is_null()",
     cmp(Last(ORDERS, Property("plan")), Op.IS_NULL)),
    ("event('Order Completed').unique(property('sku')).count() >= 3",
     cmp(UniqueCount(Unique(ORDERS, Property("sku"))), Op.GE, 3)),
    # Every comparator on a trait.
    ("trait('plan') = 'pro'", cmp(Trait("plan"), Op.EQ, "pro")),
    ("trait('plan') == 'pro'", cmp(Trait("plan"), Op.EQ, "pro")),
    ("trait('plan') != 'pro'", cmp(Trait("plan"), Op.NE, "pro")),
    ("trait('age') > 17", cmp(Trait("age"), Op.GT, 17)),
    ("trait('age') >= -1.5", cmp(Trait("age"), Op.GE, -1.5)),
    ("trait('age') < 2", cmp(Trait("age"), Op.LT, 2)),
    ("trait('age') <= 2", cmp(Trait("age"), Op.LE, 2)),
    ("trait('vip') = true", cmp(Trait("vip"), Op.EQ, True)),
    ("trait('vip') != FALSE", cmp(Trait("vip"), Op.NE, False)),
    ("trait('email').is_set()", cmp(Trait("email"), Op.IS_SET)),
    ("trait('email').is_null()", cmp(Trait("email"), Op.IS_NULL)),
    ("trait('email').contains('@example')", cmp(Trait("email"), Op.CONTAINS, "@example")),
    ("trait('email').omits('@example')", cmp(Trait("email"), Op.OMITS, "@example")),
    ("trait('email').starts_with('ann')", cmp(Trait("email"), Op.STARTS_WITH, "ann")),
    ("trait('email').ends_with('.org')", cmp(Trait("email"), Op.ENDS_WITH, ".org")),
    ("trait('plan').one_of(['pro', 'team'])", cmp(Trait("plan"), Op.ONE_OF, ("pro", "team"))),
    ("trait('seats').one_of([1, 2, 3])", cmp(Trait("seats"), Op.ONE_OF, (1, 2, 3))),
    ("trait('plan').contains_one(['pro', 'team'])", cmp(Trait("plan"), Op.CONTAINS_ONE, ("pro", "team"))),
    ("trait('signed_up').before_date('2024-01-31T18:50:00Z')",
     cmp(Trait("signed_up"), Op.BEFORE_DATE, datetime(2024, 1, 31, 18, 50, tzinfo=timezone.utc))),
    # A date without a zone is UTC; one with an offset is converted to UTC.
    ("trait('signed_up').after_date('2024-01-31')",
     cmp(Trait("signed_up"), Op.AFTER_DATE, datetime(2024, 1, 31, tzinfo=timezone.utc))),
    ("trait('signed_up').after_date('2024-01-31T02:00:00+02:00')",
     cmp(Trait("signed_up"), Op.AFTER_DATE, datetime(2024, 1, 31, tzinfo=timezone.utc))),
    ("trait('signed_up').within_last(7 days)", cmp(Trait("signed_up"), Op.WITHIN_LAST, days(7))),
    ("trait('signed_up').before_last(48 hours)", cmp(Trait("signed_up"), Op.BEFORE_LAST, hours(48))),
    # Segment's named comparators read as the symbols.
    ("trait('n').eq(1) AND trait('n').equals(1)", And((cmp(Trait("n"), Op.EQ, 1),) * 2)),
    ("trait('n').neq(1) AND trait('n').differs(1)", And((cmp(Trait("n"), Op.NE, 1),) * 2)),
    ("trait('n').gt(1) AND trait('n').greater_than(1)", And((cmp(Trait("n"), Op.GT, 1),) * 2)),
    ("trait('n').gte(1) AND trait('n').at_least(1)", And((cmp(Trait("n"), Op.GE, 1),) * 2)),
    ("trait('n').lt(1) AND trait('n').less_than(1)", And((cmp(Trait("n"), Op.LT, 1),) * 2)),
    ("trait('n').lte(1) AND trait('n').at_most(1)", And((cmp(Trait("n"), Op.LE, 1),) * 2)),
    ("trait('n').exists() AND trait('n').absent()", And((cmp(Trait("n"), Op.IS_SET), cmp(Trait("n"), Op.IS_NULL)))),
    # one_of with values in a row, as Segment's newer documentation writes it, and literal().
    ("trait('plan').one_of('pro', 'team')", cmp(Trait("plan"), Op.ONE_OF, ("pro", "team"))),
    ("trait('plan').one_of(literal(['pro']))", cmp(Trait("plan"), Op.ONE_OF, ("pro",))),
    ("trait('plan').one_of('pro')", cmp(Trait("plan"), Op.ONE_OF, ("pro",))),
    ("trait('plan') = literal('pro')", cmp(Trait("plan"), Op.EQ, "pro")),
    ("trait('plan').contains(literal('pro'))", cmp(Trait("plan"), Op.CONTAINS, "pro")),
    # Part of audience: a bare trait where a condition goes means `= true`; the tree stays neutral.
    ("trait('frequent_big_spenders')", cmp(Trait("frequent_big_spenders"), Op.EQ, True)),
    ("NOT trait('frequent_big_spenders')", Not(cmp(Trait("frequent_big_spenders"), Op.EQ, True))),
    # Parentheses, junctions in any letter case, spread over lines.
    ("(trait('a') = 'x')", A),
    ("((trait('a') = 'x'))", A),
    ("trait('a') = 'x' and trait('b') = 'x' or not trait('c') = 'x'", Or((And((A, B)), Not(C)))),
    ("trait('a') = 'x'\n  AND\n  trait('b') = 'x'", And((A, B))),
    ("  trait('a')   =   'x'  ", A),
    ("trait ( 'a' ) = 'x'", A),
    ("event ( 'A' ) . count ( ) >= 1", cmp(Count(stream("A")), Op.GE, 1)),
]

COMPUTED_TRAIT_RULES = [
    ("event('Order Completed').within(90 days).sum(property('total'))",
     Sum(stream("Order Completed", Within(days(90))), TOTAL)),
    ("event('Order Completed').count()", Count(ORDERS)),
    ("event('Shoes Bought').within(30 days).avg(property('spend'))",
     Avg(stream("Shoes Bought", Within(days(30))), Property("spend"))),
    ("event('Shoes Bought').where(property('price') > 100 AND property('brand') = 'My Brand')"
     ".min(property('spend'))",
     Min(stream("Shoes Bought", Where(And((cmp(Property("price"), Op.GT, 100),
                                           cmp(Property("brand"), Op.EQ, "My Brand"))))), Property("spend"))),
    ("event('Shoes Bought').within(30 days).mode(property('spend'), 2)",
     Mode(stream("Shoes Bought", Within(days(30))), Property("spend"), 2)),
    ("event('A').first(property('p'))", First(stream("A"), Property("p"))),
    ("event('A').last(context('campaign.name'))", Last(stream("A"), Context("campaign.name"))),
    ("event('A').max(property('p'))", Max(stream("A"), Property("p"))),
    ("event('A').unique(property('p'))", Unique(stream("A"), Property("p"))),
    ("event('A').unique(property('p')).count()", UniqueCount(Unique(stream("A"), Property("p")))),
    ("trait('plan')", Trait("plan")),
]


@pytest.mark.parametrize("text, expected", AUDIENCE_RULES, ids=[r[0] for r in AUDIENCE_RULES])
def test_audience_rule_parses_to_its_tree(text, expected):
    tree = parse_rule(text, "audience")
    assert tree == expected
    assert tree.type is ValueType.CONDITION
    # The canonical text reads back to the same tree.
    assert parse_rule(to_text(tree), "audience") == expected


@pytest.mark.parametrize("text, expected", COMPUTED_TRAIT_RULES, ids=[r[0] for r in COMPUTED_TRAIT_RULES])
def test_computed_trait_rule_parses_to_its_tree(text, expected):
    tree = parse_rule(text, "computed_trait")
    assert tree == expected
    assert tree.type is not ValueType.CONDITION
    assert parse_rule(to_text(tree), "computed_trait") == expected


@pytest.mark.parametrize("text, expected", [
    # AND binds tighter than OR, on either side.
    ("trait('a') = 'x' OR trait('b') = 'x' AND trait('c') = 'x'", Or((A, And((B, C))))),
    ("trait('a') = 'x' AND trait('b') = 'x' OR trait('c') = 'x'", Or((And((A, B)), C))),
    # NOT binds tighter than AND and OR: it takes one condition.
    ("NOT trait('a') = 'x' AND trait('b') = 'x'", And((Not(A), B))),
    ("NOT trait('a') = 'x' OR trait('b') = 'x'", Or((Not(A), B))),
    ("trait('a') = 'x' AND NOT trait('b') = 'x'", And((A, Not(B)))),
    ("NOT NOT trait('a') = 'x'", Not(Not(A))),
    # Parentheses override.
    ("NOT (trait('a') = 'x' AND trait('b') = 'x')", Not(And((A, B)))),
    ("(trait('a') = 'x' OR trait('b') = 'x') AND trait('c') = 'x'", And((Or((A, B)), C))),
    # Junctions of one kind are flat, in the order written.
    ("trait('a') = 'x' OR trait('b') = 'x' OR trait('c') = 'x'", Or((A, B, C))),
    ("trait('a') = 'x' AND trait('b') = 'x' AND trait('c') = 'x'", And((A, B, C))),
])
def test_not_binds_tighter_than_and_which_binds_tighter_than_or(text, expected):
    assert parse_rule(text, "audience") == expected


@pytest.mark.parametrize("literal, value", [
    ("'pro'", "pro"),
    ('"pro"', "pro"),
    ("'it\\'s'", "it's"),
    ('"it\'s"', "it's"),
    ("'say \"hi\"'", 'say "hi"'),
    ('"say \\"hi\\""', 'say "hi"'),
    ("'a\\\\b'", "a\\b"),
    ("'tab\\there'", "tab\there"),
    ("'line\\nbreak\\r'", "line\nbreak\r"),
    ("'\\u00e9t\\u00E9'", "été"),
    ("'été 🌞'", "été 🌞"),
    ("''", ""),
    ("0", 0),
    ("-7", -7),
    ("3.25", 3.25),
    ("-0.5", -0.5),
    ("2e3", 2000.0),
    ("1.5E-2", 0.015),
    ("9223372036854775807", 2**63 - 1),
    ("true", True),
    ("True", True),
    ("FALSE", False),
])
def test_literal_values_read_as_documented(literal, value):
    tree = parse_rule(f"trait('t') = {literal}", "audience")
    assert tree.right == Literal(value)
    assert type(tree.right.value) is type(value)
    assert parse_rule(to_text(tree), "audience") == tree


def test_names_keep_every_character_and_case():
    tree = parse_rule("event(\"Order Completed: 'Big' \\\\ 50% ; DROP TABLE x\").count() >= 1", "audience")
    assert tree.left.stream.event == Event("Order Completed: 'Big' \\ 50% ; DROP TABLE x")
    assert parse_rule("trait('Plan Name') = 'Pro'", "audience") == cmp(Trait("Plan Name"), Op.EQ, "Pro")


def test_durations_know_their_length():
    assert days(30).timedelta == timedelta(days=30)
    assert hours(12).timedelta == timedelta(hours=12)
    for text, duration in [("1 day", days(1)), ("2 DAYS", days(2)), ("1 hour", hours(1)), ("3 Hours", hours(3))]:
        tree = parse_rule(f"event('A').within({text}).count() >= 1", "audience")
        assert tree.left.stream.window == Within(duration)
    mixed = parse_rule("event('A').between(36 hours, 2 days).count() >= 1", "audience")
    assert mixed.left.stream.window == Between(hours(36), days(2))


def test_a_stream_tells_its_window_and_conditions_and_a_context_its_parts():
    tree = parse_rule("event('A').where(property('x') = 1).between(2 days, 9 days)"
                      ".where(context('page.url').is_set()).count() >= 1", "audience")
    stream = tree.left.stream
    assert stream.window == Between(days(2), days(9))
    assert stream.conditions == (cmp(Property("x"), Op.EQ, 1), cmp(Context("page.url"), Op.IS_SET))
    assert stream.conditions[1].left.parts == ("page", "url")
    assert parse_rule("event('A').count() >= 1", "audience").left.stream.window is None


def test_each_node_knows_its_type_and_its_place_in_the_text():
    text = "event('A').within(3 days).sum(property('total')) > 5 OR trait('plan') = 'pro'"
    tree = parse_rule(text, "audience")
    first, second = tree.items
    assert [first.left.type, first.right.type, second.left.type, second.type] == [
        ValueType.NUMBER, ValueType.NUMBER, ValueType.ANY, ValueType.CONDITION]
    assert first.left.stream.type is ValueType.STREAM
    assert parse_rule("event('A').unique(property('p'))", "computed_trait").type is ValueType.LIST
    # Spans give back what the user wrote, so that later stages can point at it.
    assert text[first.left.span.start:first.left.span.end] == "event('A').within(3 days).sum(property('total'))"
    assert text[first.left.stream.span.start:first.left.stream.span.end] == "event('A').within(3 days)"
    assert text[second.span.start:second.span.end] == "trait('plan') = 'pro'"
    assert text[tree.span.start:tree.span.end] == text
