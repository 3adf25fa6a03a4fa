"""The bundled example's rule sources (README: Rule audiences): examples/events.db is rebuilt exactly by
examples/make_warehouse.py, and config.example.toml's rules over it give what the shop's own data says
(the orders of examples/warehouse.db, counted independently here)."""

from __future__ import annotations

import importlib.util
import sqlite3
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from audsync.config import load
from audsync.sources import open_source

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
# After the example data's last day (2026-11-01), as every run from now on is.
AS_OF = datetime(2026, 12, 1, tzinfo=timezone.utc)


def rows_of(config, name: str, as_of=AS_OF) -> list[tuple]:
    source = open_source(config.audience(name), min_id_length=config.amplitude.min_id_length, config=config,
                         as_of=as_of)
    rows = [row for chunk in source.chunks() for row in chunk]
    assert not source.skipped, f"the example's {name} source should be clean"
    return rows


def test_make_warehouse_rebuilds_the_committed_events_database_exactly(tmp_path):
    spec = importlib.util.spec_from_file_location("make_warehouse", EXAMPLES / "make_warehouse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build_events(tmp_path / "events.db")
    rebuilt = list(sqlite3.connect(tmp_path / "events.db").iterdump())
    committed = list(sqlite3.connect(f"file:{EXAMPLES / 'events.db'}?mode=ro", uri=True).iterdump())
    assert rebuilt == committed


def test_the_example_rule_audience_is_the_users_with_two_orders_over_100():
    warehouse = sqlite3.connect(f"file:{EXAMPLES / 'warehouse.db'}?mode=ro", uri=True)
    expected = {user for (user,) in warehouse.execute(
        "SELECT user_id FROM orders WHERE total > 100 GROUP BY user_id HAVING COUNT(*) >= 2")}
    members = rows_of(load(ROOT / "config.example.toml"), "Big Spenders")
    assert len(members) == len(expected) == 15  # README's walkthrough quotes this count
    assert {user for user, _, _ in members} == expected  # the duplicated order row counts once


def test_the_example_rule_audience_as_of_an_earlier_day_reads_only_the_events_before_it():
    warehouse = sqlite3.connect(f"file:{EXAMPLES / 'warehouse.db'}?mode=ro", uri=True)
    expected = {user for (user,) in warehouse.execute(
        "SELECT user_id FROM orders WHERE total > 100 AND completed_on < '2026-10-01' "
        "GROUP BY user_id HAVING COUNT(*) >= 2")}
    members = rows_of(load(ROOT / "config.example.toml"), "Big Spenders",
                      as_of=datetime(2026, 10, 1, tzinfo=timezone.utc))
    assert {user for user, _, _ in members} == expected and len(expected) == 7  # README quotes it


def test_the_example_computed_trait_is_each_profiles_category_seen_twice_anonymous_visitors_included():
    events = sqlite3.connect(f"file:{EXAMPLES / 'events.db'}?mode=ro", uri=True)
    links = dict(events.execute("SELECT anonymous_id, user_id FROM identifies"))
    views: dict[tuple, Counter] = {}
    for user, anonymous, category in events.execute("SELECT user_id, anonymous_id, category FROM product_viewed"):
        user = user or links.get(anonymous)
        views.setdefault((user, None if user else anonymous), Counter())[category] += 1
    expected = {}
    for profile, counts in views.items():
        top = max(counts.values())
        if top >= 2:
            expected[profile] = min(c for c, n in counts.items() if n == top)
    values = {(user, anonymous): value for user, anonymous, value in
              rows_of(load(ROOT / "config.example.toml"), "Favorite Category")}
    assert values == expected
    assert values[(None, "anon-9001")] == values[(None, "anon-9002")] == "hats"
