"""TOML + environment -> frozen settings (DESIGN.md section 3).

Parsed once, at the edge. Unknown keys, wrong types and bad values are ConfigErrors that name the
file and the dotted key. Only this module reads the environment.
"""

from __future__ import annotations

import base64
import dataclasses
import difflib
import hashlib
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .errors import ConfigError
from ._keys import KEY_PATTERN, snake_case
from ._redact import redact, remember, url_password

QUERY_PARAM_SIDES = ("user_properties", "event_properties")
AUDIENCE_KINDS = ("audience", "computed_trait")
EVENT_LAYOUTS = ("audsync", "segment", "rudderstack")
_EVERY = re.compile(r"^every\s+(\d+)\s*([smhd])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
KEY_VARIABLES = {"api_key": "AMPLITUDE_API_KEY", "secret_key": "AMPLITUDE_SECRET_KEY"}
WRITE_KEYS_VARIABLE = "AUDSYNC_WRITE_KEYS"
_ORIGIN = re.compile(r"^https?://[^/\s:]+(:\d+)?$")


def _masked_repr(cls: type) -> type:
    """Reprs of settings that hold URLs show them with their passwords masked."""
    plain = cls.__repr__
    cls.__repr__ = lambda self: redact(plain(self))
    return cls


@_masked_repr
@dataclass(frozen=True)
class StateSettings:
    url: str = "sqlite:///audsync.db"
    lock_wait_s: float = 0.0


@dataclass(frozen=True)
class AmplitudeSettings:
    api_key: str = field(default="", repr=False)
    secret_key: str = field(default="", repr=False)
    endpoint: str = "us"
    send_to_batch_endpoint: bool = False
    track_named_pages: bool = True
    track_categorized_pages: bool = True
    track_all_pages: bool = False
    track_all_screens: bool = False
    prefer_anonymous_id_for_device_id: bool = False
    traits_to_increment: tuple[str, ...] = ()
    traits_to_set_once: tuple[str, ...] = ()
    traits_to_append: tuple[str, ...] = ()
    traits_to_prepend: tuple[str, ...] = ()
    group_type_trait: str = ""
    group_value_trait: str = ""
    enable_alias: bool = False
    track_revenue_per_product: bool = False
    track_products_once: bool = False
    use_log_revenue_v2: bool = True
    track_utm_properties: bool = True
    track_referrer: bool = True
    track_gclid: bool = False
    map_query_params: Mapping[str, str] = field(default_factory=dict)
    append_fields_to_event_properties: Mapping[str, str] = field(default_factory=dict)
    version_name: str = ""
    send_custom_language_and_country: bool = False
    min_id_length: int = 5
    # Which of KEY_VARIABLES the keys came from: messages about a key name where to fix it.
    from_environment: tuple[str, ...] = field(default=(), metadata={"derived": True})

    def key_setting(self, name: str) -> str:
        """Where the user set `api_key` or `secret_key`: the environment variable or the config key."""
        return KEY_VARIABLES[name] if KEY_VARIABLES[name] in self.from_environment else f"amplitude.{name}"

    @property
    def basic_credentials(self) -> str:
        """The User Privacy API's Basic auth credentials (delete-users)."""
        return base64.b64encode(f"{self.api_key}:{self.secret_key}".encode()).decode()

    @property
    def destination_id(self) -> str:
        """Stable name of (endpoint, API key) for the state database; never reveals the key."""
        digest = hashlib.sha256(f"{self.endpoint}\0{self.api_key}".encode()).hexdigest()
        return digest[:16]


@dataclass(frozen=True)
class DeliverySettings:
    concurrency: int = 4
    timeout_s: float = 30.0
    max_attempts: int = 8
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    throttle_pause_s: float = 30.0
    deadline_s: float = 600.0


@dataclass(frozen=True)
class DaemonSettings:
    default_schedule: str = "every 1h"
    misfire_grace_s: float = 300.0
    lease_ttl_s: float = 60.0
    stop_timeout_s: float = 25.0


@dataclass(frozen=True)
class IngestSettings:
    """`audsync serve` (DESIGN.md section 6)."""

    host: str = "127.0.0.1"
    port: int = 8088
    write_keys: tuple[str, ...] = field(default=(), repr=False)
    forward: bool = True
    keep_events_days: int = 400
    cors_origins: tuple[str, ...] = ("*",)
    # Whether the write keys came from AUDSYNC_WRITE_KEYS: messages about them say where to fix them.
    keys_from_environment: bool = field(default=False, metadata={"derived": True})

    @property
    def write_keys_setting(self) -> str:
        return WRITE_KEYS_VARIABLE if self.keys_from_environment else "ingest.write_keys"


@dataclass(frozen=True)
class SyncSettings:
    max_exit_fraction: float = 0.5


@_masked_repr
@dataclass(frozen=True)
class EventsSettings:
    """Where rules read events (DESIGN.md section 7); a rule source's own keys override these."""

    layout: str = "audsync"   # "audsync": what `audsync serve` stored, in the state database
    url: str = ""             # the warehouse's SQLAlchemy URL (not for "audsync")
    schema: str = ""          # the source's schema in the warehouse, e.g. "segment_prod"


@_masked_repr
@dataclass(frozen=True)
class SqlSource:
    url: str
    query: str
    type: str = "sql"


@dataclass(frozen=True)
class FileSource:
    path: Path
    type: str = "file"


@_masked_repr
@dataclass(frozen=True)
class RuleSource:
    """A rule in Segment's audience language (DESIGN.md section 7), parsed when the config loads,
    and the database holding the events it reads: `url` is the state database's for the "audsync"
    layout. `references` are the keys of the other configured audiences it reads with trait():
    those run first (Config.in_run_order)."""

    rule: str
    tree: Any = field(repr=False, compare=False)
    layout: str = "audsync"
    url: str = ""
    schema: str | None = None
    references: tuple[str, ...] = ()
    type: str = "rule"


@dataclass(frozen=True)
class PythonSource:
    callable: str  # "package.module:function" (or "module:Class.method")
    # The config file's directory: searched first for the module, as relative paths start there.
    base: Path = Path(".")
    type: str = "python"


@dataclass(frozen=True)
class AudienceConfig:
    name: str
    key: str
    kind: str
    schedule: str | None
    send_track_events: bool
    source: SqlSource | FileSource | PythonSource | RuleSource
    max_exit_fraction: float = SyncSettings.max_exit_fraction
    # Rule sources only: profiles known by an anonymous_id alone become members by it.
    include_anonymous: bool = False

    @property
    def schedule_seconds(self) -> int | None:
        """The interval of an "every N{s,m,h,d}" schedule, None for a cron expression."""
        return every_seconds(self.schedule) if self.schedule else None


@dataclass(frozen=True)
class Config:
    path: Path
    state: StateSettings = field(default_factory=StateSettings)
    amplitude: AmplitudeSettings = field(default_factory=AmplitudeSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    sync: SyncSettings = field(default_factory=SyncSettings)
    audiences: tuple[AudienceConfig, ...] = ()
    ingest: IngestSettings = field(default_factory=IngestSettings)
    events: EventsSettings = field(default_factory=EventsSettings)
    # Audience keys, every audience after those its rule reads with trait() (config order otherwise).
    run_order: tuple[str, ...] = field(default=(), repr=False)

    def in_run_order(self, audiences: Iterable[AudienceConfig]) -> list[AudienceConfig]:
        """`audiences` with each one after the audiences its rule reads (they must be synced first
        for their members to be current); otherwise in the order given."""
        rank = {key: i for i, key in enumerate(self.run_order)}
        return sorted(audiences, key=lambda audience: rank.get(audience.key, len(rank)))

    def audience(self, name: str) -> AudienceConfig:
        for audience in self.audiences:
            if name in (audience.name, audience.key):
                return audience
        known = ", ".join(a.name for a in self.audiences) or "none configured"
        raise ConfigError(f"{self.path}: no audience named {name!r} (known: {known})")

    def require_api_key(self, command: str) -> None:
        """Commands that send need an API key, unless they send to a file: sink; checked before
        anything is planned."""
        if not self.amplitude.api_key and not self.amplitude.endpoint.startswith("file:"):
            raise ConfigError(f"{self.path}: amplitude.api_key: `audsync {command}` sends to Amplitude and "
                              "needs an API key; set amplitude.api_key or the environment variable "
                              "AMPLITUDE_API_KEY")


def every_seconds(schedule: str) -> int | None:
    match = _EVERY.match(schedule.strip())
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else None


class _Reader:
    """Reads one TOML table into a dataclass, naming file and dotted key in every error."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {key}: {message}")

    def table(self, data: Any, key: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.fail(key, f"must be a table, not {_type_name(data)}")
        return data

    def check_keys(self, data: dict[str, Any], allowed: list[str], prefix: str) -> None:
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise self.fail(f"{prefix}{key}", f"unknown setting{hint}")

    def value(self, data: dict[str, Any], name: str, default: Any, prefix: str) -> Any:
        if name not in data:
            return default
        raw = data[name]
        dotted = f"{prefix}{name}"
        if isinstance(default, bool):
            if not isinstance(raw, bool):
                raise self.fail(dotted, f"must be true or false, not {_show(raw)}")
            return raw
        if isinstance(default, int):
            if isinstance(raw, bool) or not isinstance(raw, int):
                raise self.fail(dotted, f"must be a whole number, not {_show(raw)}")
            return raw
        if isinstance(default, float):
            if isinstance(raw, bool) or not isinstance(raw, (int, float)):
                raise self.fail(dotted, f"must be a number, not {_show(raw)}")
            return float(raw)
        if isinstance(default, str):
            if not isinstance(raw, str):
                raise self.fail(dotted, f"must be a string, not {_show(raw)}")
            return raw
        if isinstance(default, tuple):
            if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
                raise self.fail(dotted, f"must be a list of strings, not {_show(raw)}")
            return tuple(raw)
        if isinstance(default, dict):
            if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
                raise self.fail(dotted, f"must be a table of strings, not {_show(raw)}")
            return dict(raw)
        raise AssertionError(f"no reader for {name}")  # a setting without a typed default is a bug

    def settings(self, cls: type, data: Any, section: str, **extra: Any) -> Any:
        data = self.table(data, section)
        defaults = cls()
        names = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("derived")]
        self.check_keys(data, names, f"{section}.")
        values = {
            name: self.value(data, name, _default_of(defaults, name), f"{section}.")
            for name in names
        }
        values.update(extra)
        return cls(**values)


def _default_of(defaults: Any, name: str) -> Any:
    value = getattr(defaults, name)
    return dict(value) if isinstance(value, Mapping) else value


def _type_name(value: Any) -> str:
    return {dict: "a table", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value) if isinstance(value, (str, bool, int, float)) else _type_name(value)
    return text.replace("True", "true").replace("False", "false") if isinstance(value, bool) else text


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Config:
    """Read a config file into frozen settings; every problem is a ConfigError."""
    environ = os.environ if environ is None else environ
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such config file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read the config file ({exc})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return parse(data, path, environ)


def parse(data: dict[str, Any], path: Path, environ: Mapping[str, str]) -> Config:
    reader = _Reader(str(path))
    base = path.resolve().parent
    reader.check_keys(data, ["state", "amplitude", "delivery", "daemon", "sync", "audiences", "ingest", "events"],
                      "")

    state = reader.settings(StateSettings, data.get("state", {}), "state")
    state = dataclasses.replace(state, url=_resolve_sqlite_url(state.url, base))
    if not state.url.strip():
        raise reader.fail("state.url", "must not be empty")
    if state.lock_wait_s < 0:
        raise reader.fail("state.lock_wait_s", "must not be negative")

    amplitude = reader.settings(AmplitudeSettings, data.get("amplitude", {}), "amplitude")
    amplitude = _check_amplitude(amplitude, reader, base, environ)

    delivery = reader.settings(DeliverySettings, data.get("delivery", {}), "delivery")
    if delivery.concurrency < 1:
        raise reader.fail("delivery.concurrency", "must be at least 1")
    if delivery.max_attempts < 1:
        raise reader.fail("delivery.max_attempts", "must be at least 1")
    for name in ("timeout_s", "backoff_initial_s", "backoff_max_s", "throttle_pause_s", "deadline_s"):
        if getattr(delivery, name) < 0:
            raise reader.fail(f"delivery.{name}", "must not be negative")
    if delivery.timeout_s == 0:
        raise reader.fail("delivery.timeout_s", "must be more than 0")

    daemon = reader.settings(DaemonSettings, data.get("daemon", {}), "daemon")
    _check_schedule(daemon.default_schedule, reader, "daemon.default_schedule")
    for name in ("misfire_grace_s", "lease_ttl_s", "stop_timeout_s"):
        if getattr(daemon, name) <= 0:
            raise reader.fail(f"daemon.{name}", "must be more than 0")

    sync = reader.settings(SyncSettings, data.get("sync", {}), "sync")
    _check_fraction(sync.max_exit_fraction, reader, "sync.max_exit_fraction")

    events = _check_events(reader.settings(EventsSettings, data.get("events", {}), "events"), reader, base)

    raw_audiences = data.get("audiences", [])
    if not isinstance(raw_audiences, list):
        raise reader.fail("audiences", "must be an array of tables ([[audiences]])")
    audiences = tuple(_audience(raw, i, reader, base, sync, events, state.url)
                      for i, raw in enumerate(raw_audiences))
    seen: dict[str, int] = {}
    names: dict[str, int] = {}
    for i, audience in enumerate(audiences):
        if audience.key in seen:
            raise reader.fail(
                f"audiences[{i}].key",
                f"key {audience.key!r} is already used by audiences[{seen[audience.key]}]; "
                "give one of them an explicit key",
            )
        if audience.name in names:
            raise reader.fail(f"audiences[{i}].name",
                              f"name {audience.name!r} is already used by audiences[{names[audience.name]}]")
        seen[audience.key] = i
        names[audience.name] = i
    audiences = _resolve_references(audiences, reader, state.url)
    run_order = _run_order(audiences, reader)
    ingest = _check_ingest(reader.settings(IngestSettings, data.get("ingest", {}), "ingest"), reader, environ)
    urls = [state.url, events.url] + [a.source.url for a in audiences
                                      if isinstance(a.source, (SqlSource, RuleSource))]
    remember(amplitude.api_key, amplitude.secret_key, *ingest.write_keys, *filter(None, map(url_password, urls)))
    if amplitude.api_key or amplitude.secret_key:
        remember(amplitude.basic_credentials)
    return Config(path=path, state=state, amplitude=amplitude, delivery=delivery, daemon=daemon, sync=sync,
                  audiences=audiences, ingest=ingest, events=events, run_order=run_order)


def _check_ingest(ingest: IngestSettings, reader: _Reader, environ: Mapping[str, str]) -> IngestSettings:
    if not ingest.host.strip():
        raise reader.fail("ingest.host", "must not be empty")
    if not 1 <= ingest.port <= 65535:
        raise reader.fail("ingest.port", f"must be from 1 to 65535, not {ingest.port}")
    if ingest.keep_events_days < 0:
        raise reader.fail("ingest.keep_events_days", f"must not be negative, not {ingest.keep_events_days}")
    for origin in ingest.cors_origins:
        if origin != "*" and not _ORIGIN.match(origin):
            raise reader.fail("ingest.cors_origins", f"{origin!r} is neither \"*\" nor an origin such as "
                                                     "\"https://www.example.com\" (scheme, host, optional port)")
    keys, from_environment = ingest.write_keys, False
    if not keys and environ.get(WRITE_KEYS_VARIABLE, "").strip():
        keys = tuple(key.strip() for key in environ[WRITE_KEYS_VARIABLE].split(",") if key.strip())
        from_environment = True
    where = WRITE_KEYS_VARIABLE if from_environment else "ingest.write_keys"
    for key in keys:
        # A key travels as the user name of HTTP Basic auth, where a colon ends it.
        if not key or key != key.strip() or ":" in key or any(c.isspace() for c in key):
            raise reader.fail(where, "a write key must be non-empty, without spaces or colons")
    return dataclasses.replace(ingest, write_keys=tuple(dict.fromkeys(keys)),
                               keys_from_environment=from_environment)


def _resolve_sqlite_url(url: str, base: Path) -> str:
    """sqlite:///relative.db is relative to the config file, like every other path in it."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith("sqlite:////"):
        rest = url[len(prefix):]
        if rest and not rest.startswith(":memory:") and not Path(rest).is_absolute():
            return prefix + str(base / rest)
    return url


def _check_amplitude(amplitude: AmplitudeSettings, reader: _Reader, base: Path,
                     environ: Mapping[str, str]) -> AmplitudeSettings:
    endpoint = amplitude.endpoint.strip()
    if endpoint.startswith("file:"):
        target = endpoint[len("file:"):]
        if not target:
            raise reader.fail("amplitude.endpoint", "file: needs a path, as in \"file:requests.jsonl\"")
        endpoint = "file:" + str(base / target)
    elif endpoint.startswith(("http://", "https://")):
        if not re.match(r"^https?://[^/\s:]+(:\d+)?(/\S*)?$", endpoint):
            raise reader.fail("amplitude.endpoint", f"{endpoint!r} is not a valid base URL")
        endpoint = endpoint.rstrip("/")
    elif endpoint not in ("us", "eu"):
        raise reader.fail(
            "amplitude.endpoint",
            f"{amplitude.endpoint!r} is not one of \"us\", \"eu\", an http(s) base URL or \"file:PATH\"",
        )
    for name, side in amplitude.map_query_params.items():
        if side not in QUERY_PARAM_SIDES:
            raise reader.fail(f"amplitude.map_query_params.{name}",
                              f"{side!r} must be \"user_properties\" or \"event_properties\"")
    for path, name in amplitude.append_fields_to_event_properties.items():
        if not path.strip() or not name.strip():
            raise reader.fail("amplitude.append_fields_to_event_properties",
                              "message paths and property names must not be empty")
    if amplitude.min_id_length < 0:
        raise reader.fail("amplitude.min_id_length", f"must not be negative, not {amplitude.min_id_length}")
    keys = {name: getattr(amplitude, name) or environ.get(variable, "") for name, variable in KEY_VARIABLES.items()}
    from_environment = tuple(variable for name, variable in KEY_VARIABLES.items()
                             if keys[name] and not getattr(amplitude, name))
    return dataclasses.replace(amplitude, endpoint=endpoint, from_environment=from_environment, **keys)


def _check_schedule(schedule: str, reader: _Reader, key: str) -> None:
    from .daemon.schedules import unschedulable

    if every_seconds(schedule) is not None:
        if every_seconds(schedule) == 0:
            raise reader.fail(key, "an interval must be more than 0")
    elif len(schedule.split()) != 5:
        raise reader.fail(key, f"{schedule!r} is neither \"every N{{s,m,h,d}}\" nor a 5-field cron expression")
    else:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(schedule, timezone="UTC")
        except ValueError as exc:
            raise reader.fail(key, f"{schedule!r} is not a valid cron expression ({exc})") from None
    reason = unschedulable(schedule)
    if reason:
        raise reader.fail(key, f"{schedule!r} {reason}")


def _check_fraction(value: float, reader: _Reader, key: str) -> None:
    if not 0 < value <= 1:
        raise reader.fail(key, f"must be more than 0 and at most 1, not {_show(value)}")


def _audience(raw: Any, index: int, reader: _Reader, base: Path, sync: SyncSettings, events: EventsSettings,
              state_url: str) -> AudienceConfig:
    prefix = f"audiences[{index}]."
    data = reader.table(raw, f"audiences[{index}]")
    allowed = ["name", "key", "kind", "schedule", "send_track_events", "source", "max_exit_fraction",
               "include_anonymous"]
    reader.check_keys(data, allowed, prefix)
    name = reader.value(data, "name", "", prefix)
    if not name.strip():
        raise reader.fail(prefix + "name", "every audience needs a name")
    key = reader.value(data, "key", "", prefix) or snake_case(name)
    if not KEY_PATTERN.fullmatch(key):
        what = (f"the name {name!r} has no letters or digits to make a key from" if not key
                else f"{key!r} has characters outside [a-z0-9_]")
        raise reader.fail(prefix + "key", f"{what}; set key explicitly")
    kind = reader.value(data, "kind", "audience", prefix)
    if kind not in AUDIENCE_KINDS:
        raise reader.fail(prefix + "kind", f"{kind!r} must be \"audience\" or \"computed_trait\"")
    schedule = reader.value(data, "schedule", "", prefix) or None
    if schedule is not None:
        _check_schedule(schedule, reader, prefix + "schedule")
    send_track_events = reader.value(data, "send_track_events", False, prefix)
    max_exit_fraction = reader.value(data, "max_exit_fraction", sync.max_exit_fraction, prefix)
    _check_fraction(max_exit_fraction, reader, prefix + "max_exit_fraction")
    include_anonymous = reader.value(data, "include_anonymous", False, prefix)
    if "source" not in data:
        raise reader.fail(prefix + "source",
                          "every audience needs a source (type \"sql\", \"file\", \"python\" or \"rule\")")
    source_data = reader.table(data["source"], prefix + "source")
    source_type = source_data.get("type")
    sp = prefix + "source."
    if source_type == "sql":
        reader.check_keys(source_data, ["type", "url", "query"], sp)
        url = reader.value(source_data, "url", "", sp)
        query = reader.value(source_data, "query", "", sp)
        if not url.strip():
            raise reader.fail(sp + "url", "a sql source needs a SQLAlchemy URL")
        if not query.strip():
            raise reader.fail(sp + "query", "a sql source needs a query")
        source: SqlSource | FileSource | PythonSource = SqlSource(url=_resolve_sqlite_url(url, base), query=query)
    elif source_type == "file":
        reader.check_keys(source_data, ["type", "path"], sp)
        file_path = reader.value(source_data, "path", "", sp)
        if not file_path.strip():
            raise reader.fail(sp + "path", "a file source needs a path")
        if Path(file_path).suffix.lower() not in (".csv", ".parquet", ".jsonl"):
            raise reader.fail(sp + "path", f"{file_path!r}: only .csv, .parquet and .jsonl files are read")
        source = FileSource(path=base / file_path)
    elif source_type == "python":
        reader.check_keys(source_data, ["type", "callable"], sp)
        target = reader.value(source_data, "callable", "", sp)
        if not target.strip():
            raise reader.fail(sp + "callable", "a python source needs a callable, as in \"members:current\"")
        if not _is_callable_path(target):
            raise reader.fail(sp + "callable", f"{target!r} is not \"module:function\" (a dotted module path, "
                                               "a colon, then the function's name)")
        source = PythonSource(callable=target, base=base)
    elif source_type == "rule":
        source = _rule_source(source_data, reader, sp, base, events, state_url, name, kind)
    else:
        raise reader.fail(sp + "type", f"{source_type!r} must be \"sql\", \"file\", \"python\" or \"rule\"")
    if "include_anonymous" in data and not isinstance(source, RuleSource):
        raise reader.fail(prefix + "include_anonymous",
                          f"applies to rule sources only (a {source_type} source's rows carry an anonymous_id "
                          "column when they mean anonymous profiles); remove it")
    return AudienceConfig(name=name, key=key, kind=kind, schedule=schedule,
                          send_track_events=send_track_events, source=source, max_exit_fraction=max_exit_fraction,
                          include_anonymous=include_anonymous)


def _check_events(events: EventsSettings, reader: _Reader, base: Path) -> EventsSettings:
    _check_layout(events.layout, reader, "events.layout")
    if events.layout == "audsync":
        for name in ("url", "schema"):
            if getattr(events, name).strip():
                raise reader.fail(f"events.{name}", _audsync_layout_only(name))
    return dataclasses.replace(events, url=_resolve_sqlite_url(events.url, base))


def _check_layout(layout: str, reader: _Reader, key: str) -> None:
    if layout not in EVENT_LAYOUTS:
        close = difflib.get_close_matches(layout, EVENT_LAYOUTS, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise reader.fail(key, f"{layout!r} must be \"audsync\", \"segment\" or \"rudderstack\"{hint}")


def _audsync_layout_only(name: str) -> str:
    return (f"must be empty with layout = \"audsync\", which reads the events `audsync serve` stored in the "
            "state database ([state] url); for a warehouse that Segment or RudderStack loads, set layout = "
            "\"segment\" or \"rudderstack\"")


def _quoted(name: str) -> str:
    """An audience name in messages, in double quotes as written in the config."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rule_source(data: dict[str, Any], reader: _Reader, sp: str, base: Path, events: EventsSettings,
                 state_url: str, name: str, kind: str) -> RuleSource:
    reader.check_keys(data, ["type", "rule", "layout", "url", "schema"], sp)
    if "rule" not in data:
        raise reader.fail(sp + "rule", "a rule source needs a rule, as in "
                                       "rule = \"event('Order Completed').within(30 days).count() >= 1\"")
    rule = reader.value(data, "rule", "", sp)
    layout = reader.value(data, "layout", events.layout, sp)
    _check_layout(layout, reader, sp + "layout")
    if layout == "audsync":
        # [events]'s url and schema describe its own layout's database: a source that chooses the
        # state database's events leaves them, and may not set its own.
        for key in ("url", "schema"):
            if reader.value(data, key, "", sp).strip():
                raise reader.fail(sp + key, _audsync_layout_only(key))
        url, schema = state_url, ""
    else:
        url = reader.value(data, "url", events.url, sp)
        schema = reader.value(data, "schema", events.schema, sp)
        if not url.strip():
            raise reader.fail(sp + "url", f"layout {layout!r} reads a warehouse: set its SQLAlchemy URL here "
                                          "or in [events] url")
        url = _resolve_sqlite_url(url, base)
    from .rules import parse_rule

    tree = parse_rule(rule, kind, where=f"{reader.source}: audience {_quoted(name)}: source.rule")
    return RuleSource(rule=rule, tree=tree, layout=layout, url=url, schema=schema.strip() or None,
                      references=tuple(dict.fromkeys(_trait_keys(tree))))


def _trait_keys(node: Any) -> Iterable[str]:
    """The keys of every trait('...') in a rule's tree, in the order written."""
    from .rules.tree import Trait

    if isinstance(node, Trait):
        yield node.key
    elif isinstance(node, tuple):
        for item in node:
            yield from _trait_keys(item)
    elif dataclasses.is_dataclass(node):
        for f in dataclasses.fields(node):
            yield from _trait_keys(getattr(node, f.name))


def _resolve_references(audiences: tuple[AudienceConfig, ...], reader: _Reader,
                        state_url: str) -> tuple[AudienceConfig, ...]:
    """Keeps in each rule source's `references` the trait() keys that are keys of configured
    audiences ("part of audience"; the others are the user's identify traits), and checks that each
    can be read: another audience's members come either from its own rule, compiled into the same
    query (both rules read one database), or from its synced members in the state database, which
    the query can read only when the events are there too (the "audsync" layout)."""
    by_key = {audience.key: (i, audience) for i, audience in enumerate(audiences)}
    resolved = []
    for i, audience in enumerate(audiences):
        source = audience.source
        if not isinstance(source, RuleSource):
            resolved.append(audience)
            continue
        references = tuple(key for key in source.references if key in by_key)
        where = f"audiences[{i}].source.rule"
        for key in references:
            j, other = by_key[key]
            if other.kind != "audience":
                raise reader.fail(where, f"trait({key!r}) names the computed trait {_quoted(other.name)} "
                                         f"(audiences[{j}]): a rule can read another audience's membership, "
                                         "not a computed trait's value; give the trait another key, or the "
                                         "rule another trait")
            if reads_inline(source, other):
                continue
            if source.url != state_url:
                what = (f"the {other.source.type} source of {_quoted(other.name)}" if other.source.type != "rule"
                        else f"the rule of {_quoted(other.name)}, which reads events in another database,")
                raise reader.fail(where, f"trait({key!r}) reads the members of audience {_quoted(other.name)} "
                                         f"(audiences[{j}]), but this rule runs in its events database "
                                         f"({redact(source.url)}) and {what} keeps those members in the state "
                                         f"database ({redact(state_url)}): such a reference needs both in one "
                                         "database (the \"audsync\" layout, whose events are in the state database)")
        resolved.append(dataclasses.replace(audience, source=dataclasses.replace(source, references=references)))
    return tuple(resolved)


def reads_inline(source: RuleSource, other: AudienceConfig) -> bool:
    """Whether a rule (`source`) reads the members of `other` by compiling `other`'s own rule into
    its query (both read the same database); otherwise from `other`'s synced members in the state
    database."""
    return isinstance(other.source, RuleSource) and other.source.url == source.url


def _run_order(audiences: tuple[AudienceConfig, ...], reader: _Reader) -> tuple[str, ...]:
    """Audience keys, each after the audiences it references (depth first, in config order); a
    cycle of references is an error naming it."""
    by_key = {audience.key: (i, audience) for i, audience in enumerate(audiences)}
    order: list[str] = []
    done: set[str] = set()

    def visit(key: str, path: list[str]) -> None:
        if key in done:
            return
        if key in path:
            cycle = path[path.index(key):]
            # Told from the audience written first, whichever audience the search entered by.
            start = min(range(len(cycle)), key=lambda n: by_key[cycle[n]][0])
            cycle = cycle[start:] + cycle[:start]
            raise reader.fail(f"audiences[{by_key[cycle[0]][0]}].source.rule",
                              "trait() references make a cycle: " + " -> ".join(cycle + cycle[:1]) +
                              "; an audience cannot depend on itself, directly or through others")
        source = by_key[key][1].source
        for reference in source.references if isinstance(source, RuleSource) else ():
            visit(reference, path + [key])
        done.add(key)
        order.append(key)

    for audience in audiences:
        visit(audience.key, [])
    return tuple(order)


def _is_callable_path(target: str) -> bool:
    """Whether `target` reads "module:function" as entry points spell it: dotted identifiers on both
    sides of one colon.
    Only the spelling is checked here: importing a user's module at load would run their code for
    every command (status, translate...), so the import waits for the run (audsync.sources.python)."""
    module, colon, attribute = target.partition(":")
    return bool(colon) and all(part.isidentifier() for part in (*module.split("."), *attribute.split(".")))
