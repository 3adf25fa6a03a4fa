"""The compiler's table of cases: each (event set, rule, expected members or values) runs on every
layout and database of tests/rules/conftest.py COMBINATIONS, for real.

A case is a row of CASES; the event sets are EVENT_SETS. To add a case, add a row (and, if it needs
events no set has, a set). Expected values: members as a set of user ids (or of (user_id,
anonymous_id) with include_anonymous); computed traits as {user_id: value}.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
import sqlalchemy as sa

from audsync.rules import parse_rule
from audsync.rules.compile import compile_rule

from .conftest import AS_OF, COMBINATIONS


def track(event, user=None, anon=None, ago=1, mid=None, **properties):
    return {"type": "track", "event": event, "userId": user, "anonymousId": anon, "ago": ago,
            "messageId": mid, "properties": properties}


def identify(user=None, anon=None, ago=50, mid=None, **traits):
    return {"type": "identify", "userId": user, "anonymousId": anon, "ago": ago, "messageId": mid,
            "traits": traits}


def page(name, user=None, ago=1, url=None, **properties):
    return {"type": "page", "name": name, "userId": user, "ago": ago, "properties": properties,
            "context": {"page": {"url": url}} if url else {}}


SHOP = [
    track("Order Completed", "u1", total=150, plan="pro", ago=2),
    track("Order Completed", "u1", total=120, plan="pro", ago=10),
    track("Order Completed", "u1", total=300, plan="free", ago=40),
    identify("u1", email="a@x.com", plan="pro"),
    track("Order Completed", "u2", total=50, ago=1, mid="dup-1"),
    track("Order Completed", "u2", total=50, ago=1, mid="dup-1"),  # a warehouse's duplicate
    *[track("Product Viewed", "u2", category=c, ago=3) for c in ("shoes", "hats") * 3],
    identify("u2", email="B@X.COM", plan="free"),
    identify("u3", plan="pro", ago=60),
    identify("u3", plan="enterprise", signup_date="2025-12-25T00:00:00Z", ago=20),
    track("Order Completed", None, "a9", total=500, ago=3),          # later identified as u4
    identify("u4", "a9", ago=2),
    track("Order Completed", None, "a7", total=80, ago=5),           # anonymous only
    page("Pricing", "u5", ago=1, url="https://x.com/pricing"),
    page("Home", "u5", ago=60, url="https://x.com/"),
    track("Product Viewed", None, "a8", category="shoes", ago=2),    # aliased to u6
    {"type": "alias", "userId": "u6", "previousId": "a8", "ago": 1},
    identify("u8", "a10", ago=20),
    identify("u9", "a10", ago=5),                                    # the latest link of a10
    track("Signed Up", None, "a10", ago=1),
    track("Order Completed", "u10", total=200, ago=timedelta(days=30)),   # the window's edge
    track("Order Completed", "u11", total=999, ago=-1),              # after as_of: not yet
    track("Order Completed", "u12", total=10, gift=True, ago=4),
]
# Traits read for the members of another audience only: an identify with only an anonymous id
# still counts for the member it is linked to.
PLANS = [
    identify("u1", plan="pro", ago=10),
    identify("u2", "a2", plan="free", ago=10),
    identify(None, "a2", plan="pro", ago=5),           # u2's latest plan, through a2's link
    identify("u3", plan="pro", ago=10),
    identify("u3", plan="free", ago=3),
    identify("u4", plan="pro", ago=10),                # not in the audience read
    identify("u5", "a5", plan="free", ago=10),
    identify(None, "a5", plan="pro", ago=5),           # u5 is not in it either
    track("Order Completed", None, "a2", total=20, ago=1),
]
EVENT_SETS = {"shop": SHOP, "plans": PLANS}

KNOWN = {"u1", "u2", "u3", "u4", "u5", "u6", "u8", "u9", "u10", "u12"}
ORDERED = {"u1", "u2", "u4", "u10", "u12"}


@dataclass
class Case:
    rule: str
    expected: object
    kind: str = "audience"
    events: str = "shop"
    include_anonymous: bool = False
    audiences: dict = field(default_factory=dict)
    warning: str | None = None

    def id(self):
        return self.rule[:90]


CASES = [
    # counts, windows, property filters
    Case("event('Order Completed').where(property('total') > 100).within(30 days).count() >= 1",
         {"u1", "u4", "u10"}),
    Case("event('Order Completed').within(30 days).count() >= 2", {"u1"}),
    Case("event('Order Completed').within(30 days).count() = 1", {"u2", "u4", "u10", "u12"}),
    Case("event('Order Completed').within(29 days).count() >= 1", {"u1", "u2", "u4", "u12"}),
    Case("event('Order Completed').between(7 days, 35 days).count() >= 1", {"u1", "u10"}),
    Case("event('Order Completed').within(720 hours).where(property('total') <= 50).count() >= 1",
         {"u2", "u12"}),
    Case("event('Order Completed').where(property('total') = 999).count() >= 1", set()),
    Case("event('Order Completed').where(property('gift') = true).count() >= 1", {"u12"}),
    Case("event('Order Completed').where(property('total').one_of([50, 10])).count() >= 1", {"u2", "u12"}),
    Case("event('Order Completed').where(property('plan') = 'pro' AND NOT (property('total') < 130))"
         ".count() >= 1", {"u1"}),
    Case("event('Product Viewed').where(property('category').omits('sho')).count() >= 3", {"u2"}),
    # profiles without events
    Case("NOT (event('Order Completed').count() >= 1)", KNOWN - ORDERED),
    Case("event('Order Completed').count() = 0", KNOWN - ORDERED),
    Case("event('Product Viewed').count() <= 0", KNOWN - {"u2", "u6"}),
    # identity
    Case("event('Signed Up').count() >= 1", {"u9"}),
    Case("event('Product Viewed').where(property('category') = 'shoes').count() = 1", {"u6"}),
    Case("event('Order Completed').within(30 days).count() >= 1",
         {("u1", None), ("u2", None), ("u4", None), ("u10", None), ("u12", None), (None, "a7")},
         include_anonymous=True),
    # pages and context
    Case("event('Page Viewed').where(context('page.url').contains('pricing')).count() >= 1", {"u5"}),
    Case("event('Page Viewed').within(7 days).count() >= 1", {"u5"}),
    Case("event('Page Viewed').where(property('page_name') = 'Pricing').count() >= 1", {"u5"}),
    Case("event('Page Viewed').where(property('name') = 'Home').within(30 days).count() >= 1", set()),
    Case("event('Page Viewed').last(property('name'))", {"u5": "Pricing"}, kind="computed_trait"),
    Case("event('Page Viewed').unique(property('page_name'))", {"u5": ["Home", "Pricing"]},
         kind="computed_trait"),
    # traits
    Case("trait('plan') = 'pro'", {"u1"}),
    Case("trait('plan') != 'pro'", {"u2", "u3"}),
    Case("NOT (trait('plan') = 'pro')", KNOWN - {"u1"}),
    Case("trait('plan').is_null()", KNOWN - {"u1", "u2", "u3"}),
    Case("trait('plan').one_of(['free', 'enterprise'])", {"u2", "u3"}),
    Case("trait('email').ends_with('@x.com')", {"u1"}),
    Case("trait('email').contains('X.C')", {"u2"}),
    Case("trait('email').contains_one(['zz', 'a@'])", {"u1"}),
    Case("trait('email').starts_with('B@')", {"u2"}),
    Case("trait('signup_date').before_date('2026-01-01T00:00:00Z')", {"u3"}),
    Case("trait('signup_date').after_date('2026-01-01T00:00:00Z')", set()),
    Case("trait('signup_date').within_last(40 days)", {"u3"}),
    Case("trait('signup_date').before_last(30 days)", {"u3"}),
    # combinations
    Case("event('Order Completed').within(30 days).count() >= 1 AND NOT (trait('plan') = 'free')",
         {"u1", "u4", "u10", "u12"}),
    Case("trait('plan') = 'enterprise' OR event('Product Viewed').count() >= 1", {"u2", "u3", "u6"}),
    Case("event('Order Completed').sum(property('total')) > 400", {"u1", "u4"}),
    Case("event('Order Completed').avg(property('total')) < 60", {"u2", "u12"}),
    Case("event('Product Viewed').unique(property('category')).count() >= 2", {"u2"}),
    Case("event('Product Viewed').mode(property('category'), 2) = 'hats'", {"u2"}),
    Case("event('Order Completed').last(property('total')) >= 200", {"u4", "u10"}),
    # other audiences
    Case("trait('vip') AND event('Order Completed').count() >= 1", {"u1"}, audiences={"vip": ["u1", "u3"]}),
    Case("NOT trait('vip')", KNOWN - {"u1", "u3"}, audiences={"vip": ["u1", "u3"]}),
    Case("trait('vip') AND trait('plan') = 'pro'", {"u1", "u2"}, events="plans",
         audiences={"vip": ["u1", "u2", "u3"]}),
    Case("trait('vip') AND trait('plan') = 'pro'", {("u1", None), ("u2", None)}, events="plans",
         include_anonymous=True, audiences={"vip": ["u1", "u2", "u3"]}),
    Case("trait('vip') AND NOT (trait('plan') = 'pro') AND event('Order Completed').count() >= 1", set(),
         events="plans", audiences={"vip": ["u1", "u2", "u3"]}),
    # a count compared only as "any or none", and one whose duplicate message must count once
    Case("event('Order Completed').count() >= 1 AND NOT (event('Product Viewed').count() > 0)",
         ORDERED - {"u2"}),
    Case("event('Order Completed').within(30 days).count() >= 1 AND event('Order Completed').within(30 days)"
         ".count() <= 1", {"u2", "u4", "u10", "u12"}),
    # an event no table holds
    Case("event('Never Happened').count() >= 1", set(), warning="Never Happened"),
    Case("event('Never Happened').count() = 0", KNOWN, warning="Never Happened"),
    # computed traits
    Case("event('Order Completed').within(30 days).count()",
         {"u1": 2, "u2": 1, "u4": 1, "u10": 1, "u12": 1}, kind="computed_trait"),
    Case("event('Order Completed').sum(property('total'))",
         {"u1": 570, "u2": 50, "u4": 500, "u10": 200, "u12": 10}, kind="computed_trait"),
    Case("event('Order Completed').within(30 days).avg(property('total'))",
         {"u1": 135, "u2": 50, "u4": 500, "u10": 200, "u12": 10}, kind="computed_trait"),
    Case("event('Order Completed').min(property('total'))",
         {"u1": 120, "u2": 50, "u4": 500, "u10": 200, "u12": 10}, kind="computed_trait"),
    Case("event('Order Completed').max(property('total'))",
         {"u1": 300, "u2": 50, "u4": 500, "u10": 200, "u12": 10}, kind="computed_trait"),
    Case("event('Product Viewed').mode(property('category'), 2)", {"u2": "hats"}, kind="computed_trait"),
    Case("event('Order Completed').first(property('total'))",
         {"u1": 300, "u2": 50, "u4": 500, "u10": 200, "u12": 10}, kind="computed_trait"),
    Case("event('Order Completed').last(property('plan'))", {"u1": "pro"}, kind="computed_trait"),
    Case("event('Product Viewed').unique(property('category'))",
         {"u2": ["hats", "shoes"], "u6": ["shoes"]}, kind="computed_trait"),
    Case("event('Product Viewed').unique(property('category')).count()", {"u2": 2, "u6": 1},
         kind="computed_trait"),
    Case("trait('plan')", {"u1": "pro", "u2": "free", "u3": "enterprise"}, kind="computed_trait"),
    Case("event('Order Completed').within(30 days).last(property('total'))",
         {("u1", None): 150, ("u2", None): 50, ("u4", None): 500, ("u10", None): 200, ("u12", None): 10,
          (None, "a7"): 80}, kind="computed_trait", include_anonymous=True),
    Case("NOT (event('Order Completed').count() >= 1)",
         {("u3", None), ("u5", None), ("u6", None), ("u8", None), ("u9", None)}, include_anonymous=True),
]


def _members_table(members):
    rows = [sa.select(sa.literal(m, sa.String()).label("user_id")) for m in members]
    return sa.union_all(*rows).subquery()


def run_case(engine, warehouse, case: Case):
    tree = parse_rule(case.rule, case.kind)
    audiences = {k: _members_table(v) for k, v in case.audiences.items()}
    compiled = compile_rule(tree, kind=case.kind, warehouse=warehouse, as_of=AS_OF,
                            include_anonymous=case.include_anonymous, audiences=audiences)
    with engine.connect() as conn:
        rows = conn.execute(compiled.query).mappings().all()
    return compiled, rows


def _normal(value, value_json):
    if value_json and isinstance(value, str):
        value = json.loads(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    try:
        return float(value) if type(value).__name__ == "Decimal" else value
    except (TypeError, ValueError):
        return value


@pytest.mark.parametrize("database,layout", COMBINATIONS)
@pytest.mark.parametrize("case", CASES, ids=Case.id)
def test_case_gives_the_expected_members_or_values(warehouses, database, layout, case):
    engine, warehouse = warehouses.get(database, layout, case.events, EVENT_SETS[case.events])
    compiled, rows = run_case(engine, warehouse, case)
    if case.kind == "audience":
        if case.include_anonymous:
            got = {(r["user_id"], r["anonymous_id"]) for r in rows}
        else:
            got = {r["user_id"] for r in rows}
        assert len(rows) == len(got), "a member appears twice"
        assert got == case.expected
    else:
        got = {((r["user_id"], r["anonymous_id"]) if case.include_anonymous else r["user_id"]):
               _normal(r["value"], compiled.value_json) for r in rows}
        expected = {k: _normal(v, False) for k, v in case.expected.items()}
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            if isinstance(value, float):
                assert math.isclose(got[key], value), key
            else:
                assert got[key] == value, key
    if case.warning and warehouse.tables is not None:
        assert any(case.warning in w for w in compiled.warnings), compiled.warnings
    elif not case.warning:
        assert compiled.warnings == ()
