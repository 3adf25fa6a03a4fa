"""The response policy as one pure, table-tested function (issue 3 point 3)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from audsync.delivery import policy
from audsync.delivery.policy import FATAL, OK, REJECT, RETRY, SPLIT, THROTTLE, backoff, classify

ITEMS3 = [{"user_id": "alice-1"}, {"user_id": "bobby-2"}, {"device_id": "dev-carol"}]
ONE = [{"user_id": "alice-1"}]


def run(status, body=None, headers=None, items=ITEMS3, api="event", pause=30.0, batch=False):
    return classify(api, status, body, headers or {}, items, pause, batch)


# (rule, kwargs, expected action, extra checks on the decision)
CASES = [
    ("200_is_delivered", dict(status=200, body={"code": 200}), OK, {}),
    ("200_plain_text_success_on_identify", dict(status=200, body="success", api="identify"), OK, {}),
    ("400_invalid_fields_rejects_listed_indexes",
     dict(status=400, body={"error": "Invalid field values on some events",
                            "events_with_invalid_fields": {"time": [1]}}),
     REJECT, {"rejected_keys": {1}, "reason_contains": {1: ["time", "Invalid field values on some events"]}}),
    ("400_missing_fields_rejects_listed_indexes",
     dict(status=400, body={"error": "Invalid field values on some events",
                            "events_with_missing_fields": {"event_type": [0, 2]}}),
     REJECT, {"rejected_keys": {0, 2}, "reason_contains": {0: ["missing field", "event_type"]}}),
    ("400_invalid_id_lengths_rejects_listed_indexes",
     dict(status=400, body={"error": "Invalid id length for user_id or device_id",
                            "events_with_invalid_id_lengths": {"user_id": [2]}}),
     REJECT, {"rejected_keys": {2}, "reason_contains": {2: ["invalid id length", "Invalid id length"]}}),
    ("400_several_maps_reject_their_union",
     dict(status=400, body={"error": "x", "events_with_invalid_fields": {"a": [0]},
                            "events_with_missing_fields": {"b": [1]}}),
     REJECT, {"rejected_keys": {0, 1}}),
    ("400_one_error_text_not_quoted_on_items_of_another_map",
     dict(status=400, body={"error": "Invalid id length for user_id or device_id",
                            "events_with_invalid_id_lengths": {"user_id": [0]},
                            "events_with_invalid_fields": {"user_properties": [1]}}),
     REJECT, {"rejected_keys": {0, 1}, "reason_contains": {0: ["invalid id length: user_id"],
                                                          1: ["invalid field: user_properties"]},
              "rejected_lacks": {1: "Invalid id length"}}),
    ("400_silenced_events_rejected",
     dict(status=400, body={"error": "Events silenced for device_id", "silenced_events": [2]}),
     REJECT, {"rejected_keys": {2}, "reason_contains": {2: ["silenced"]}}),
    ("400_out_of_range_and_non_int_indexes_ignored",
     dict(status=400, body={"error": "x", "events_with_invalid_fields": {"a": [7, "1", -1, 0]}}),
     REJECT, {"rejected_keys": {0}}),
    ("400_invalid_api_key_is_fatal",
     dict(status=400, body={"code": 400, "error": "Invalid API key: secret-key-value"}),
     FATAL, {"reason_contains_all": ["API key", "amplitude.api_key"], "reason_lacks": "secret-key-value"}),
    ("400_missing_api_key_field_is_fatal",
     dict(status=400, body={"code": 400, "error": "Request missing required field", "missing_field": "api_key"}),
     FATAL, {}),
    ("400_naming_no_item_splits_to_find_the_bad_one",
     dict(status=400, body={"code": 400, "error": "Invalid event JSON"}), SPLIT, {}),
    ("400_naming_no_item_on_one_item_rejects_it_with_reason",
     dict(status=400, body={"code": 400, "error": "Invalid event JSON"}, items=ONE),
     REJECT, {"rejected_keys": {0}, "reason_contains": {0: ["Invalid event JSON"]}}),
    ("400_plain_text_body_on_identify_splits",
     dict(status=400, body="missing_event", api="identify"), SPLIT, {}),
    ("403_firewall_is_fatal", dict(status=403, body={"code": 403, "error": "Forbidden"}), FATAL,
     {"reason_contains_all": ["403"]}),
    ("413_splits_in_halves", dict(status=413, body={"code": 413, "error": "Payload too large"}), SPLIT, {}),
    ("413_on_one_item_rejects_it", dict(status=413, body={"code": 413}, items=ONE), REJECT,
     {"rejected_keys": {0}, "reason_contains": {0: ["413"]}}),
    ("429_pauses_only_throttled_events_30s_on_httpapi",
     dict(status=429, body={"error": "Too many requests for some devices and users",
                            "throttled_users": {"alice-1": 40}, "throttled_events": [0]}),
     THROTTLE, {"paused": [0], "pause_s": 30.0, "parked": {}}),
    ("429_pauses_15s_on_batch_endpoint",
     dict(status=429, body={"throttled_users": {"alice-1": 40}, "throttled_events": [0]}, batch=True),
     THROTTLE, {"paused": [0], "pause_s": 15.0}),
    ("429_pauses_15s_on_identify",
     dict(status=429, body={"throttled_users": {"alice-1": 40}}, api="identify"),
     THROTTLE, {"paused": [0], "pause_s": 15.0}),
    ("429_retry_after_wins",
     dict(status=429, body={"throttled_events": [1]}, headers={"Retry-After": "3"}),
     THROTTLE, {"paused": [1], "pause_s": 3.0}),
    ("429_retry_after_lowercase_header",
     dict(status=429, body={"throttled_events": [1]}, headers={"retry-after": "0.5"}),
     THROTTLE, {"paused": [1], "pause_s": 0.5}),
    ("429_unparseable_retry_after_falls_back",
     dict(status=429, body={"throttled_events": [1]}, headers={"Retry-After": "soon"}),
     THROTTLE, {"paused": [1], "pause_s": 30.0}),
    ("429_without_event_list_pauses_throttled_users_and_devices",
     dict(status=429, body={"throttled_users": {"bobby-2": 50}, "throttled_devices": {"dev-carol": 50}}),
     THROTTLE, {"paused": [1, 2]}),
    ("429_naming_nobody_pauses_the_whole_request",
     dict(status=429, body={"error": "Too many requests"}), THROTTLE, {"paused": [0, 1, 2]}),
    ("429_daily_quota_users_parked",
     dict(status=429, body={"throttled_events": [0, 1], "throttled_users": {"bobby-2": 40},
                            "exceeded_daily_quota_users": {"alice-1": 500001}}, batch=True),
     THROTTLE, {"paused": [1], "parked_keys": {0}, "parked_contains": "daily quota"}),
    ("429_daily_quota_devices_parked",
     dict(status=429, body={"throttled_events": [2], "exceeded_daily_quota_devices": {"dev-carol": 500001}}),
     THROTTLE, {"paused": [], "parked_keys": {2}}),
    ("500_retried", dict(status=500, body=None), RETRY, {}),
    ("502_retried", dict(status=502, body="Bad Gateway"), RETRY, {"reason_contains_all": ["502"]}),
    ("503_retried", dict(status=503, body={"code": 503}), RETRY, {}),
    ("503_retry_after_sets_minimum_wait", dict(status=503, body=None, headers={"Retry-After": "2"}), RETRY,
     {"pause_s": 2.0}),
    ("504_retried", dict(status=504, body=None), RETRY, {}),
    ("network_error_retried", dict(status=0, body="timed out"), RETRY, {"reason_contains_all": ["timed out"]}),
    ("unknown_302_never_success", dict(status=302, body=None), RETRY, {"reason_contains_all": ["302"]}),
    ("unknown_404_never_success", dict(status=404, body={"error": "Invalid request path"}), RETRY,
     {"reason_contains_all": ["404"]}),
    ("unknown_418_never_success", dict(status=418, body=None), RETRY, {}),
    ("unknown_204_never_success", dict(status=204, body=None), RETRY, {}),
    ("unknown_201_never_success", dict(status=201, body=None), RETRY, {}),
]


@pytest.mark.parametrize("rule,kwargs,action,checks", CASES, ids=[c[0] for c in CASES])
def test_policy_table(rule, kwargs, action, checks):
    decision = run(**kwargs)
    assert decision.action == action
    if "rejected_keys" in checks:
        assert set(decision.rejected) == checks["rejected_keys"]
        assert all(decision.rejected.values())  # every rejection carries a reason
    for index, parts in checks.get("reason_contains", {}).items():
        for part in parts:
            assert part in decision.rejected[index]
    for index, part in checks.get("rejected_lacks", {}).items():
        assert part not in decision.rejected[index]
    for part in checks.get("reason_contains_all", []):
        assert part in decision.reason
    if "reason_lacks" in checks:
        assert checks["reason_lacks"] not in decision.reason
    if "paused" in checks:
        assert sorted(decision.paused) == checks["paused"]
    if "pause_s" in checks:
        assert decision.pause_s == checks["pause_s"]
    if "parked" in checks:
        assert dict(decision.parked) == checks["parked"]
    if "parked_keys" in checks:
        assert set(decision.parked) == checks["parked_keys"]
        assert not set(decision.parked) & set(decision.paused)
    if "parked_contains" in checks:
        assert all(checks["parked_contains"] in r for r in decision.parked.values())


def test_no_status_outside_200_is_ever_ok():
    for status in range(0, 600):
        if status == 200:
            continue
        for body in (None, {"code": 200}, "success"):
            assert run(status, body=body).action != OK, status


def test_throttle_pause_scales_with_setting():
    assert run(429, body={}, pause=0.05).pause_s == 0.05
    assert run(429, body={}, pause=0.05, api="usermap").pause_s == pytest.approx(0.025)


BACKOFF_CASES = [
    ("first_attempt_waits_up_to_initial", 1, 1.0, 60.0, 1.0, 1.0),
    ("first_attempt_jitter_floor_is_half", 1, 1.0, 60.0, 0.0, 0.5),
    ("doubles_each_attempt", 3, 1.0, 60.0, 1.0, 4.0),
    ("capped_at_max", 10, 1.0, 60.0, 1.0, 60.0),
    ("capped_with_jitter", 30, 1.0, 60.0, 0.0, 30.0),
    ("tiny_settings_for_tests", 4, 0.001, 0.01, 1.0, 0.008),
]


@pytest.mark.parametrize("rule,attempt,initial,cap,rng,expected", BACKOFF_CASES, ids=[c[0] for c in BACKOFF_CASES])
def test_backoff_capped_exponential_with_jitter(rule, attempt, initial, cap, rng, expected):
    assert backoff(attempt, initial, cap, rng) == pytest.approx(expected)


def test_backoff_jitter_spreads_waits():
    waits = {round(backoff(3, 1.0, 60.0, r / 10), 3) for r in range(11)}
    assert len(waits) == 11 and min(waits) >= 2.0 and max(waits) <= 4.0


def test_pure_modules_import_no_http_or_clock():
    # the package __init__ pulls in the deliverer, so load the two pure files on their own
    code = ("import importlib.util, sys\n"
            "for name in ('policy', 'batching'):\n"
            "    spec = importlib.util.spec_from_file_location(name, sys.argv[1] + '/' + name + '.py')\n"
            "    module = importlib.util.module_from_spec(spec)\n"
            "    sys.modules[name] = module\n"
            "    spec.loader.exec_module(module)\n"
            "print(sorted(m for m in ('httpx', 'sqlalchemy', 'apscheduler') if m in sys.modules))\n")
    folder = policy.__file__.rsplit("/", 1)[0]
    out = subprocess.run([sys.executable, "-c", code, folder], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    source = open(policy.__file__).read() + open(folder + "/batching.py").read()
    for banned in ("import time", "import os", "import random", "import httpx", "datetime"):
        assert banned not in source
