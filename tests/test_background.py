"""The helpers that move state-database round trips off the delivery loop's thread."""

import threading

import pytest

from audsync._background import Prefetched, Writer


def test_prefetched_yields_every_item_in_order_from_another_thread():
    threads = set()

    def source():
        for n in range(100):
            threads.add(threading.get_ident())
            yield n

    ahead = Prefetched(source(), depth=2)
    assert list(ahead) == list(range(100))
    ahead.close()
    assert threading.get_ident() not in threads


def test_prefetched_raises_the_sources_error_in_the_consumer_after_the_items_before_it():
    def source():
        yield 1
        yield 2
        raise ValueError("page 3 failed")

    ahead = Prefetched(source())
    seen = []
    with pytest.raises(ValueError, match="page 3 failed"):
        for item in ahead:
            seen.append(item)
    ahead.close()
    assert seen == [1, 2]


def test_prefetched_close_stops_an_endless_source_and_closes_it():
    closed = threading.Event()
    read = []

    def source():
        try:
            n = 0
            while True:
                read.append(n)
                yield n
                n += 1
        finally:
            closed.set()

    ahead = Prefetched(source(), depth=2)
    for item in ahead:
        if item == 5:
            break
    ahead.close()
    assert closed.is_set()
    assert len(read) <= 5 + 1 + 2 + 1  # bounded read-ahead: the consumed, the queued, the one in hand


def test_writer_runs_calls_in_order_and_close_waits_for_all():
    done = []
    writer = Writer(depth=2)
    for n in range(50):
        writer.submit(done.append, n)
    writer.close()
    assert done == list(range(50))


def test_writer_failure_skips_later_calls_and_is_raised_by_the_next_submit_or_close():
    done = []
    gate = threading.Event()

    def fail():
        raise RuntimeError("database is locked")

    writer = Writer(depth=4)
    writer.submit(done.append, 1)
    writer.submit(fail)
    writer.submit(gate.wait)
    writer.submit(done.append, 2)
    gate.set()
    with pytest.raises(RuntimeError, match="database is locked"):
        writer.close()
    assert done == [1]


def test_every_submit_and_close_after_a_failure_raise_it():
    writer = Writer()
    writer.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        for _ in range(1000):  # the failure surfaces once the writer thread has run the call
            writer.submit(lambda: None)
            threading.Event().wait(0.001)
    with pytest.raises(ZeroDivisionError):
        writer.close()
