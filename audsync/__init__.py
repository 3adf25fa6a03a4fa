"""audsync: Segment-spec events and Engage-style audiences into Amplitude, self-hosted."""

from .config import Config, load as load_config
from .errors import AudsyncError, ConfigError, ValidationError

__all__ = ["AudsyncError", "Config", "ConfigError", "ValidationError", "load_config"]
