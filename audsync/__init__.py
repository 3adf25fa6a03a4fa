"""audsync: Segment-spec events and Engage-style audiences into Amplitude, self-hosted.

The public Python API, all importable from `audsync` (this list is the one place it is written
down; README's "Python API" section shows it in use):

  translate(message, settings)        the pure mapping core: one Segment message -> a list of
                                      Amplitude operations (`{"api": ..., "body": ...}`)
  load_config(path)                   read a TOML config (and the environment) into a Config
  Config                              the frozen settings load_config returns
  run_once(config, audiences=None, dry_run=False, skip_backfill=False, allow_mass_exit=False)
                                      one sync pass, as `audsync run`; returns a report
  backfill(config, audience)          resend the current value to every current member
  sync_dataframe(config, audience, df)
                                      sync a pandas DataFrame as the current members of a
                                      configured audience, as run_once would; the same report
  status(config)                      per audience: members, last runs, pending and rejected users
  Deliverer, Outcome, Outcomes        delivery of operations to Amplitude, and what came of each
  AudsyncError                        the root of every error audsync raises on purpose; below it
                                      ConfigError, SourceError, StateError, ValidationError,
                                      DeliveryError, MassExitError, TemporaryError (retry later)

Names are imported on first use (PEP 562), so `import audsync.mapping` or
`from audsync import translate` needs neither SQLAlchemy, httpx nor APScheduler.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The errors module imports nothing: the whole tree is here at once.
from .errors import (
    AudsyncError, ConfigError, DeliveryError, MassExitError, SourceError, StateError, TemporaryError,
    ValidationError,
)

# Public name -> (module relative to this package, attribute in that module).
_LAZY: dict[str, tuple[str, str]] = {
    "translate": (".mapping", "translate"),
    "Config": (".config", "Config"),
    "load_config": (".config", "load"),
    "run_once": (".sync", "run_once"),
    "backfill": (".sync", "backfill"),
    "status": (".status_report", "status"),
    "sync_dataframe": (".dataframe", "sync_dataframe"),
    "Deliverer": (".delivery", "Deliverer"),
    "Outcome": (".delivery", "Outcome"),
    "Outcomes": (".delivery", "Outcomes"),
}

__all__ = [
    "AudsyncError", "Config", "ConfigError", "Deliverer", "DeliveryError", "MassExitError", "Outcome",
    "Outcomes", "SourceError", "StateError", "TemporaryError", "ValidationError", "backfill",
    "load_config", "run_once", "status", "sync_dataframe", "translate",
]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'audsync' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module, __name__), attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # type checkers and IDEs see the names eagerly
    from .config import Config, load as load_config
    from .dataframe import sync_dataframe
    from .delivery import Deliverer, Outcome, Outcomes
    from .mapping import translate
    from .status_report import status
    from .sync import backfill, run_once
