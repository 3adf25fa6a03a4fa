"""One exception tree. Every message is written for the person running audsync.

The CLI turns an AudsyncError into its message and an exit code; anything else is a bug and
keeps its traceback (exit CRASHED).

Exit codes (DESIGN.md section 3): 0 done, 1 some items rejected or left pending (a stop),
2 something the user must fix, 3 temporary trouble: retry later, the work stays pending.
"""

from __future__ import annotations

# A bug (an exception audsync did not raise on purpose): sysexits.h's EX_SOFTWARE, a code of its
# own so that a scheduler never takes it for rejected items (1) or a config to fix (2).
CRASHED = 70
# Temporary trouble: a service manager or scheduler should retry (deploy/audsync.service does).
TEMPORARY = 3


class AudsyncError(Exception):
    """Root of every error audsync raises on purpose."""

    exit_code = 1


class TemporaryError(AudsyncError):
    """Trouble that goes away by itself: retrying later is the fix (exit 3)."""

    exit_code = TEMPORARY


class ConfigError(AudsyncError):
    """The configuration file or environment is wrong (exit 2)."""

    exit_code = 2


class UsageError(AudsyncError):
    """The command line is wrong (exit 2)."""

    exit_code = 2


class ValidationError(AudsyncError):
    """A Segment message (or a source row) cannot be turned into Amplitude operations."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class SourceError(AudsyncError):
    """An audience source cannot be read (missing file, bad query, missing column...)."""

    exit_code = 2


class StateError(AudsyncError):
    """The state database cannot be used (wrong URL, wrong schema, refused a write...) (exit 2)."""

    exit_code = 2


class StateUnavailableError(TemporaryError, StateError):
    """The state database cannot be reached now (down, starting, not created yet) (exit 3)."""


class BusyError(TemporaryError, StateError):
    """Another run holds the audience (or the resource) this one needs (exit 3)."""


class DeliveryError(AudsyncError):
    """Amplitude could not be reached or refused the whole request."""


class FatalDeliveryError(DeliveryError):
    """An answer that no retry can fix, such as an invalid API key (exit 2)."""

    exit_code = 2


class MassExitError(AudsyncError):
    """A run would empty an audience by mistake (a source with no rows, or more than
    max_exit_fraction of its members leaving): nothing is planned (exit 2)."""

    exit_code = 2
