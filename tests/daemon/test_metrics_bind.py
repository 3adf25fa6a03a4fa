"""The metrics port (metrics and health) is reachable from this machine only, unless
--metrics-host says otherwise (DESIGN.md section 3)."""

from __future__ import annotations

import signal
import socket

import pytest


def _outside_address() -> str:
    """This machine's address on its network (a UDP connect sends nothing; it only picks a route)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.255.255.255", 1))
        address = probe.getsockname()[0]
    except OSError as exc:
        pytest.skip(f"this machine has no network address besides loopback ({exc})")
    finally:
        probe.close()
    if address.startswith("127."):
        pytest.skip("this machine has no network address besides loopback")
    return address


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=5):
            return True
    except ConnectionRefusedError:
        return False


def test_the_metrics_port_listens_on_loopback_only_by_default(make_project, sqlite_url, daemons):
    outside = _outside_address()
    daemon = daemons(make_project(sqlite_url).write({"alpha": "every 1h"}))
    record = daemon.wait_for("metrics on port")
    assert record["metrics_host"] == "127.0.0.1"
    assert daemon.get("/healthz") == (200, "ok\n")
    assert not _reachable(outside, int(record["metrics_port"]))
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0


def test_metrics_host_widens_the_metrics_port_to_every_interface(make_project, sqlite_url, daemons):
    outside = _outside_address()
    daemon = daemons(make_project(sqlite_url).write({"alpha": "every 1h"}), args=("--metrics-host", "0.0.0.0"))
    record = daemon.wait_for("metrics on port")
    assert record["metrics_host"] == "0.0.0.0"
    assert _reachable(outside, int(record["metrics_port"]))
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(30) == 0
