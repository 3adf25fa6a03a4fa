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
    fake.delay_s = 0.03
    config = forwarding_config(tmp_path, pg_url, fake)
    procs = [servers(config), servers(config)]
    urls = [proc.url for proc in procs]
    down: list[int] = []  # the killed server's index, once it is down
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
                # Round robin, as a load balancer does; once one is down, only the other.
                target = 1 - down[0] if down else (sender + n) % 2
                try:
                    answer = clients[target].post("/v1/batch", json={"batch": batch, "writeKey": WRITE_KEY})
                except httpx.HTTPError:  # the killed server: the balancer sends the request again elsewhere
                    answer = clients[1 - target].post("/v1/batch", json={"batch": batch, "writeKey": WRITE_KEY})
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

    assert all(proc.port for proc in procs)
    with ThreadPoolExecutor(SENDERS) as pool:
        futures = [pool.submit(send, s) for s in range(SENDERS)]
        assert kill_now.wait(30), "the senders stalled"
        # Amplitude slows down, so a round in flight stays unanswered (its messages claimed) long
        # enough for the server holding them to be killed right in it.
        fake.delay_s = 1.0

        def holders() -> list[int]:
            held = " ".join(r["claimed_by"] for r in rows(pg_url, "SELECT DISTINCT claimed_by FROM ingest_partitions"))
            return [i for i, proc in enumerate(procs) if f":{proc.pid}:" in held]

        victim = wait_until(holders, timeout=20, what="a server holding users")[0]
        killed, survivor = procs[victim], procs[1 - victim]
        killed.proc.send_signal(signal.SIGKILL)
        killed.wait(10)
        down.append(victim)
        time.sleep(1.2)  # a request the dead server had written whole still lands at the fake
        with fake.lock:
            before_kill = {e["insert_id"] for e in fake.events}
        fake.delay_s = 0.03
        for future in futures:
            future.result()

    sent = SENDERS * USERS_PER_SENDER * ROUNDS
    assert len(acknowledged) == sent
    # The survivor takes over the killed one's users (same host, its pid gone) at its next
    # lease renewal, well before their leases would run out.
    wait_until(lambda: set(acknowledged) <= {e["insert_id"] for e in fake.events}, timeout=40,
               what="every acknowledged message at Amplitude", proc=survivor)
    wait_until(lambda: not rows(pg_url, "SELECT id FROM ingest_log"), what="the log emptied", proc=survivor)
    assert "took back the users" in survivor.output()
    assert survivor.stop() == 0, survivor.output()

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
