"""Builds the bundled example's data: examples/warehouse.db, the small SQLite "warehouse" the SQL
sources read, and examples/events.db, the same shop's events as Segment Warehouses loads them, which
the rule sources read (layout "segment").

Deterministic (fixed seeds, fixed dates): `python examples/make_warehouse.py` rebuilds the same files.
The data ends on 2026-11-01, the example's fixed "today", so the example's results do not drift.

events.db holds Segment's tables (reference/segment-warehouse-schema.md): `identifies` (one per user,
with the anonymous id of their visits before signing up), `users`, `tracks` (every track call),
`order_completed` (one row per order of warehouse.db, with `order_id` and `total`; one message is
loaded twice, as a warehouse can hold duplicates), `product_viewed` (`category`; some views are
anonymous, before the visitor signed up, and two visitors never sign up) and `pages`. Timestamps are
UTC in SQLAlchemy's SQLite text form (YYYY-MM-DD HH:MM:SS.ffffff), which rule queries compare with.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import date, datetime, time, timedelta
from pathlib import Path

TODAY = date(2026, 11, 1)
COUNTRIES = ["US", "GB", "FR", "DE", "BR", "JP"]
PLANS = ["free", "pro", "team"]
CATEGORIES = ["bags", "hats", "shoes", "socks"]


def _shop() -> tuple[list[tuple], list[tuple]]:
    """The users (user_id, email, country, plan, signed_up_on) and orders (order_id, user_id,
    completed_on, total) of the example shop."""
    rng = random.Random(20261101)
    users, orders = [], []
    for n in range(1, 51):
        user_id = f"user-{n:04d}"
        signed_up = TODAY - timedelta(days=rng.randint(40, 700))
        users.append((user_id, f"customer{n}@example.com", rng.choice(COUNTRIES), rng.choice(PLANS),
                      signed_up.isoformat()))
        for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
            completed = TODAY - timedelta(days=rng.randint(0, 120))
            orders.append((len(orders) + 1, user_id, completed.isoformat(), round(rng.uniform(9, 240), 2)))
    return users, orders


def build(path: Path) -> None:
    users, orders = _shop()
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE users (user_id TEXT PRIMARY KEY, email TEXT NOT NULL, country TEXT, plan TEXT,
                            signed_up_on TEXT NOT NULL);
        CREATE TABLE orders (order_id INTEGER PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(user_id),
                             completed_on TEXT NOT NULL, total REAL NOT NULL);
    """)
    db.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?)", users)
    db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", orders)
    db.commit()
    db.close()


_COMMON = "id TEXT, anonymous_id TEXT, user_id TEXT, timestamp TIMESTAMP, received_at TIMESTAMP"


def _stamp(day: date, rng: random.Random) -> str:
    return datetime.combine(day, time(rng.randint(8, 21), rng.randint(0, 59))).strftime("%Y-%m-%d %H:%M:%S.%f")


def build_events(path: Path) -> None:
    users, orders = _shop()
    rng = random.Random(20261102)
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.executescript(f"""
        CREATE TABLE identifies ({_COMMON}, email TEXT, plan TEXT, country TEXT);
        CREATE TABLE users (id TEXT, received_at TIMESTAMP, email TEXT, plan TEXT, country TEXT);
        CREATE TABLE tracks ({_COMMON}, event TEXT, event_text TEXT);
        CREATE TABLE order_completed ({_COMMON}, event TEXT, event_text TEXT, order_id INTEGER, total REAL);
        CREATE TABLE product_viewed ({_COMMON}, event TEXT, event_text TEXT, category TEXT);
        CREATE TABLE pages ({_COMMON}, name TEXT, path TEXT, url TEXT, context_page_url TEXT);
    """)
    ids = iter(range(1, 100_000))

    def track(table: str, event: str, anonymous_id: str | None, user_id: str | None, stamp: str, **props) -> None:
        row = (f"{table}-{next(ids):05d}", anonymous_id, user_id, stamp, stamp, table, event)
        db.execute("INSERT INTO tracks VALUES (?, ?, ?, ?, ?, ?, ?)", row)
        db.execute(f"INSERT INTO {table} VALUES ({', '.join('?' * (len(row) + len(props)))})", row + tuple(props.values()))

    for n, (user_id, email, country, plan, signed_up_on) in enumerate(users, 1):
        anonymous_id = f"anon-{n:04d}"
        signed_up = date.fromisoformat(signed_up_on)
        stamp = _stamp(signed_up, rng)
        db.execute("INSERT INTO identifies VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                   (f"identify-{n:04d}", anonymous_id, user_id, stamp, stamp, email, plan, country))
        db.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?)", (user_id, stamp, email, plan, country))
        # Visits before signing up are anonymous: the identify above links them to the user.
        for _ in range(rng.choice([0, 1, 2])):
            day = signed_up - timedelta(days=rng.randint(1, 10))
            track("product_viewed", "Product Viewed", anonymous_id, None, _stamp(day, rng),
                  category=rng.choice(CATEGORIES))
        favourite = rng.choice(CATEGORIES)
        for _ in range(rng.choice([0, 1, 2, 3, 4, 6])):
            day = TODAY - timedelta(days=rng.randint(0, 120))
            category = favourite if rng.random() < 0.6 else rng.choice(CATEGORIES)
            track("product_viewed", "Product Viewed", anonymous_id, user_id, _stamp(day, rng), category=category)
        for _ in range(rng.choice([0, 1, 2])):
            day = TODAY - timedelta(days=rng.randint(0, 60))
            page = rng.choice(["Pricing", "Home"])
            path_ = "/pricing" if page == "Pricing" else "/"
            stamp = _stamp(day, rng)
            db.execute("INSERT INTO pages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (f"pages-{next(ids):05d}", anonymous_id, user_id, stamp, stamp, page, path_,
                        f"https://shop.example{path_}", f"https://shop.example{path_}"))
    for order_id, user_id, completed_on, total in orders:
        track("order_completed", "Order Completed", None, user_id, _stamp(date.fromisoformat(completed_on), rng),
              order_id=order_id, total=total)
    # A warehouse can load a message twice (Segment dedupes on the message id, not always): rules
    # count distinct ids, so this copy of the first order changes nothing.
    db.execute("INSERT INTO order_completed SELECT * FROM order_completed ORDER BY order_id LIMIT 1")
    db.execute("INSERT INTO tracks SELECT * FROM tracks WHERE id = (SELECT id FROM order_completed "
               "ORDER BY order_id LIMIT 1)")
    # Two visitors who never signed up: members only of an audience with include_anonymous = true.
    for n in (9001, 9002):
        for category in ("hats", "hats", "bags"):
            day = TODAY - timedelta(days=rng.randint(0, 20))
            track("product_viewed", "Product Viewed", f"anon-{n}", None, _stamp(day, rng), category=category)
    db.commit()
    db.close()


if __name__ == "__main__":
    here = Path(__file__).parent
    build(here / "warehouse.db")
    build_events(here / "events.db")
    print(f"wrote {here / 'warehouse.db'} and {here / 'events.db'}")
