"""Deliverer.deliver(should_stop=...): a stop asked through a plain threading.Event (the Python
API's stop_event, the CLI's signal handlers) ends delivery at the loop's next turn."""

from __future__ import annotations

import threading

from audsync.delivery import Deliverer

from .conftest import amplitude_settings, fast_delivery


def identify(user: str) -> dict:
    return {"api": "identify", "body": {"user_id": user, "user_properties": {"$set": {"n": 1}}}}


def test_a_plain_event_set_after_the_first_answer_stops_delivery_with_what_was_answered_reported(fake):
    ops = [identify(f"user-{u:05d}") for u in range(20_000)]
    stop, outcomes = threading.Event(), []

    def on_outcomes(batch):
        outcomes.extend(batch.each())
        stop.set()

    with Deliverer(amplitude_settings(fake), fast_delivery(concurrency=1)) as deliverer:
        deliverer.deliver(enumerate(ops), on_outcomes, should_stop=stop.is_set)
    assert 0 < len(outcomes) < len(ops)
    assert len(fake.identifies) == len(outcomes)  # nothing sent that was not reported


def test_without_a_stop_everything_is_delivered(fake):
    ops = [identify(f"user-{u:05d}") for u in range(5_000)]
    outcomes = []
    with Deliverer(amplitude_settings(fake), fast_delivery(concurrency=2)) as deliverer:
        deliverer.deliver(enumerate(ops), lambda batch: outcomes.extend(batch.each()),
                          should_stop=threading.Event().is_set)
    assert len(outcomes) == len(ops)
