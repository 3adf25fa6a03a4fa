"""One exception tree. Every message is written for the person running audsync.

The CLI turns an AudsyncError into its message and an exit code; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class AudsyncError(Exception):
    """Root of every error audsync raises on purpose."""

    exit_code = 1


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
    """The state database cannot be used (unreachable, locked by another run, wrong schema)."""

    exit_code = 2


class DeliveryError(AudsyncError):
    """Amplitude could not be reached or refused the whole request."""


class FatalDeliveryError(DeliveryError):
    """An answer that no retry can fix, such as an invalid API key (exit 2)."""

    exit_code = 2


class MassExitError(AudsyncError):
    """A run would empty an audience by mistake (a source with no rows, or more than
    max_exit_fraction of its members leaving): nothing is planned (exit 2)."""

    exit_code = 2
