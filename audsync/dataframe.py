"""The Python API for data teams: sync a pandas DataFrame as one configured audience's members.

    import audsync
    report = audsync.sync_dataframe("audsync.toml", "High Value Users", df)
    print(report.audiences[0].summary_line())
    if report.exit_code: ...

The DataFrame takes the place of the audience's configured source for this one call; everything
else is `audsync run --audience NAME`: the same state database and lease (a daemon or a CLI run
of that audience never overlaps with this call, and either one's next run carries on from the
state this call leaves), the diff against what was synced (a first sync sends every member,
later ones only the changes; exits send false, lost values $unset), the row hygiene with skipped
rows counted by reason, the mass-exit guard, pending work from earlier runs delivered first.
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any

from .config import Config, load
from .sources.python import FrameSource
from .sync import RunReport, run_once

__all__ = ["sync_dataframe"]

def sync_dataframe(config: Config | str | os.PathLike[str], audience: str, df: Any, *, dry_run: bool = False,
                   skip_backfill: bool = False, allow_mass_exit: bool = False, progress: Any = None,
                   stop_event: threading.Event | None = None, apply_migrations: bool = True) -> RunReport:
    """Sync `df` as the current members of `audience` (its name or key in `config`).

    `config` is a loaded Config (audsync.load_config) or the path of a config file. `df` is a
    pandas DataFrame with a `user_id` and/or `anonymous_id` column and, for a computed trait
    (`kind = "computed_trait"`), a `value` column; other columns and the index are ignored. It may
    also be anything a python source's function may return (an iterable of DataFrames, or of dict
    rows: see audsync.sources.python); an iterator is read once.

    The audience's settings come from the config (key, kind, max_exit_fraction,
    send_track_events, [amplitude] and [delivery]); its configured source is not read. The keyword
    arguments mean what `audsync run`'s options do: `dry_run` counts and samples without sending
    or writing, `skip_backfill` records a first sync's members as synced without sending,
    `allow_mass_exit` lets the run remove more than max_exit_fraction of the audience (or follow
    an empty DataFrame), `stop_event` stops it between batches (what is not delivered stays pending
    for the next run), `progress` is an audsync.progress reporter.

    Returns the RunReport `audsync.run_once` returns, holding this audience's AudienceReport:
    `report.audiences[0]` has the counts (entered, exited, changed, unset, delivered, rejected,
    pending, skipped by reason) and `summary_line()`. As with run_once, a problem of this audience
    does not raise: it is `report.audiences[0].error`, and `report.exit_code` says what to do
    (`audsync run`'s exit codes): 0 everything delivered; 1 some users rejected by Amplitude, or
    stopped with work pending; 2 something to fix (a malformed row, which the error names by its
    index label, a missing column, a run the mass-exit guard refused, an invalid API key); 3
    temporary trouble (state database or Amplitude unreachable, the audience busy in another run):
    call again later. Raises ConfigError for a config that cannot be loaded, an audience it does
    not name, or no API key.
    """
    if not isinstance(config, Config):
        config = load(config)
    chosen = config.audience(audience)
    # The config holds this audience only, its source replaced: run_once runs it as configured.
    config = dataclasses.replace(config, audiences=(dataclasses.replace(chosen, source=FrameSource(df)),))
    return run_once(config, dry_run=dry_run, skip_backfill=skip_backfill, allow_mass_exit=allow_mass_exit,
                    progress=progress, stop_event=stop_event, apply_migrations=apply_migrations)
