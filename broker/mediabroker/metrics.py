"""The daemon's ``stats`` reply (and a gateway's own figures) as Prometheus
text exposition format 0.0.4, for ``GET /metrics``.

Pure: no I/O, no web framework; the caller asks the daemon
(`MediaDevices.broker_stats`) and serves the text with the content type
`CONTENT_TYPE`. Every figure is one the daemon measured or counted (see
`mediabroker.daemon.stats`); nothing here estimates. Each family appears
once, with ``# HELP`` and ``# TYPE``, even with no sample, so dashboards
see the same names on every scrape. Series that would share a label set
(one process with two sessions under one name, two encoders of one size)
are summed: the format allows one sample per series.

Labels: a source carries ``source`` (the daemon's id), ``device_id``,
``label``, ``kind`` and, for video, ``width``/``height``; a consumer
``consumer`` (its session name), ``pid`` and ``uid``; a process ``pid``
and ``role``. Label values are escaped (backslash, double quote, newline).
Device labels come as the daemon shows them (a network camera's already
redacted); the reply carries no credentials.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["CONTENT_TYPE", "EncoderFigures", "GatewayFigures", "render_metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]
Kind = Literal["counter", "gauge"]


@dataclass(frozen=True, slots=True)
class EncoderFigures:
    """One shared encoder of the gateway (a device at one size) and its
    viewers; counts are totals since the encoder started. Fill it from
    ``SharedEncoder``: ``key.source``, ``key.width``, ``key.height``,
    ``key.frame_rate``, ``fanout.viewers``, ``fanout.joined``,
    ``fanout.skipped_total``, ``encoded_frames``, ``encode_seconds``,
    ``keyframes``."""

    device_id: str  # the deviceId (or published stream's name) it reads
    width: int | None  # as asked; None: the device's own
    height: int | None
    frame_rate: float | None
    viewers: int  # watching now
    joined: int  # viewers that ever joined
    skipped: int  # packets dropped for viewers that lagged (or waited for a keyframe)
    frames: int  # frames encoded
    encode_seconds: float  # wall seconds spent encoding them
    keyframes: int = 0  # of those frames


@dataclass(frozen=True, slots=True)
class GatewayFigures:
    """What a WebRTC gateway counts itself: its encoders, open or closed.
    Keep a closed one's last figures listed, or its totals go down; next to
    a new encoder of the same key they are summed (same labels), so the
    totals go on growing."""

    encoders: Sequence[EncoderFigures] = ()


@dataclass(slots=True)
class _Family:
    name: str
    kind: Kind
    help: str
    samples: dict[Labels, float] = field(default_factory=dict)

    def add(self, labels: Labels, value: float | None) -> None:
        if value is not None:
            self.samples[labels] = self.samples.get(labels, 0) + value


def render_metrics(stats: Mapping[str, Any], gateway: GatewayFigures | None = None) -> str:
    """The text of one scrape: ``stats`` is a `MediaDevices.broker_stats`
    reply; ``gateway`` None leaves out the gateway's families."""
    families = [*_source_families(stats), *_consumer_families(stats)]
    families += [*_process_families(stats), _control_family(stats)]
    if gateway is not None:
        families += _gateway_families(gateway)
    return "".join(_render(f) for f in families)


# -- families -------------------------------------------------------------------

_SOURCE_FIELDS: tuple[tuple[str, Kind, str, str], ...] = (
    (
        "frames_total",
        "counter",
        "frames",
        "Frames written to the source's ring, counted on from the source it replaced "
        "when its device was re-opened in another mode (audio: sample frames).",
    ),
    (
        "dropped_frames_total",
        "counter",
        "droppedFrames",
        "Frames missing from the source's "
        "nominal timeline while live, or lost by its capture backend (audio: sample frames).",
    ),
    (
        "measured_frames_per_second",
        "gauge",
        "measuredRate",
        "Frames a second over the last "
        "seconds, measured by the daemon on the frames' timestamps (audio: sample frames).",
    ),
    (
        "nominal_frames_per_second",
        "gauge",
        "nominalRate",
        "The rate the source was opened at (audio: its sample rate).",
    ),
    ("shm_bytes", "gauge", "shmBytes", "Bytes of the source's shared-memory ring."),
    ("readers", "gauge", "holderCount", "Tracks and derived sources reading the source's ring."),
)


def _source_families(stats: Mapping[str, Any]) -> list[_Family]:
    info = _Family("mediabroker_source_info", "gauge", "A source the daemon runs; always 1.")
    families = {
        key: _Family(f"mediabroker_source_{name}", kind, text)
        for name, kind, key, text in _SOURCE_FIELDS
    }
    for row in stats.get("sources", []):
        labels = _source_labels(row)
        info.add(labels + _info_labels(row), 1)
        values = {**row, "nominalRate": _nominal(row)}
        for key, family in families.items():
            family.add(labels, _number(values.get(key)))
    return [info, *families.values()]


def _source_labels(row: Mapping[str, Any]) -> Labels:
    video = row.get("kind") == "video"
    return _labels(
        source=row.get("id"),
        device_id=row.get("deviceId"),
        label=row.get("label"),
        kind=row.get("kind"),
        width=row.get("width") if video else None,
        height=row.get("height") if video else None,
    )


def _info_labels(row: Mapping[str, Any]) -> Labels:
    if row.get("kind") == "video":
        return _labels(state=row.get("state"), pixel_format=row.get("pixelFormat"))
    return _labels(state=row.get("state"), channels=row.get("channels"))


def _nominal(row: Mapping[str, Any]) -> Any:
    return row.get("frameRate") if row.get("kind") == "video" else row.get("sampleRate")


def _consumer_families(stats: Mapping[str, Any]) -> list[_Family]:
    delivered = _Family(
        "mediabroker_consumer_delivered_frames_total",
        "counter",
        "Frames a consumer's tracks read, as its heartbeats report.",
    )
    discarded = _Family(
        "mediabroker_consumer_discarded_frames_total",
        "counter",
        "Frames a consumer's tracks skipped (newer ones came first), as its heartbeats report.",
    )
    tracks = _Family("mediabroker_consumer_tracks", "gauge", "Tracks a consumer holds.")
    for row in stats.get("sessions", []):
        labels = _labels(consumer=row.get("name"), pid=row.get("pid"), uid=row.get("uid"))
        delivered.add(labels, _number(row.get("delivered")))
        discarded.add(labels, _number(row.get("discarded")))
        tracks.add(labels, len(row.get("tracks", [])))
    return [delivered, discarded, tracks]


def _process_families(stats: Mapping[str, Any]) -> list[_Family]:
    cpu = _Family(
        "mediabroker_process_cpu_seconds_total",
        "counter",
        "User and system CPU seconds of the daemon and each of its processes.",
    )
    rss = _Family(
        "mediabroker_process_resident_memory_bytes",
        "gauge",
        "Resident memory of the daemon and each of its processes.",
    )
    for row in stats.get("processes", []):
        labels = _labels(pid=row.get("pid"), role=row.get("role"))
        cpu.add(labels, _number(row.get("cpuSeconds")))
        rss.add(labels, _number(row.get("rssBytes")))
    return [cpu, rss]


def _control_family(stats: Mapping[str, Any]) -> _Family:
    family = _Family(
        "mediabroker_control_events_total",
        "counter",
        "The daemon's control socket: requests, malformed ones, errors, "
        "refused connections, bad handshakes, protocol errors.",
    )
    for event, count in dict(stats.get("counters", {})).items():
        family.add(_labels(event=event), _number(count))
    return family


_ENCODER_FIELDS: tuple[tuple[str, Kind, str, str], ...] = (
    ("viewers", "gauge", "viewers", "Viewers watching an encoder's stream now."),
    ("viewers_joined_total", "counter", "joined", "Viewers that joined an encoder's stream."),
    (
        "skipped_packets_total",
        "counter",
        "skipped",
        "Encoded packets not sent to viewers that lagged behind or waited for a keyframe.",
    ),
    ("encoded_frames_total", "counter", "frames", "Frames an encoder encoded."),
    (
        "encode_seconds_total",
        "counter",
        "encode_seconds",
        "Wall seconds an encoder spent encoding.",
    ),
    ("keyframes_total", "counter", "keyframes", "Keyframes an encoder made."),
)


def _gateway_families(gateway: GatewayFigures) -> list[_Family]:
    families = {
        key: _Family(f"mediabroker_gateway_{name}", kind, text)
        for name, kind, key, text in _ENCODER_FIELDS
    }
    for encoder in gateway.encoders:
        labels = _labels(
            device_id=encoder.device_id,
            width=encoder.width,
            height=encoder.height,
            frame_rate=None if encoder.frame_rate is None else f"{encoder.frame_rate:g}",
        )
        for key, family in families.items():
            family.add(labels, _number(getattr(encoder, key)))
    return list(families.values())


def _labels(**values: object) -> Labels:
    """Label pairs in order; an unknown (None) value leaves its label out, as
    Prometheus reads an empty one."""
    return tuple((name, str(value)) for name, value in values.items() if value is not None)


def _number(value: object) -> float | None:
    """A figure as a sample value; None (not measured yet, not reported) leaves it out."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value


# -- the text format ------------------------------------------------------------


def _render(family: _Family) -> str:
    lines = [
        f"# HELP {family.name} {_escape_help(family.help)}",
        f"# TYPE {family.name} {family.kind}",
    ]
    lines += [
        f"{family.name}{_render_labels(labels)} {_value(value)}"
        for labels, value in family.samples.items()
    ]
    return "\n".join(lines) + "\n"


def _render_labels(labels: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{name}="{_escape_label(value)}"' for name, value in labels)
    return f"{{{inner}}}" if inner else ""


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
