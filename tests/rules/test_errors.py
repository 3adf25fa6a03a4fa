"""A rule with a mistake is a config error that names the place, quotes the rule, puts a caret under
the column and says what is wrong in the language's words."""

from __future__ import annotations

import pytest

from audsync.errors import ConfigError
from audsync.rules import RuleError, parse_rule

WHERE = 'audience "Big Spenders": source.rule'


def fails(text: str, kind: str = "audience", where: str | None = WHERE) -> RuleError:
    with pytest.raises(RuleError) as info:
        parse_rule(text, kind, where=where)
    return info.value


def caret_column(message: str) -> int:
    """The 1-based column the caret line points at, read back from the message itself."""
    quoted, caret = message.splitlines()[1:3]
    assert quoted.startswith("    ") and caret.startswith("    ")
    return len(caret) - 4


def test_message_names_the_place_quotes_the_rule_and_points_at_the_column():
    error = fails("event('Order Completed').cout() >= 3")
    assert str(error) == (
        'audience "Big Spenders": source.rule, column 26: unknown function `cout`; did you mean `count`?\n'
        "    event('Order Completed').cout() >= 3\n"
        "                             ^"
    )
    assert (error.line, error.column) == (1, 26)
    assert isinstance(error, ConfigError) and error.exit_code == 2


def test_without_a_place_the_message_says_rule():
    assert str(fails("trait('a') = ", where=None)).startswith("rule, column 13: expected ")


def test_a_rule_over_several_lines_names_the_line_and_quotes_only_it():
    error = fails("event('A').count() >= 1\n  AND trait('b') = 'x'\n  AND evnt('C').count() >= 1")
    assert str(error) == (
        f"{WHERE}, line 3, column 7: unknown function `evnt`; did you mean `event`?\n"
        "      AND evnt('C').count() >= 1\n"
        "          ^"
    )
    assert (error.line, error.column) == (3, 7)


def test_the_caret_keeps_its_column_after_tabs_and_unprintable_characters():
    error = fails("\ttrait('a') =\x01 3")
    quoted, caret = str(error).splitlines()[1:]
    assert quoted == "    \ttrait('a') =\ufffd 3"
    assert caret == "    \t" + " " * 12 + "^"


# (rule, column of the caret, the problem in the message)
SYNTAX_ERRORS = [
    ("event('A').count( >= 3", 19, "expected a condition or a value (such as `event('…')`, `trait('…')`, a number "
     "or a string) or `)`; found `>=`"),
    ("event('A').count() >= ", 22, "expected a condition or a value (such as `event('…')`, `trait('…')`, a number "
     "or a string); found the end of the rule"),
    ("event('A').count() >= 3 trait('b')", 25, "expected `AND`, `OR` or the end of the rule; found `trait`"),
    ("(trait('a') = 1", 16, "expected `)`; found the end of the rule"),
    ("trait('a') = 1)", 15, "expected the end of the rule; found `)`"),
    ("trait('a') = 7 days", 16, "expected `AND`, `OR` or the end of the rule; found `days`"),
    ("event('A').", 12, "expected a function name; found the end of the rule"),
    ("event('A').within(30 dayz).count() >= 1", 22, "unknown time unit `dayz`: write `days` or `hours`"),
    ("trait('a').one_of(['x', ])", 25, "expected a constant (a string, a number, `true`, `false` or `null`); "
     "found `]`"),
    ("trait('a').one_of([trait('b')])", 20, "expected a constant (a string, a number, `true`, `false` or "
     "`null`) or `]`; found `trait`"),
    ("event('A).count() >= 1", 7, "this string has no closing '"),
    ('trait("a) = 1', 7, 'this string has no closing "'),
    ("trait('a') && trait('b')", 12, "write AND instead of `&&`"),
    ("trait('a') || trait('b')", 12, "write OR instead of `||`"),
    ("!trait('a')", 1, "write NOT (...) to negate a condition; `!` only appears in `!=`"),
    ("trait('a') = 1 # a comment", 16, "unexpected character `#`"),
    ("trait('a')\u200b= 1", 11, "unexpected character ZERO WIDTH SPACE"),
    ("trait('a\\q') = 1", 9, "unknown escape `\\q` in a string; the escapes are \\\\ \\' \\\" \\n \\t \\r \\uXXXX"),
    ("trait('\\u12') = 1", 8, "unknown escape \\u followed by four hexadecimal digits in a string; the escapes "
     "are \\\\ \\' \\\" \\n \\t \\r \\uXXXX"),
    ("", 1, "the rule is empty"),
    ("   \n ", 1, "the rule is empty"),
]


@pytest.mark.parametrize("text, column, problem", SYNTAX_ERRORS, ids=[e[0] for e in SYNTAX_ERRORS])
def test_syntax_error_points_at_the_column_and_says_what_was_expected(text, column, problem):
    error = fails(text)
    assert error.problem == problem
    assert error.column == column
    assert caret_column(str(error)) == column
    assert str(error).startswith(f"{WHERE}, column {column}: {problem}\n") or "\n" in text


@pytest.mark.parametrize("text, column, suggestion", [
    ("event('A').cout() >= 3", 12, "count"),
    ("event('A').count() >= 3 AND evnt('B').count() >= 1", 29, "event"),
    ("Event('A').count() >= 3", 1, "event"),
    ("event('A').whre(property('x') = 1).count() >= 3", 12, "where"),
    ("event('A').withn(3 days).count() >= 3", 12, "within"),
    ("event('A').where(proprety('x') = 1).count() >= 3", 18, "property"),
    ("event('A').sum(property('x')) > 1 AND trait('a').is_nul()", 50, "is_null"),
    ("trait('a').startswith('x')", 12, "starts_with"),
    ("trait('a').one_off(['x'])", 12, "one_of"),
    ("trait('a').before_dat('2024-01-01')", 12, "before_date"),
    ("trait('a').COUNTAINS('x')", 12, "contains"),
])
def test_unknown_function_suggests_the_nearest_known_name(text, column, suggestion):
    error = fails(text)
    assert error.problem.endswith(f"; did you mean `{suggestion}`?")
    assert error.column == column


def test_unknown_function_far_from_any_name_gets_no_suggestion():
    error = fails("event('A').xyzzy() >= 3")
    assert error.problem == "unknown function `xyzzy`"
    assert error.column == 12


@pytest.mark.parametrize("name", ["within_next", "after_next", "sources", "expires_after", "entity"])
def test_segment_functions_outside_the_subset_are_named_as_such(name):
    error = fails(f"trait('a').{name}(7 days)")
    assert error.problem.startswith(f"`{name}` is in Segment's language but not in what audsync evaluates: ")
    assert error.column == 12


# (rule, kind, column, problem)
TYPE_ERRORS = [
    # The result of the rule against its kind.
    ("event('Order Completed').count()", "audience", 33,
     "an audience rule must end in a condition such as `>= 3`; this one ends in a number"),
    ("event('A').within(30 days).sum(property('total'))   ", "audience", 50,
     "an audience rule must end in a condition such as `>= 3`; this one ends in a number"),
    ("event('A').first(property('p'))", "audience", 32,
     "an audience rule must end in a condition such as `>= 3`; this one ends in a value"),
    ("event('A').unique(property('p'))", "audience", 33,
     "an audience rule must end in a condition such as `>= 3`; this one ends in a list"),
    ("event('A').within(3 days)", "audience", 26, "an audience rule must end in a condition such as `>= 3`; "
     "this one ends in a stream of events (add a reducer and a comparison, e.g. `.count() >= 1`)"),
    ("42", "audience", 3, "an audience rule must end in a condition such as `>= 3`; this one ends in a constant"),
    ("event('A').count() >= 3", "computed_trait", 1, "a computed trait rule must end in a value such as "
     "`.count()` or `.sum(property('total'))`; this one ends in a condition"),
    ("trait('a') AND trait('b')", "computed_trait", 1, "a computed trait rule must end in a value such as "
     "`.count()` or `.sum(property('total'))`; this one ends in a condition"),
    ("event('A')", "computed_trait", 11, "a computed trait rule must end in a value; this one ends in a stream "
     "of events: add a reducer such as `.count()`"),
    ("'pro'", "computed_trait", 1, "a computed trait rule must compute a value from events or traits; this one "
     "is a constant"),
    # Junction operands must be conditions.
    ("event('A').count() AND trait('b')", "audience", 1,
     "`event('A').count()` is a number, not a condition: compare it, e.g. with `>=`, `=` or `.is_set()`"),
    ("NOT event('A')", "audience", 5,
     "`event('A')` is a stream of events, not a condition: reduce it and compare, e.g. `.count() >= 1`"),
    ("event('A').where(property('x')).count() >= 1", "audience", 18,
     "`property('x')` is a value, not a condition: compare it, e.g. with `>=`, `=` or `.is_set()`"),
    # What may follow what.
    ("event('A') >= 3", "audience", 1,
     "`event('A')` is a stream of events: reduce it before comparing, e.g. `.count() >= 1`"),
    ("event('A').is_set()", "audience", 12, "`.is_set()` compares a value, and a stream of events is not one "
     "yet: reduce it first, e.g. `.count() >= 1`"),
    ("event('A').unique(property('p')) = 'x'", "audience", 1,
     "unique(...) gives a list: only `.count()` can follow it"),
    ("event('A').unique(property('p')).first(property('p'))", "computed_trait", 34,
     "unique(...) gives a list: only `.count()` can follow it"),
    ("event('A').count().where(property('x') = 1) >= 1", "audience", 20,
     "`event('A').count()` is a number; `.where()` filters events, so it follows event(...)"),
    ("trait('a').count() >= 1", "audience", 12,
     "`trait('a')` is a value; `.count()` reduces a stream of events, so it follows event(...)"),
    ("trait('a').is_set().is_null()", "audience", 21, "nothing can follow a condition; `trait('a').is_set()` "
     "ends here"),
    ("(trait('a') = 1) = true", "audience", 2, "`trait('a') = 1` is a condition; `=` compares a value"),
    ("count() >= 1", "audience", 1, "`count()` cannot start a rule: it follows a `.`, as in "
     "event('Order Completed').count(...); a rule starts from event(...) or trait(...)"),
    ("event('A').event('B').count() >= 1", "audience", 12, "event() starts an expression; it cannot follow a `.`"),
    ("1 = trait('a')", "audience", 1, "a comparison starts from event(...), trait(...), property(...) or "
     "context(...), not from a constant"),
    ("literal(3).is_set()", "audience", 12, "nothing can follow a constant"),
    # Scopes: property() and context() belong to an event, event() and trait() do not nest in one.
    ("property('total') > 100", "audience", 1, "property() refers to an event: use it inside where() or a "
     "reducer, e.g. event('Order Completed').where(property('total') > 100)"),
    ("context('page.url').contains('x')", "audience", 1, "context() refers to an event: use it inside where() or "
     "a reducer, e.g. event('Order Completed').where(context('page.url') > 100)"),
    ("event('A').where(event('B').count() >= 1).count() >= 1", "audience", 18, "event() cannot be used inside "
     "where() or a reducer: conditions between two events (funnels) are not supported"),
    ("event('A').where(property('p') >= trait('t')).count() >= 1", "audience", 35, "`>=` compares with a "
     "constant such as 100 or 'pro'; comparing with another trait, property or event is not supported"),
    ("event('A').where(trait('t') = 1).count() >= 1", "audience", 18, "trait() cannot be used inside where() or "
     "a reducer: comparing an event with a trait is not supported"),
    # Arguments.
    ("event().count() >= 1", "audience", 1, "event() takes one string, the event's name: event('Order Completed')"),
    ("event(42).count() >= 1", "audience", 7, "event() takes one string, the event's name: event('Order Completed')"),
    ("event('').count() >= 1", "audience", 7, "event() needs a non-empty name"),
    ("trait('a', 'b')", "audience", 7, "trait() takes one string, the trait's key: trait('plan')"),
    ("event('A').where(context('page..url') = 'x').count() >= 1", "audience", 26,
     "`page..url` is not a path such as 'page.url'"),
    ("event('A').within(30).count() >= 1", "audience", 19, "within() takes a duration such as `30 days` or "
     "`12 hours`"),
    ("event('A').within(0 days).count() >= 1", "audience", 19, "a duration is a whole number of days or hours, "
     "at least 1"),
    ("event('A').within(1.5 days).count() >= 1", "audience", 19, "a duration is a whole number of days or "
     "hours, at least 1"),
    ("event('A').within().count() >= 1", "audience", 12, "within() takes one duration, e.g. within(30 days)"),
    ("event('A').within(1 day).within(2 days).count() >= 1", "audience", 26,
     "this stream already has a window (within(1 day)); give one within() or between()"),
    ("event('A').between(30 days, 7 days).count() >= 1", "audience", 20, "between(A, B) looks back from A ago "
     "to B ago, so A must be shorter than B, e.g. between(7 days, 30 days)"),
    ("event('A').between(2 days, 48 hours).count() >= 1", "audience", 20, "between(A, B) looks back from A ago "
     "to B ago, so A must be shorter than B, e.g. between(7 days, 30 days)"),
    ("event('A').between(7 days).count() >= 1", "audience", 12,
     "between() takes two durations, e.g. between(7 days, 30 days)"),
    ("event('A').count(property('x')) >= 1", "audience", 18, "count() takes no arguments"),
    ("event('A').sum() >= 1", "audience", 12, "sum() takes one property, e.g. sum(property('total'))"),
    ("event('A').sum('total') >= 1", "audience", 16, "sum() takes property('name') or context('path'), e.g. "
     "sum(property('total'))"),
    ("event('A').mode(property('p')) = 'x'", "audience", 12, "mode() takes a property and a minimum frequency, "
     "e.g. mode(property('plan'), 2)"),
    ("event('A').mode(property('p'), 0) = 'x'", "audience", 32, "mode()'s minimum frequency is a whole "
     "number, at least 1"),
    ("trait('a').is_set(1)", "audience", 19, "is_set() takes no arguments"),
    ("trait('a') = trait('b')", "audience", 14, "`=` compares with a constant such as 100 or 'pro'; comparing "
     "with another trait, property or event is not supported"),
    ("event('A').where(3 days).count() >= 1", "audience", 18, "a duration such as `30 days` only goes inside "
     "within(), between(), within_last() or before_last()"),
    ("literal() = 1", "audience", 1, "literal() takes one constant: a string, a number, true, false or a list"),
    # Values against what the comparator wants.
    ("event('A').count() >= 'three'", "audience", 23, "`event('A').count()` gives a number: compare it with a "
     "number"),
    ("event('A').count() = true", "audience", 22, "`event('A').count()` gives a number: compare it with a number"),
    ("event('A').sum(property('p')).contains('1')", "audience", 31, "`event('A').sum(property('p'))` gives a "
     "number; `contains` looks for text in a string"),
    ("event('A').count().before_date('2024-01-01')", "audience", 20, "`event('A').count()` gives a number; "
     "`before_date` compares a date"),
    ("event('A').count().within_last(3 days)", "audience", 20, "`event('A').count()` gives a number; "
     "`within_last` compares a date"),
    ("event('A').count().one_of([1, 'x'])", "audience", 27, "`event('A').count()` gives a number: its list "
     "must hold numbers"),
    ("trait('a') = null", "audience", 14, "compare with null by `.is_null()` or `.is_set()`"),
    ("trait('a') != NULL", "audience", 15, "compare with null by `.is_null()` or `.is_set()`"),
    ("trait('a') = ['x']", "audience", 14, "`=` compares with one value; for any of a list use `.one_of([...])`"),
    ("trait('a') > true", "audience", 14, "`>` orders numbers or strings, not true/false"),
    ("trait('a').contains(3)", "audience", 21, "`contains` takes one string"),
    ("trait('a').contains(['x', 'y'])", "audience", 21,
     "`contains` takes one string; for any of a list use `.contains_one([...])`"),
    ("trait('a').contains('x', 'y')", "audience", 12, "contains() takes one value, e.g. contains('a')"),
    ("trait('a').one_of()", "audience", 12, "one_of() takes one value, e.g. one_of(['a', 'b'])"),
    ("trait('a').one_of([])", "audience", 19, "`one_of` needs at least one value in its list"),
    ("trait('a').one_of(['x', null])", "audience", 19, "a list holds no null; test for null with `.is_null()`"),
    ("trait('a').one_of(['x'], ['y'])", "audience", 19, "`one_of` takes one list, or values separated by commas"),
    ("trait('a').contains_one(['x', 1])", "audience", 25, "`contains_one` takes a list of strings"),
    ("trait('a').before_date('yesterday')", "audience", 24, "`before_date` takes an ISO 8601 timestamp such as "
     "'2024-01-31T00:00:00Z', not `yesterday`"),
    ("trait('a').after_date(20240101)", "audience", 23, "`after_date` takes an ISO 8601 timestamp such as "
     "'2024-01-31T00:00:00Z'"),
    ("trait('a').within_last('7 days')", "audience", 24, "within_last() takes a duration such as `30 days` or "
     "`12 hours`"),
    ("trait('a') = 99999999999999999999", "audience", 14, "`99999999999999999999` is too large a whole number "
     "(databases store at most 9223372036854775807)"),
    ("trait('a') = 1e999", "audience", 14, "`1e999` is too large a number"),
]


@pytest.mark.parametrize("text, kind, column, problem", TYPE_ERRORS, ids=[e[0] for e in TYPE_ERRORS])
def test_type_error_points_at_the_part_and_says_what_fits(text, kind, column, problem):
    error = fails(text, kind)
    assert error.problem == problem
    assert error.column == column
    assert caret_column(str(error)) == column


def test_nesting_deeper_than_the_limit_is_a_rule_error_not_a_crash():
    deep = "(" * 200 + "trait('a') = 1" + ")" * 200
    assert fails(deep).problem == "this rule nests deeper than 64 levels"
    assert fails("NOT " * 500 + "trait('a') = 1").problem == "this rule nests deeper than 64 levels"
    assert parse_rule("(" * 60 + "trait('a') = 1" + ")" * 60, "audience") is not None


def test_more_than_fifty_conditions_is_refused_as_segment_does():
    fifty = " OR ".join(f"trait('t{i}') = 1" for i in range(50))
    assert len(parse_rule(fifty, "audience").items) == 50
    error = fails(fifty + " OR trait('x') = 1")
    assert error.problem == "a rule may hold at most 50 conditions (Segment's limit too); this one has 51"


def test_kind_must_be_audience_or_computed_trait():
    with pytest.raises(ValueError):
        parse_rule("trait('a')", "trait")


def test_a_quoted_part_of_the_rule_stays_on_one_line_and_short():
    error = fails("event('A')\n  .within(3 days)\n  .count()\n  AND trait('b') = 1")
    assert error.problem == ("`event('A') .within(3 days) .count()` is a number, not a condition: compare it, "
                             "e.g. with `>=`, `=` or `.is_set()`")
    assert (error.line, error.column) == (1, 1)
    long = "event('" + "x" * 100 + "').count() AND trait('b') = 1"
    assert fails(long).problem.startswith("`event('" + "x" * 50 + "...` is a number")
