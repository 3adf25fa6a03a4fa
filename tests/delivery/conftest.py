"""Delivery fixtures: a real loopback fake Amplitude and settings with millisecond timings."""

from __future__ import annotations

import pytest

from audsync.config import AmplitudeSettings, DeliverySettings
from audsync.testing.fake_amplitude import FakeAmplitude

API_KEY = "test-api-key-123"


@pytest.fixture
def fake():
    server = FakeAmplitude(api_keys=(API_KEY,))
    yield server
    server.close()


def amplitude_settings(fake: FakeAmplitude | None = None, **overrides) -> AmplitudeSettings:
    values = {"api_key": API_KEY, "endpoint": fake.url if fake is not None else "us"}
    values.update(overrides)
    return AmplitudeSettings(**values)


def fast_delivery(**overrides) -> DeliverySettings:
    values = dict(concurrency=4, timeout_s=2.0, max_attempts=4, backoff_initial_s=0.001, backoff_max_s=0.01,
                  throttle_pause_s=0.05, deadline_s=10.0)
    values.update(overrides)
    return DeliverySettings(**values)
