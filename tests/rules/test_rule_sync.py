"""Rule audiences end to end over the events store of `audsync serve` (the "audsync" layout): events
stored as serve stores them, `audsync run` on SQLite and PostgreSQL against the loopback fake
Amplitude, windows measured back from the run's start (freezegun) or from --as-of in a dry run."""

from __future__ import annotations

import json
import textwrap
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from freezegun import freeze_time

from audsync.cli import main
from audsync.state import StateStore, migrate
from audsync.state.ingest import IngestLog

API_KEY = "test-api-key-123"
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=timezone.utc)
RECENT = "event('Order Completed').within(7 days).count() >= 1"


@pytest.fixture(scope="module", autouse=True)
def imported_before_freezing(tmp_path_factory):
    """Runs every path of a run once, unfrozen: a C extension (pandas, pyarrow...) first imported
    under freeze_time takes freezegun's datetime for the real one, which can crash the interpreter."""
    directory = tmp_path_factory.mktemp("warm")
    (directory / "members.csv").write_text("user_id\nuser-0001\n")
    config = directory / "audsync.toml"
    config.write_text(f'[state]\nurl = "sqlite:///{directory / "state.db"}"\n'
                      f'[amplitude]\napi_key = "{API_KEY}"\nendpoint = "file:{directory / "sent.jsonl"}"\n'
                      + rule_audience("Rule", "trait('file') AND event('A').within(1 days).count() >= 1")
                      + rule_audience("Value", "event('A').sum(property('total'))", kind="computed_trait")
                      + rule_audience("File", "", file="members.csv"))
    assert main(["run", "--config", str(config)]) == 0
    assert main(["status", "--config", str(config)]) == 0


def order(user_id: str, at: datetime, total: float = 10.0, event: str = "Order Completed") -> dict:
    """A track message as serve stores it: validated, with its messageId and receivedAt."""
    return {"type": "track", "event": event, "userId": user_id, "messageId": str(uuid.uuid4()),
            "timestamp": at.isoformat(), "receivedAt": at.isoformat(), "properties": {"total": total}}


def store_events(state_url: str, messages: list[dict]) -> None:
    migrate.upgrade(state_url)
    with StateStore(state_url) as store:
        IngestLog(store).append([messages])


def write_config(tmp_path: Path, state_url: str, amplitude, audiences: str) -> str:
    path = tmp_path / "audsync.toml"
    path.write_text(textwrap.dedent(f'''
        [state]
        url = "{state_url}"
        [amplitude]
        api_key = "{API_KEY}"
        endpoint = "{amplitude.url}"
        [delivery]
        max_attempts = 2
        backoff_initial_s = 0.01
        backoff_max_s = 0.02
        timeout_s = 5
        [events]
        layout = "audsync"
    ''') + textwrap.dedent(audiences))
    return str(path)


def rule_audience(name: str, rule: str, kind: str = "audience", file: str | None = None) -> str:
    source = f'{{ type = "file", path = "{file}" }}' if file else f'{{ type = "rule", rule = "{rule}" }}'
    return f'\n[[audiences]]\nname = "{name}"\nkind = "{kind}"\nsource = {source}\n'


def sent(amplitude) -> dict[str, dict]:
    """user id -> the user properties of the identifies Amplitude got (then cleared)."""
    got: dict[str, dict] = {}
    for item in amplitude.identifies:
        got.setdefault(amplitude.who(item), {}).update(item["user_properties"])
    amplitude.clear()
    return got


def run(*args: str) -> int:
    return main(["run", "--config", *args])


def test_a_rule_audience_enters_users_then_sends_false_when_their_events_age_out(tmp_path, state_url, amplitude,
                                                                                  capsys):
    store_events(state_url, [
        order("user-0001", T0 - timedelta(days=1)),
        order("user-0002", T0 - timedelta(days=5)),
        order("user-0003", T0 - timedelta(days=20)),        # before the window already
        order("user-0004", T0 - timedelta(days=1), event="Product Viewed"),
    ])
    config = write_config(tmp_path, state_url, amplitude, rule_audience("Recent Buyers", RECENT))
    with freeze_time(T0, tick=True):
        assert run(config) == 0
    assert sent(amplitude) == {"user-0001": {"recent_buyers": True}, "user-0002": {"recent_buyers": True}}

    with freeze_time(T0 + timedelta(days=1), tick=True):
        assert run(config) == 0
    assert sent(amplitude) == {}  # nobody's events aged out yet: nothing to send

    # Three days on, user-0002's order is 8 days old: out at this first run after it aged out.
    with freeze_time(T0 + timedelta(days=3), tick=True):
        assert run(config) == 0
    assert sent(amplitude) == {"user-0002": {"recent_buyers": False}}
    assert amplitude.properties["user-0001"] == {"recent_buyers": True}

    capsys.readouterr()
    assert main(["status", "--config", config, "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["audiences"]
    assert (entry["rule"], entry["members"]) == (RECENT, 1)
    assert main(["status", "--config", config]) == 0
    assert f"  rule: {RECENT}\n" in capsys.readouterr().out


def test_dry_run_as_of_evaluates_rules_at_that_instant_and_sends_nothing(tmp_path, state_url, amplitude, capsys):
    store_events(state_url, [order("user-0001", T0 - timedelta(days=1)), order("user-0002", T0 - timedelta(days=5))])
    config = write_config(tmp_path, state_url, amplitude, rule_audience("Recent Buyers", RECENT))
    with freeze_time(T0, tick=True):
        assert run(config) == 0
    sent(amplitude)
    capsys.readouterr()
    # Real time is far past T0, when every order is out of the window; as of T0 + 3 days only
    # user-0002's is.
    as_of = (T0 + timedelta(days=3)).isoformat().replace("+00:00", "Z")
    assert run(config, "--dry-run", "--as-of", as_of) == 0
    out = capsys.readouterr().out
    assert "recent_buyers: 1 read, +0 entered, -1 exited" in out
    sample = [json.loads(line) for line in out.splitlines() if line.startswith("  {")]
    assert [(change["change"], change["user_id"]) for change in sample] == [("exit", "user-0002")]
    assert sent(amplitude) == {}
    # A naive time is UTC, as in a rule's dates.
    assert run(config, "--dry-run", "--as-of", "2026-11-23T12:00:00") == 0
    assert "-1 exited" in capsys.readouterr().out


def test_as_of_without_dry_run_is_a_usage_error(tmp_path, sqlite_url, amplitude, capsys):
    config = write_config(tmp_path, sqlite_url, amplitude, rule_audience("Recent Buyers", RECENT))
    assert run(config, "--as-of", "2026-11-20T00:00:00Z") == 2
    assert "--as-of goes with --dry-run only" in capsys.readouterr().err
    assert amplitude.identifies == []
    with pytest.raises(SystemExit) as usage:
        run(config, "--dry-run", "--as-of", "last tuesday")
    assert usage.value.code == 2
    assert "'last tuesday' is not an ISO 8601 time" in capsys.readouterr().err


def test_a_computed_trait_rule_sends_its_values_and_unsets_them_when_the_window_empties(tmp_path, state_url,
                                                                                       amplitude):
    store_events(state_url, [
        order("user-0001", T0 - timedelta(days=1), total=100.25),
        order("user-0001", T0 - timedelta(days=2), total=50),
        order("user-0002", T0 - timedelta(days=6), total=7),
    ])
    config = write_config(tmp_path, state_url, amplitude, rule_audience(
        "Revenue 7 Days", "event('Order Completed').within(7 days).sum(property('total'))", kind="computed_trait"))
    with freeze_time(T0, tick=True):
        assert run(config) == 0
    assert sent(amplitude) == {"user-0001": {"revenue_7_days": 150.25}, "user-0002": {"revenue_7_days": 7}}
    # Five and a half days on, user-0001's older order and user-0002's only one are out.
    with freeze_time(T0 + timedelta(days=5, hours=12), tick=True):
        assert run(config) == 0
    assert sent(amplitude) == {"user-0002": {"$unset": {"revenue_7_days": "-"}},
                               "user-0001": {"revenue_7_days": 100.25}}


def test_part_of_audience_reads_other_audiences_run_first_whatever_their_source(tmp_path, state_url, amplitude):
    store_events(state_url, [
        order("user-0001", T0 - timedelta(days=1)),
        order("user-0002", T0 - timedelta(days=1)),
        order("user-0003", T0 - timedelta(days=1)),
        order("user-0001", T0 - timedelta(days=1), event="Login"),
        order("user-0002", T0 - timedelta(days=1), event="Login"),
        order("user-0004", T0 - timedelta(days=1), event="Login"),
    ])
    (tmp_path / "newsletter.csv").write_text("user_id\nuser-0001\nuser-0003\nuser-0004\n")
    # Written before the audiences they read: the run syncs those first.
    config = write_config(tmp_path, state_url, amplitude,
                          rule_audience("Engaged Buyers", "trait('recent_buyers') AND event('Login').count() >= 1")
                          + rule_audience("Subscribed Buyers", "trait('recent_buyers') AND trait('newsletter')")
                          + rule_audience("Recent Buyers", RECENT)
                          + rule_audience("Newsletter", "", file="newsletter.csv"))
    with freeze_time(T0, tick=True):
        assert run(config) == 0
    got = sent(amplitude)
    engaged = {user for user, props in got.items() if props.get("engaged_buyers")}
    assert engaged == {"user-0001", "user-0002"}
    # "Newsletter" is a file audience: its members are read from the state database, synced
    # earlier in this run.
    subscribed = {user for user, props in got.items() if props.get("subscribed_buyers")}
    assert subscribed == {"user-0001", "user-0003"}
    assert amplitude.properties["user-0004"] == {"newsletter": True}


@pytest.mark.parametrize("database", ["sqlite", "duckdb", "postgresql"])
def test_rules_over_a_segment_warehouse_read_its_tables_and_warn_of_events_or_properties_without_one(
        tmp_path, amplitude, capsys, database, request):
    import sqlalchemy as sa

    from .conftest import AS_OF, load

    url = (request.getfixturevalue("pg_url") if database == "postgresql"
           else f"{database}:///{tmp_path / 'warehouse.db'}")
    engine = sa.create_engine(url)
    load(engine, "segment", None, [
        {"type": "track", "event": "Order Completed", "userId": "user-0001", "properties": {"total": 150}, "ago": 2},
        {"type": "track", "event": "Order Completed", "userId": "user-0001", "properties": {"total": 20}, "ago": 3},
        {"type": "track", "event": "Order Completed", "userId": "user-0002", "properties": {"total": 300}, "ago": 40},
    ])
    engine.dispose()
    config = write_config(tmp_path, f"sqlite:///{tmp_path / 'state.db'}", amplitude,
                          rule_audience("Big Spenders", "event('Order Completed').where(property('total') > 100)"
                                                        ".within(30 days).count() >= 1")
                          + rule_audience("Refunders", "event('Order Refunded').count() >= 1")
                          + rule_audience("Order Totals", "event('Order Completed').unique(property('total'))",
                                          kind="computed_trait")
                          + rule_audience("Coupon Users", "event('Order Completed').last(property('coupon')).is_set()"))
    config_text = Path(config).read_text().replace('layout = "audsync"', f'layout = "segment"\nurl = "{url}"')
    Path(config).write_text(config_text)
    with freeze_time(AS_OF, tick=True):
        assert run(config) == 0
    assert sent(amplitude) == {"user-0001": {"big_spenders": True, "order_totals": ["150", "20"]},
                               "user-0002": {"order_totals": ["300"]}}
    err = capsys.readouterr().err
    refunded = [line for line in err.splitlines() if "Order Refunded" in line]
    assert len(refunded) == 1 and 'audience "Refunders": ' in refunded[0], err
    # No order had a coupon, so the warehouse has no coupon column: null, and a warning.
    coupon = [line for line in err.splitlines() if "coupon" in line]
    assert len(coupon) == 1 and 'audience "Coupon Users": ' in coupon[0], err


def test_status_shows_a_rule_audiences_rule_and_none_for_other_sources(tmp_path, sqlite_url, amplitude):
    from audsync.config import load
    from audsync.status_report import format_status, status

    (tmp_path / "members.csv").write_text("user_id\nuser-0001\n")
    multi_line = "event('Order Completed').within(7 days).count() >= 1\n  AND trait('plan') = 'pro'"
    pro_buyers = f'\n[[audiences]]\nname = "Pro Buyers"\nsource = {{ type = "rule", rule = """{multi_line}""" }}\n'
    members = rule_audience("Members", "", file="members.csv")
    config = write_config(tmp_path, sqlite_url, amplitude, members + pro_buyers)
    entries = status(load(config, environ={}))
    assert [(e["name"], e["rule"]) for e in entries] == [("Members", None), ("Pro Buyers", multi_line)]
    text = format_status(entries)
    assert ("Pro Buyers (pro_buyers, audience)\n"
            "  rule: event('Order Completed').within(7 days).count() >= 1\n"
            "          AND trait('plan') = 'pro'\n") in text
    assert "rule:" not in text.split("Pro Buyers")[0]
