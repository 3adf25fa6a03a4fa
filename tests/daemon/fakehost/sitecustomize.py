"""Loaded by daemon subprocesses (PYTHONPATH) in the multi-worker test: each worker believes it runs
on its own machine (AUDSYNC_TEST_HOSTNAME), so a killed worker's leases cannot be recognised as a
dead local process and must expire, as they would across machines."""

import os
import socket

_NAME = os.environ.get("AUDSYNC_TEST_HOSTNAME")
if _NAME:
    socket.gethostname = lambda: _NAME
