"""Leases on the database clock: who runs an audience (or a SQLite daemon) now, and the fence
that keeps a run which lost its lease from writing anything more."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import BusyError, StateError
from .base import StoreBase


@dataclass(frozen=True)
class LeaseInfo:
    name: str
    holder: str
    host: str
    pid: int
    acquired_at: float
    expires_at: float


class Fence(NamedTuple):
    """A run's lease, which its writes depend on: they commit only while `holder` still holds the
    lease `name` (it has not expired and nobody took it over). `what` names it to the user."""

    name: str
    holder: str
    what: str


class Leases(StoreBase):
    def acquire_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Take the lease when nobody holds it, it expired, or `holder` already holds it."""
        now = self.dialect.now
        sql = sa.text(
            "INSERT INTO leases (name, holder, host, pid, acquired_at, expires_at) "
            f"VALUES (:name, :holder, :host, :pid, {now}, {now} + :ttl) "
            "ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, host = excluded.host, "
            "pid = excluded.pid, expires_at = excluded.expires_at, acquired_at = CASE "
            "WHEN leases.holder = excluded.holder THEN leases.acquired_at ELSE excluded.acquired_at END "
            "WHERE leases.expires_at < excluded.acquired_at OR leases.holder = excluded.holder "
            "RETURNING holder"
        )
        params = {"name": name, "holder": holder, "host": socket.gethostname(), "pid": os.getpid(),
                  "ttl": float(ttl_s)}
        with self._conn() as conn:
            return conn.execute(sql, params).first() is not None

    def renew_lease(self, name: str, holder: str, ttl_s: float) -> bool:
        """Extend a lease `holder` still holds; False when it was lost (expired and taken)."""
        sql = sa.text(f"UPDATE leases SET expires_at = {self.dialect.now} + :ttl WHERE name = :name AND holder = :holder")
        with self._conn() as conn:
            return conn.execute(sql, {"name": name, "holder": holder, "ttl": float(ttl_s)}).rowcount == 1

    def release_lease(self, name: str, holder: str) -> None:
        with self._conn() as conn:
            conn.execute(sa.text("DELETE FROM leases WHERE name = :name AND holder = :holder"),
                         {"name": name, "holder": holder})

    def break_lease(self, name: str, holder: str) -> bool:
        """Expire `holder`'s lease now (its process is known to be dead); False when it moved on."""
        with self._conn() as conn:
            return conn.execute(sa.text(
                f"UPDATE leases SET expires_at = {self.dialect.now} - 1 WHERE name = :name AND holder = :holder"),
                {"name": name, "holder": holder}).rowcount == 1

    def hold_fence(self, conn: Connection, fence: Fence | None) -> None:
        """Refuses the transaction on `conn` unless `fence`'s holder still holds its lease: a run
        that was paused (or cut off) longer than its lease lasts must not overwrite what the run
        that took over wrote. Called last in the transaction: on PostgreSQL the lease row then
        stays share-locked only until the commit, which a takeover (an UPDATE of that row) has
        to wait for; a SQLite write transaction holds the database's write lock already.
        `fence` None: the caller serialises its writes some other way (tools, tests of the diff)."""
        if fence is None:
            return
        held = conn.execute(sa.text(
            f"SELECT expires_at > {self.dialect.now} FROM leases WHERE name = :name AND holder = :holder"
            f"{self.dialect.share_lock}"), {"name": fence.name, "holder": fence.holder}).scalar()
        if not held:
            raise BusyError(
                f"{fence.what}: this run lost its lease (it was not renewed within daemon.lease_ttl_s, for "
                "instance while the process was paused, and another run may have taken over): it stopped "
                "without recording anything more; the next run delivers what it left pending")

    def clock(self) -> float:
        """The database's clock (Unix seconds), which every worker shares: lease expiry, run
        times and schedule slots are read on it, whatever the workers' own clocks say."""
        with self._conn(write=False) as conn:
            return float(conn.execute(sa.text(f"SELECT {self.dialect.now}")).scalar_one())

    def lease_info(self, name: str) -> LeaseInfo | None:
        with self._conn(write=False) as conn:
            row = conn.execute(sa.text(
                "SELECT name, holder, host, pid, acquired_at, expires_at FROM leases WHERE name = :name"),
                {"name": name}).first()
        return LeaseInfo(*row) if row else None


class LeaseKeeper:
    """Holds a lease for the duration of a `with` block, renewing it from a background thread.

    `lost` is set when a renewal finds the lease gone (it expired and someone else took it): the
    holder must then stop taking new work.
    """

    def __init__(self, store: Leases, name: str, ttl_s: float, *, wait_s: float = 0.0,
                 what: str | None = None, poll_s: float = 0.5):
        self.store = store
        self.name = name
        self.ttl_s = ttl_s
        self.wait_s = wait_s
        self.what = what or name
        self.poll_s = poll_s
        # A PID names a process only within its PID namespace: containers sharing a hostname
        # each have their own PID 1. The holder says which namespace its PID belongs to.
        self.holder = f"{process_name()}:{os.urandom(4).hex()}"
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "LeaseKeeper":
        deadline = time.monotonic() + self.wait_s
        while not self.store.acquire_lease(self.name, self.holder, self.ttl_s):
            if self._break_if_holder_died():
                continue
            if time.monotonic() >= deadline:
                raise BusyError(self._busy_message())
            time.sleep(min(self.poll_s, max(0.0, deadline - time.monotonic())))
        self._thread = threading.Thread(target=self._renew, name=f"lease {self.name}", daemon=True)
        self._thread.start()
        return self

    @property
    def fence(self) -> Fence:
        return Fence(self.name, self.holder, self.what)

    def _break_if_holder_died(self) -> bool:
        """A run killed on this host (SIGKILL, OOM, power cut of a container) cannot release its
        lease; waiting out its TTL would block the rerun that must deliver what it left pending.
        Only a holder on this host and in this PID namespace can be checked: others (another
        machine, another container with the same hostname) keep their lease until it expires."""
        info = self.store.lease_info(self.name)
        if info is None or not gone_from_here(info.holder):
            return False
        return self.store.break_lease(self.name, info.holder)

    def _busy_message(self) -> str:
        info = self.store.lease_info(self.name)
        if info is None:
            who = "another run"
        else:
            since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(info.acquired_at))
            who = f"another run (host {info.host}, pid {info.pid}, since {since})"
        waited = f" after waiting {self.wait_s:g} s" if self.wait_s else ""
        return f"{self.what}: {who} is already syncing it; not started{waited} (state.lock_wait_s)"

    def _renew(self) -> None:
        while not self._done.wait(self.ttl_s / 3):
            try:
                if not self.store.renew_lease(self.name, self.holder, self.ttl_s):
                    self.lost.set()
                    return
            except StateError:
                continue  # a transient database error: try again before the lease runs out

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        with contextlib.suppress(StateError):
            self.store.release_lease(self.name, self.holder)


def process_name() -> str:
    """How a holder of leases names its process: host, pid and PID namespace (a pid names a
    process only within its namespace: containers sharing a hostname each have their own pid 1).
    Holders add a suffix of their own."""
    return f"{socket.gethostname()}:{os.getpid()}:{_pid_namespace()}"


def gone_from_here(holder: str, *, same_pid_is_gone: bool = False) -> bool:
    """Whether `holder` (a process_name() and its suffix) was a process of this host and PID
    namespace that no longer runs. Others (another machine, another container with the same
    hostname, a system without /proc) cannot be checked: False. A holder with this process's pid
    is this process, unless `same_pid_is_gone` (the caller knows every name this process uses: a
    name with its pid and another suffix was a predecessor's, the pid reused after a restart)."""
    host, pid, namespace, suffix = (holder.split(":", 3) + ["", "", ""])[:4]
    here = _pid_namespace()
    if not here or host != socket.gethostname() or namespace != here or not pid.isdigit() or not suffix:
        return False
    if int(pid) == os.getpid():
        return same_pid_is_gone
    return not _alive(int(pid))


def _pid_namespace() -> str:
    """This process's PID namespace on this boot (the boot id and the namespace's inode); empty
    where there is no /proc to tell (not Linux): no holder's PID is then checked."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True
