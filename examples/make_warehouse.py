"""Builds examples/warehouse.db, the small SQLite "warehouse" the bundled example syncs from.

Deterministic (fixed seed, fixed dates): `python examples/make_warehouse.py` rebuilds the same file.
The data ends on 2026-11-01, the example's fixed "today", so the example's results do not drift.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import date, timedelta
from pathlib import Path

TODAY = date(2026, 11, 1)
COUNTRIES = ["US", "GB", "FR", "DE", "BR", "JP"]
PLANS = ["free", "pro", "team"]


def build(path: Path) -> None:
    rng = random.Random(20261101)
    path.unlink(missing_ok=True)
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE users (user_id TEXT PRIMARY KEY, email TEXT NOT NULL, country TEXT, plan TEXT,
                            signed_up_on TEXT NOT NULL);
        CREATE TABLE orders (order_id INTEGER PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(user_id),
                             completed_on TEXT NOT NULL, total REAL NOT NULL);
    """)
    for n in range(1, 51):
        user_id = f"user-{n:04d}"
        signed_up = TODAY - timedelta(days=rng.randint(40, 700))
        db.execute("INSERT INTO users VALUES (?, ?, ?, ?, ?)",
                   (user_id, f"customer{n}@example.com", rng.choice(COUNTRIES), rng.choice(PLANS),
                    signed_up.isoformat()))
        for _ in range(rng.choice([0, 0, 1, 2, 3, 5])):
            completed = TODAY - timedelta(days=rng.randint(0, 120))
            db.execute("INSERT INTO orders (user_id, completed_on, total) VALUES (?, ?, ?)",
                       (user_id, completed.isoformat(), round(rng.uniform(9, 240), 2)))
    db.commit()
    db.close()


if __name__ == "__main__":
    target = Path(__file__).with_name("warehouse.db")
    build(target)
    print(f"wrote {target}")
