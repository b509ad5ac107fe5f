"""The daemon's settings: defaults, a TOML file, command-line overrides.

Design note. Precedence is defaults < file < flags. The file is read with the
standard library's `tomllib` and checked against `SCHEMA`, one parser per
key, so that every mistake stops the start with a message naming the key and
the file (`ConfigError`; the command exits with status 2). Names of users and
groups are resolved here, once, so a typo fails at start and not at the
first client. SIGHUP re-reads the file; `reloadable` says which settings a
running daemon takes (devices, file sources, log level), the rest wait for a
restart.

    run_dir = "/run/mediabroker"       shm_prefix = "mediabroker."     log_level = "info"
    [access]   group, socket_mode, allow_users, allow_groups, publish_users, publish_groups
    [generators] silence_s, per_session
    [results]  slots, per_session, per_user
    [sessions] heartbeat_s
    [rings]    slots, held_frames, audio_seconds, shm_budget_mib
    [limits]   connections, {connections,sessions,tracks,sources}_per_user, shm_per_user_mib
    [devices]  fake, fake_clock_code, hardware, allow, deny, idle_close_s, scan_interval_s
    [[devices.files]] path, label, loop
    [web]      listen, token, max_viewers (read by `mediabroker web`, not the daemon)
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mediabroker import config_values as values
from mediabroker.errors import ConfigError
from mediabroker.sources.policy import STALL_S, Backoff, RestartPolicy
from mediabroker.urls import check_video_url, redact_url
from mediastream.holds import HOLD_ENTRIES
from mediastream.paths import resolve_run_dir, resolve_shm_prefix
from mediastream.ring import SHM_DIR, check_segment_name

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "KEY_OF_FIELD",
    "SCHEMA",
    "BrokerConfig",
    "FileSource",
    "NetworkSource",
    "load_config",
    "parse_config",
    "read_config_file",
    "reloadable",
    "resolve_config_path",
]

DEFAULT_CONFIG_PATH = Path("/etc/mediabroker/config.toml")
SESSION_TIMEOUT_HEARTBEATS = 3  # missed heartbeats before a client's session ends


@dataclass(frozen=True, slots=True)
class FileSource:
    """A video file the daemon plays as a camera. Only the daemon's own
    configuration names files: clients can never make it open a path."""

    path: Path
    label: str = ""
    loop: bool = True


@dataclass(frozen=True, slots=True)
class NetworkSource:
    """A network camera (RTSP, HTTP MJPEG, HLS) the daemon reads through
    FFmpeg. ``url`` may hold credentials: show it through `redact_url` only."""

    url: str
    label: str = ""

    def __repr__(self) -> str:  # the dataclass one would print the password
        return f"NetworkSource(url={redact_url(self.url)!r}, label={self.label!r})"


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    run_dir: Path = field(default_factory=resolve_run_dir)
    shm_prefix: str = field(default_factory=resolve_shm_prefix)
    shm_dir: Path = SHM_DIR
    fake_devices: bool = False
    fake_clock_code: bool = False  # fake cameras paint their capture time (capture.fake)
    hardware_devices: bool = True  # look for V4L2 cameras and PortAudio microphones
    file_sources: tuple[FileSource, ...] = ()
    network_sources: tuple[NetworkSource, ...] = ()
    device_allow: tuple[str, ...] = ()  # glob patterns; empty: every device
    device_deny: tuple[str, ...] = ()  # glob patterns; a match hides the device
    device_scan_s: float = 1.0  # how often the device list is re-read (hot-plug)
    ring_slots: int = 8
    held_frames: int = 2  # frames one track may hold (read(hold=True)) at once
    audio_ring_s: float = 2.0  # seconds of audio an audio ring holds
    shm_budget_bytes: int | None = None  # all of this prefix's rings together; None: no cap
    idle_close_s: float = 3.0  # grace before a source nobody uses closes
    heartbeat_s: float = 0.5  # how often clients and the daemon say they live
    session_timeout_s: float = 1.5  # missed heartbeats before a session ends
    source_start_timeout_s: float = 10.0
    stop_deadline_s: float = 3.0  # SIGTERM to SIGKILL for capture processes
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)  # not in the file
    stall_s: float = STALL_S  # a live ring that stands still this long is killed; not in the file
    # How a network camera that dropped reconnects, and how a source that
    # cannot be probed is tried again (files, URLs); not in the file.
    retry_backoff: Backoff = field(default_factory=Backoff)
    log_level: int = logging.INFO
    socket_group: int | None = None  # gid of the run dir, sockets and rings; None: ours
    socket_mode: int = 0o660  # the run dir gets the matching search bits (0750)
    allow_users: tuple[int, ...] = ()  # uids; with allow_groups empty too: anyone
    allow_groups: tuple[int, ...] = ()  # gids (primary or supplementary)
    # Who may publish a generator as a device; both empty: root and our own user only.
    publish_users: tuple[int, ...] = ()
    publish_groups: tuple[int, ...] = ()
    generator_silence_s: float = 2.0  # a generator that writes nothing this long is muted
    generators_per_session: int = 4
    results_slots: int = 64  # a results channel's ring: the last 64 results, 16 KiB each
    results_per_session: int = 8  # result channels one session may publish
    results_per_user: int = 32  # ... and one uid over all its sessions
    max_connections: int = 1024  # to the control socket, all users together
    connections_per_user: int = 64
    sessions_per_user: int = 32
    tracks_per_user: int = 256
    sources_per_user: int = 16  # distinct sources (each a capture process) its tracks hold
    shm_per_user_bytes: int | None = None  # of the rings its tracks hold; None: half of all
    web_listen: str = "127.0.0.1:8089"  # `mediabroker web`'s address (host:port)
    web_token: str = ""  # what `mediabroker web` asks of clients; needed beyond loopback
    web_max_viewers: int = 16  # WHEP sessions of one gateway, all sources together
    config_path: Path | None = None  # the file these came from, for messages and reload

    def __post_init__(self) -> None:
        check_segment_name(self.shm_prefix + "x")
        if self.ring_slots < 2:
            raise ValueError(f"ring_slots is {self.ring_slots}; a ring needs at least 2")
        if self.stall_s <= 0:
            raise ValueError(f"stall_s is {self.stall_s:g}; it must be positive")
        if self.session_timeout_s <= self.heartbeat_s:
            raise ValueError("session_timeout_s must be longer than heartbeat_s")
        if self.socket_mode & ~0o666 or self.socket_mode & 0o600 != 0o600:
            raise ValueError(
                f"socket_mode {self.socket_mode:#o} must give the owner rw- and nothing but "
                "read and write bits (e.g. 0o660)"
            )


FILE_SOURCE_KEYS = ("path", "label", "loop")


def _file_sources(value: Any, ctx: values.Context) -> tuple[FileSource, ...]:
    if not isinstance(value, list):
        raise ValueError("must be an array of tables: [[devices.files]] with path, label, loop")
    return tuple(_file_source(entry, ctx, index) for index, entry in enumerate(value))


def _file_source(entry: Any, ctx: values.Context, index: int) -> FileSource:
    key = f"{ctx.key}[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(
            f"must be a table with {', '.join(FILE_SOURCE_KEYS)}", path=ctx.path, key=key
        )
    _refuse_unknown(entry, FILE_SOURCE_KEYS, ctx.path, f"{key}.")
    if "path" not in entry:
        raise ConfigError("needs a path", path=ctx.path, key=key)
    fields: dict[str, Any] = {}
    for name, parse in (("path", _video_file), ("label", values.string), ("loop", values.boolean)):
        if name in entry:
            fields[name] = _parse(parse, entry[name], ctx.path, f"{key}.{name}")
    return FileSource(**fields)


def _video_file(value: Any, ctx: values.Context) -> Path:
    """A path, relative to the configuration file. It need not exist yet:
    the daemon offers it once it does (see the module's note)."""
    path = Path(values.string(value, ctx))
    if not path.is_absolute():
        path = ctx.path.parent / path  # relative to the configuration file
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a directory, not a video file")
    return path


NETWORK_SOURCE_KEYS = ("url", "label")


def _network_sources(value: Any, ctx: values.Context) -> tuple[NetworkSource, ...]:
    if not isinstance(value, list):
        raise ValueError("must be an array of tables: [[devices.network]] with url, label")
    return tuple(_network_source(entry, ctx, index) for index, entry in enumerate(value))


def _network_source(entry: Any, ctx: values.Context, index: int) -> NetworkSource:
    key = f"{ctx.key}[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(
            f"must be a table with {', '.join(NETWORK_SOURCE_KEYS)}", path=ctx.path, key=key
        )
    _refuse_unknown(entry, NETWORK_SOURCE_KEYS, ctx.path, f"{key}.")
    if "url" not in entry:
        raise ConfigError("needs a url", path=ctx.path, key=key)
    fields: dict[str, Any] = {}
    for name, parse in (("url", _video_url), ("label", values.string)):
        if name in entry:
            fields[name] = _parse(parse, entry[name], ctx.path, f"{key}.{name}")
    return NetworkSource(**fields)


def _video_url(value: Any, ctx: values.Context) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a URL string, got a {type(value).__name__}")
    return check_video_url(value)  # its ValueError shows the URL redacted


# TOML key -> (BrokerConfig field, parser); a nested dict is a TOML table.
Schema = Mapping[str, "tuple[str, values.Parser] | Schema"]
SCHEMA: Schema = {
    "run_dir": ("run_dir", values.run_dir_path),
    "shm_prefix": ("shm_prefix", values.shm_prefix),
    "log_level": ("log_level", values.log_level),
    "access": {
        "group": ("socket_group", values.gid),
        "socket_mode": ("socket_mode", values.socket_mode),
        "allow_users": ("allow_users", values.list_of(values.uid)),
        "allow_groups": ("allow_groups", values.list_of(values.gid)),
        "publish_users": ("publish_users", values.list_of(values.uid)),
        "publish_groups": ("publish_groups", values.list_of(values.gid)),
    },
    "generators": {
        "silence_s": ("generator_silence_s", values.number(0.1, 3600)),
        "per_session": ("generators_per_session", values.number(0, 256, integer=True)),
    },
    "results": {
        "slots": ("results_slots", values.number(1, 4096, integer=True)),
        "per_session": ("results_per_session", values.number(0, 256, integer=True)),
        "per_user": ("results_per_user", values.number(0, 10_000, integer=True)),
    },
    "sessions": {
        "heartbeat_s": ("heartbeat_s", values.number(0.05, 60)),
    },
    "rings": {
        "slots": ("ring_slots", values.number(2, 1024, integer=True)),
        "held_frames": ("held_frames", values.number(1, HOLD_ENTRIES, integer=True)),
        "audio_seconds": ("audio_ring_s", values.number(0.1, 60)),
        "shm_budget_mib": ("shm_budget_bytes", values.mib_amount),
    },
    "limits": {
        "connections": ("max_connections", values.COUNT),
        "connections_per_user": ("connections_per_user", values.COUNT),
        "sessions_per_user": ("sessions_per_user", values.COUNT),
        "tracks_per_user": ("tracks_per_user", values.COUNT),
        "sources_per_user": ("sources_per_user", values.number(1, 10_000, integer=True)),
        "shm_per_user_mib": ("shm_per_user_bytes", values.mib_amount),
    },
    "devices": {
        "fake": ("fake_devices", values.boolean),
        "fake_clock_code": ("fake_clock_code", values.boolean),
        "hardware": ("hardware_devices", values.boolean),
        "allow": ("device_allow", values.list_of(values.string)),
        "deny": ("device_deny", values.list_of(values.string)),
        "idle_close_s": ("idle_close_s", values.number(0, 3600)),
        "scan_interval_s": ("device_scan_s", values.number(0.1, 3600)),
        "files": ("file_sources", _file_sources),
        "network": ("network_sources", _network_sources),
    },
    "web": {
        "listen": ("web_listen", values.listen_address),
        "token": ("web_token", values.token),
        "max_viewers": ("web_max_viewers", values.number(1, 1000, integer=True)),
    },
}

RELOADABLE_FIELDS = (
    "fake_devices",
    "fake_clock_code",
    "hardware_devices",
    "file_sources",
    "network_sources",
    "device_allow",
    "device_deny",
    "device_scan_s",
    "log_level",
)


def _key_of_field() -> dict[str, str]:
    names: dict[str, str] = {}

    def walk(schema: Schema, prefix: str) -> None:
        for key, entry in schema.items():
            if isinstance(entry, tuple):
                names[entry[0]] = prefix + key
            else:
                walk(entry, f"{prefix}{key}.")

    walk(SCHEMA, "")
    return names


KEY_OF_FIELD = _key_of_field()


# -- reading -------------------------------------------------------------------


def resolve_config_path(explicit: Path | None, default: Path = DEFAULT_CONFIG_PATH) -> Path | None:
    """The file to read: ``explicit`` (which must exist), else ``default`` when it
    exists, else None (defaults and flags only). Raises `ConfigError`."""
    if explicit is None:
        return default if default.exists() else None
    if not explicit.is_file():
        raise ConfigError("no such configuration file", path=explicit)
    return explicit


def parse_config(data: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """BrokerConfig field values from a decoded TOML document. Raises
    `ConfigError` naming the first unknown key or bad value."""
    fields: dict[str, Any] = {}
    _walk(data, SCHEMA, path, "", fields)
    if "heartbeat_s" in fields:
        fields["session_timeout_s"] = SESSION_TIMEOUT_HEARTBEATS * fields["heartbeat_s"]
    return fields


def _walk(
    data: Mapping[str, Any], schema: Schema, path: Path, prefix: str, out: dict[str, Any]
) -> None:
    _refuse_unknown(data, tuple(schema), path, prefix)
    for key, value in data.items():
        entry = schema[key]
        if isinstance(entry, tuple):
            name, parse = entry
            out[name] = _parse(parse, value, path, prefix + key)
        elif isinstance(value, dict):
            _walk(value, entry, path, f"{prefix}{key}.", out)
        else:
            raise ConfigError(
                f"must be a table ([{prefix}{key}]), got {value!r}", path=path, key=prefix + key
            )


def _parse(parse: values.Parser, value: Any, path: Path, key: str) -> Any:
    try:
        return parse(value, values.Context(path, key))
    except ConfigError:
        raise
    except ValueError as exc:
        raise ConfigError(str(exc), path=path, key=key) from None


def _refuse_unknown(
    data: Mapping[str, Any], known: tuple[str, ...], path: Path, prefix: str
) -> None:
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {prefix + close[0]!r}? " if close else ""
            raise ConfigError(
                f"unknown key; {hint}known here: {', '.join(known)}", path=path, key=prefix + key
            )


def read_config_file(path: Path) -> dict[str, Any]:
    """Field values from the TOML file at ``path``. Raises `ConfigError`."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=path) from None
    except OSError as exc:
        raise ConfigError(f"cannot read it: {exc.strerror or exc}", path=path) from None
    return parse_config(data, path)


def load_config(
    explicit: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    default: Path = DEFAULT_CONFIG_PATH,
) -> BrokerConfig:
    """Defaults, then the configuration file (``explicit``, else ``default``
    when it exists), then ``overrides`` (BrokerConfig field names: the
    command-line flags). Raises `ConfigError`."""
    path = resolve_config_path(explicit, default)
    fields = read_config_file(path) if path is not None else {}
    fields.update(overrides or {})
    if "heartbeat_s" in fields and "session_timeout_s" not in fields:
        fields["session_timeout_s"] = SESSION_TIMEOUT_HEARTBEATS * fields["heartbeat_s"]
    try:
        return BrokerConfig(**fields, config_path=path)
    except ValueError as exc:
        raise ConfigError(str(exc), path=path) from None


def reloadable(running: BrokerConfig, fresh: BrokerConfig) -> tuple[BrokerConfig, list[str]]:
    """The configuration a running daemon switches to on SIGHUP: ``running``
    with ``fresh``'s run-time settings; and the keys that changed in
    ``fresh`` but need a restart."""
    changes = {name: getattr(fresh, name) for name in RELOADABLE_FIELDS}
    pending = [
        KEY_OF_FIELD.get(f.name, f.name)
        for f in dataclasses.fields(BrokerConfig)
        if f.name not in RELOADABLE_FIELDS
        and f.name != "config_path"
        and getattr(fresh, f.name) != getattr(running, f.name)
    ]
    return dataclasses.replace(running, **changes), pending
