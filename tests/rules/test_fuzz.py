"""Whatever the text, parse_rule gives a tree or a RuleError: never another exception, never a
traceback for the user. And every tree it gives prints as canonical text that reads back the same."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from audsync.rules import RuleError, parse_rule, to_text
from audsync.rules.tree import ValueType

KINDS = ("audience", "computed_trait")
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Valid rules take longer to draw than to parse; fewer of them keep the file to a few seconds.
VALID = settings(FUZZ, max_examples=200)


def check(text: str, kind: str) -> None:
    """The property every input must have."""
    try:
        tree = parse_rule(text, kind, where="fuzz")
    except RuleError as error:
        assert 0 <= error.pos <= len(text)
        assert error.line >= 1 and error.column >= 1
        head, _quoted, caret = str(error).split("\n")
        assert head.startswith("fuzz, ")
        assert caret.endswith("^") and len(caret) - 4 == error.column
        return
    assert (tree.type is ValueType.CONDITION) == (kind == "audience")
    assert parse_rule(to_text(tree), kind) == tree


# --- a grammar-shaped strategy: rules that are valid by construction ------------------------------

NAME_TEXT = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=6)


@st.composite
def quoted(draw, text=NAME_TEXT):
    value = draw(text)
    quote = draw(st.sampled_from("'\""))
    escaped = value.replace("\\", "\\\\").replace(quote, "\\" + quote)
    return quote + escaped + quote


PATH = st.lists(st.text("abcxyz_", min_size=1, max_size=4), min_size=1, max_size=3).map(".".join)
FIELD = quoted().map(lambda q: f"property({q})") | PATH.map(lambda p: f"context('{p}')")
DURATION = st.builds(lambda n, unit: f"{n} {unit}", st.integers(1, 400),
                     st.sampled_from(["days", "day", "hours", "hour", "DAYS"]))
NUMBER = (st.integers(-10**6, 10**6).map(str)
          | st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr))
CONSTANT = NUMBER | quoted(st.text(max_size=6)) | st.sampled_from(["true", "false"])
SYMBOL = st.sampled_from(["=", "==", "!=", ">", ">=", "<", "<="])
DATE = st.datetimes().map(lambda d: f"'{d.isoformat()}'")


NUMBER_TAIL = st.builds(lambda op, n: f" {op} {n}", SYMBOL, NUMBER)
# What may follow a number (a count, a sum...), and what may follow any other value.
NUMERIC_TAIL = (NUMBER_TAIL | st.sampled_from([".is_set()", ".is_null()"])
                | st.lists(NUMBER, min_size=1, max_size=3).map(lambda ns: f".one_of([{', '.join(ns)}])"))
STRINGS = st.lists(quoted(st.text(max_size=5)), min_size=1, max_size=3).map(", ".join)
ANY_TAIL = (
    NUMBER_TAIL
    | st.builds(lambda op, c: f" {op} {c}", st.sampled_from(["=", "!="]), CONSTANT)
    | st.sampled_from([".is_set()", ".is_null()", ".exists()", ".absent()"])
    | st.builds(lambda f, s: f".{f}({s})", st.sampled_from(["contains", "omits", "starts_with", "ends_with"]),
                quoted(st.text(max_size=5)))
    | st.builds(lambda f, s: f".{f}([{s}])", st.sampled_from(["one_of", "contains_one"]), STRINGS)
    | st.builds(lambda f, d: f".{f}({d})", st.sampled_from(["before_date", "after_date"]), DATE)
    | st.builds(lambda f, d: f".{f}({d})", st.sampled_from(["within_last", "before_last"]), DURATION)
)


def concat(*parts):
    return st.tuples(*parts).map("".join)


def junctions(primary, max_leaves):
    return st.recursive(primary, lambda inner: (
        st.lists(inner, min_size=2, max_size=3).map(lambda cs: "(" + " AND ".join(cs) + ")")
        | st.lists(inner, min_size=2, max_size=3).map(lambda cs: " OR ".join(cs))
        | inner.map(lambda c: f"NOT {c}")
    ), max_leaves=max_leaves)


EVENT_CONDITION = junctions(concat(FIELD, ANY_TAIL), max_leaves=2)


@st.composite
def stream(draw):
    text = f"event({draw(quoted())})"
    filters = draw(st.lists(EVENT_CONDITION.map(lambda c: f".where({c})"), max_size=1))
    window = draw(st.none() | DURATION.map(lambda d: f".within({d})")
                  | st.integers(1, 20).map(lambda n: f".between({n} days, {n + 5} days)"))
    if window:
        filters.insert(draw(st.integers(0, len(filters))), window)
    return text + "".join(filters)


NUMERIC_VALUE = st.builds(lambda s, r: s + r, stream(), st.sampled_from([".count()"]) | st.builds(
    lambda f, fld: f".{f}({fld})", st.sampled_from(["sum", "avg", "min", "max"]), FIELD)
    | FIELD.map(lambda fld: f".unique({fld}).count()"))
ANY_VALUE = (quoted().map(lambda q: f"trait({q})")
             | st.builds(lambda s, f, fld: f"{s}.{f}({fld})", stream(), st.sampled_from(["first", "last"]), FIELD)
             | st.builds(lambda s, fld, n: f"{s}.mode({fld}, {n})", stream(), FIELD, st.integers(1, 5)))
CONDITION = junctions(concat(NUMERIC_VALUE, NUMERIC_TAIL) | concat(ANY_VALUE, ANY_TAIL)
                      | quoted().map(lambda q: f"trait({q})"), max_leaves=3)
AUDIENCE_RULE = CONDITION
COMPUTED_TRAIT_RULE = NUMERIC_VALUE | ANY_VALUE | FIELD.map(lambda f: f"event('A').unique({f})")

# Pieces that mutations insert: the language's own tokens, so that mutants get past the lexer and
# reach the parser and the type check.
TOKENS = st.sampled_from([
    "(", ")", ".", ",", "[", "]", "'", '"', "\\", " ", "\n", "=", "!=", ">=", "<", "AND", "OR", "NOT", " AND ",
    " OR ", "NOT ", "event('A')", "trait('t')", "property('p')", "context('c.d')", "literal(1)", ".count()",
    ".sum(property('p'))", ".mode(property('p'), 2)", ".unique(property('p'))", ".where(property('p') = 1)",
    ".within(3 days)", ".between(1 day, 2 days)", ".is_set()", ".one_of(['a'])", ".within_last(2 hours)",
    ".before_date('2024-01-01')", "3", "-1", "1.5", "1e999", "99999999999999999999", "0 days", "true", "null",
    "[]", "cout", "whre", "within_next", "days", "hours", "\t", "\x00", "é", "&&",
])


@st.composite
def mutated(draw, rule):
    text = draw(rule)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        end = draw(st.integers(at, min(len(text), at + 12)))
        edit = draw(st.sampled_from(["delete", "insert", "replace", "duplicate", "truncate"]))
        if edit == "delete":
            text = text[:at] + text[end:]
        elif edit == "insert":
            text = text[:at] + draw(TOKENS | st.text(max_size=3)) + text[at:]
        elif edit == "replace":
            text = text[:at] + draw(TOKENS) + text[end:]
        elif edit == "duplicate":
            text = text[:end] + text[at:end] + text[end:]
        else:
            text = text[:at]
    return text


@VALID
@given(AUDIENCE_RULE)
def test_generated_audience_rules_parse_and_read_back_the_same(text):
    tree = parse_rule(text, "audience")
    assert tree.type is ValueType.CONDITION
    assert parse_rule(to_text(tree), "audience") == tree


@VALID
@given(COMPUTED_TRAIT_RULE)
def test_generated_computed_trait_rules_parse_and_read_back_the_same(text):
    tree = parse_rule(text, "computed_trait")
    assert tree.type is not ValueType.CONDITION
    assert parse_rule(to_text(tree), "computed_trait") == tree


@FUZZ
@given(st.one_of(mutated(AUDIENCE_RULE), mutated(COMPUTED_TRAIT_RULE)), st.sampled_from(KINDS))
def test_mutated_rules_give_a_tree_or_a_rule_error(text, kind):
    check(text, kind)


@FUZZ
@given(st.lists(TOKENS, max_size=12).map("".join), st.sampled_from(KINDS))
def test_token_soup_gives_a_tree_or_a_rule_error(text, kind):
    check(text, kind)


@FUZZ
@given(st.text(max_size=60), st.sampled_from(KINDS))
def test_any_text_gives_a_tree_or_a_rule_error(text, kind):
    check(text, kind)
