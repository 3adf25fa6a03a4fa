"""StopRequest: the one way a stop reaches running work (signals, the daemon, a lost lease)."""

import threading

from audsync.stopping import StopRequest, when_stopped


def test_a_stop_request_calls_what_registered_once_in_the_setting_thread():
    stop = StopRequest()
    calls = []
    with stop.when_set(lambda: calls.append(threading.current_thread().name)):
        assert calls == []
        setter = threading.Thread(target=stop.set, name="setter")
        setter.start()
        setter.join()
        stop.set()  # a second signal: nothing more to call
    assert calls == ["setter"] and stop.is_set()


def test_work_registering_after_the_request_was_made_is_told_at_once():
    stop = StopRequest()
    stop.set()
    calls = []
    with stop.when_set(lambda: calls.append(1)):
        assert calls == [1]


def test_a_callback_is_forgotten_when_its_block_ends():
    stop = StopRequest()
    calls = []
    with stop.when_set(lambda: calls.append("old")):
        pass
    with when_stopped([None, threading.Event(), stop], lambda: calls.append("new")):
        stop.set()
    assert calls == ["new"]
