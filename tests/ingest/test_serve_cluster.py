"""Two `audsync serve` processes behind a (simulated) load balancer on one PostgreSQL state, one
of them SIGKILLed mid-stream (issue 16 point 5): every message acknowledged by either reaches
Amplitude once in effect, and each user's events arrive in the order they were accepted."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .conftest import WRITE_KEY
from .test_forward import forwarding_config, rows, wait_until

SENDERS = 4
USERS_PER_SENDER = 4
ROUNDS = 24


@pytest.mark.slow
def test_killing_one_of_two_servers_mid_stream_loses_nothing_and_keeps_each_users_order(tmp_path, pg_url, servers,
                                                                                        amplitude):
    fake = amplitude
    fake.delay_s = 0.03  # rounds take a while, so the kill lands while the first server has some in flight
    config = forwarding_config(tmp_path, pg_url, fake)
    first, second = servers(config), servers(config)
    urls = [first.url, second.url]
    first_down = threading.Event()
    kill_now = threading.Event()
    acknowledged: list[str] = []
    lock = threading.Lock()
    order: dict[str, list[str]] = defaultdict(list)  # user -> messageIds in the order they were accepted

    def send(sender: int) -> None:
        users = [f"user-{sender}-{k}" for k in range(USERS_PER_SENDER)]
        clients = [httpx.Client(base_url=url, timeout=10) for url in urls]
        try:
            for n in range(ROUNDS):
                batch = [{"type": "track", "event": "Step", "userId": user, "properties": {"n": n},
                          "messageId": f"{user}-{n}-{uuid.uuid4().hex[:6]}"} for user in users]
                # Round robin, as a load balancer does; once the first is down, only the second.
                target = 1 if first_down.is_set() else (sender + n) % 2
                try:
                    answer = clients[target].post("/v1/batch", json={"batch": batch, "writeKey": WRITE_KEY})
                except httpx.HTTPError:  # the killed server: the balancer sends the request again elsewhere
                    answer = clients[1].post("/v1/batch", json={"batch": batch, "writeKey": WRITE_KEY})
                assert answer.status_code == 200, answer.text
                with lock:
                    acknowledged.extend(m["messageId"] for m in batch)
                    for m in batch:
                        order[m["userId"]].append(m["messageId"])
                    if len(acknowledged) >= SENDERS * USERS_PER_SENDER * ROUNDS // 3:
                        kill_now.set()
        finally:
            for client in clients:
                client.close()

    assert first.port and second.port
    with ThreadPoolExecutor(SENDERS) as pool:
        futures = [pool.submit(send, s) for s in range(SENDERS)]
        assert kill_now.wait(30), "the senders stalled"
        first.proc.send_signal(signal.SIGKILL)
        first.wait(10)
        first_down.set()
        time.sleep(0.2)  # a request the dead server had written whole still lands at the fake
        with fake.lock:
            before_kill = {e["insert_id"] for e in fake.events}
        for future in futures:
            future.result()

    sent = SENDERS * USERS_PER_SENDER * ROUNDS
    assert len(acknowledged) == sent
    # The second server takes over the killed one's users (same host, its pid gone) at its next
    # lease renewal, well before their leases would run out.
    wait_until(lambda: set(acknowledged) <= {e["insert_id"] for e in fake.events}, timeout=40,
               what="every acknowledged message at Amplitude", proc=second)
    wait_until(lambda: not rows(pg_url, "SELECT id FROM ingest_log"), what="the log emptied", proc=second)
    assert "took back the users" in second.output()
    assert second.stop() == 0, second.output()

    # Once in effect: Amplitude keeps one event per insert_id, and nothing else arrived.
    assert sorted(e["insert_id"] for e in fake.events) == sorted(acknowledged)
    # Sent twice only what the killed server had in flight: events that had already arrived before it died.
    with fake.lock:
        arrivals = Counter(item.get("insert_id") for items in fake.arrivals.values() for item in items)
    twice = {insert_id for insert_id, n in arrivals.items() if n > 1}
    assert twice <= before_kill
    # Each user's events reached Amplitude in the order they were accepted, across both servers.
    with fake.lock:
        for user, accepted in order.items():
            first_arrivals = list(dict.fromkeys(item["insert_id"] for item in fake.arrivals[user]))
            assert first_arrivals == accepted, user
