"""An audsync command in a subprocess with `--log-format json`: its stderr collected line by line
(each JSON line parsed), for tests that wait on what it logs (tests/daemon, tests/ingest)."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from pathlib import Path


class JsonLogProcess:
    name = "process"  # how failures name it

    def __init__(self, cmd: list[str], *, env: dict[str, str], cwd: Path):
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=env, cwd=cwd)
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self.records: list[dict] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            try:
                self.records.append(json.loads(line))
            except ValueError:
                pass

    def wait_for(self, message: str, timeout: float = 30.0) -> dict:
        """The first log record whose message contains `message`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for record in list(self.records):
                if message in record.get("message", ""):
                    return record
            if self.proc.poll() is not None:
                self._reader.join(2)
                raise AssertionError(f"{self.name} exited {self.proc.returncode}: {self.output()}")
            time.sleep(0.02)
        raise AssertionError(f"no {message!r} in the {self.name}'s log within {timeout} s: {self.output()}")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def output(self) -> str:
        return "".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
