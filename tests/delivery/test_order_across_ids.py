"""Order per user AND per device (issue 3 point 4): an item waits while any earlier item sharing its
user_id or its device_id is unacknowledged, end to end through the fake Amplitude."""

from __future__ import annotations

import random
from collections import defaultdict

from audsync.delivery import DELIVERED

from .test_deliverer import deliver


def track(n: int, user: str | None, device: str | None) -> dict:
    body = {"event_type": f"step {n}", "insert_id": f"order-{n}", "event_properties": {"n": n}}
    if user is not None:
        body["user_id"] = user
    if device is not None:
        body["device_id"] = device
    return {"api": "event", "body": body}


def arrival_by(fake, field: str) -> dict[str, list[int]]:
    order = defaultdict(list)
    for event in fake.events:
        if event.get(field) is not None:
            order[event[field]].append(event["event_properties"]["n"])
    return order


def in_flight_together(fake, field: str, value: str) -> bool:
    spans = sorted((r["start"], r["time"]) for r in fake.requests
                   if any(i.get(field) == value for i in r["items"]))
    return any(b_start < a_end for (_, a_end), (b_start, _) in zip(spans, spans[1:]))


def test_identified_event_waits_for_the_throttled_anonymous_event_of_its_device(fake):
    # Segment: an anonymous track (device only), then the identify names the user on that device
    fake.throttled["device-anon-1"] = 2
    ops = [track(0, None, "device-anon-1"), track(1, "user-named-1", "device-anon-1")]
    result = deliver(fake, ops)
    assert result.refs(DELIVERED) == {0, 1}
    assert arrival_by(fake, "device_id")["device-anon-1"] == [0, 1]


def test_two_users_sharing_a_device_keep_the_devices_order(fake):
    fake.throttled["user-first1"] = 1
    ops = [track(0, "user-first1", "device-shared"), track(1, "user-second", "device-shared")]
    deliver(fake, ops)
    assert arrival_by(fake, "device_id")["device-shared"] == [0, 1]


def test_device_only_item_waits_for_the_throttled_users_earlier_item_on_that_device(fake):
    fake.throttled["user-busy01"] = 1
    ops = [track(0, "user-busy01", "device-b-1"), track(1, None, "device-b-1")]
    result = deliver(fake, ops)
    assert result.refs(DELIVERED) == {0, 1}
    assert arrival_by(fake, "device_id")["device-b-1"] == [0, 1]


def test_random_mix_of_users_and_devices_keeps_both_orders_under_faults(fake):
    rng = random.Random(7)
    users = [f"user-mix{u:02d}" for u in range(8)]
    devices = [f"device-mix{d:02d}" for d in range(6)]
    ops = []
    for n in range(400):
        shape = rng.random()
        user = rng.choice(users) if shape < 0.7 else None
        device = rng.choice(devices) if (shape > 0.4 or user is None) else None
        ops.append(track(n, user, device))
    fake.delay_s = 0.002
    fake.fail_next = [503, 503]
    fake.throttled.update({"user-mix03": 2, "device-mix04": 1})
    result = deliver(fake, ops, concurrency=4)
    assert result.refs(DELIVERED) == set(range(len(ops)))
    for field, ids in (("user_id", users), ("device_id", devices)):
        order = arrival_by(fake, field)
        for value in ids:
            expected = [n for n, op in enumerate(ops) if op["body"].get(field) == value]
            assert order[value] == expected, value
            assert not in_flight_together(fake, field, value), value
