"""audsync: Segment-spec events and Engage-style audiences into Amplitude, self-hosted.

The public API: `load_config(path)`, `translate(message, settings)` (the pure mapping core),
`run_once(config)` and `backfill(config, audience)` (the sync), `Deliverer` (delivery to
Amplitude) and the error tree rooted in `AudsyncError`.
"""

from .config import Config, load as load_config
from .delivery import Deliverer, Outcome, Outcomes
from .errors import AudsyncError, ConfigError, SourceError, StateError, ValidationError
from .mapping import translate
from .sync import backfill, run_once, status

__all__ = [
    "AudsyncError", "Config", "ConfigError", "Deliverer", "Outcome", "Outcomes", "SourceError", "StateError",
    "ValidationError", "backfill", "load_config", "run_once", "status", "translate",
]
