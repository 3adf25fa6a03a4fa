"""The bundled example: its data is what config.example.toml's three sources read, rebuilt exactly."""

from __future__ import annotations

import importlib.util
import sqlite3
from pathlib import Path

from audsync.config import load
from audsync.sources import open_source

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def members(config, name: str) -> list[tuple]:
    source = open_source(config.audience(name), min_id_length=config.amplitude.min_id_length)
    rows = [row for chunk in source.chunks() for row in chunk]
    assert not source.skipped, f"the example's {name} source should be clean"
    return rows


def test_example_config_sources_read_the_bundled_data():
    config = load(ROOT / "config.example.toml")
    recent = members(config, "Order Completed Last 30days")
    newsletter = members(config, "Newsletter Subscribers")
    value = members(config, "Lifetime Value")
    assert len(recent) == 20 and all(u.startswith("user-") and a is None for u, a, _ in recent)
    assert len(newsletter) == 33 and sum(u is None for u, _, _ in newsletter) == 4
    assert ("user-0002", None, None) in newsletter  # README's walkthrough removes this member
    assert len(value) == 30 and all(isinstance(v, (int, float)) and v > 0 for _, _, v in value)


def test_make_warehouse_rebuilds_the_committed_database_exactly(tmp_path):
    spec = importlib.util.spec_from_file_location("make_warehouse", EXAMPLES / "make_warehouse.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build(tmp_path / "warehouse.db")
    rebuilt = list(sqlite3.connect(tmp_path / "warehouse.db").iterdump())
    committed = list(sqlite3.connect(f"file:{EXAMPLES / 'warehouse.db'}?mode=ro", uri=True).iterdump())
    assert rebuilt == committed
