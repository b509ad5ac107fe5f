"""render_metrics: a stats reply as Prometheus text format 0.0.4, read back
with a strict parser of that format written here (no client library)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mediabroker.metrics import CONTENT_TYPE, EncoderFigures, GatewayFigures, render_metrics

# -- a strict reader of the text exposition format 0.0.4 ---------------------------

METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
Labels = frozenset[tuple[str, str]]


@dataclass
class Family:
    help: str | None = None
    type: str | None = None
    samples: dict[Labels, float] = field(default_factory=dict)


def parse(text: str) -> dict[str, Family]:
    """Families by name; fails on anything 0.0.4 does not allow, and on
    what it allows but no exporter should do (a second HELP or TYPE, a TYPE
    after samples, a family's samples apart, a repeated series, comments)."""
    assert text.endswith("\n"), "the last line must end with a newline"
    families: dict[str, Family] = {}
    order: list[str] = []
    for line in text[:-1].split("\n"):
        name = _parse_line(line, families)
        if not order or order[-1] != name:
            assert name not in order, f"{name}'s lines are not together"
            order.append(name)
    return families


def _parse_line(line: str, families: dict[str, Family]) -> str:
    if line.startswith("# HELP ") or line.startswith("# TYPE "):
        _, keyword, rest = line.split(" ", 2)
        name, _, text = rest.partition(" ")
        assert METRIC_NAME.fullmatch(name), line
        family = families.setdefault(name, Family())
        if keyword == "HELP":
            assert family.help is None, f"second HELP for {name}"
            family.help = _unescape(text, quotes=False)
        else:
            assert family.type is None and not family.samples, f"late or second TYPE: {name}"
            assert text in TYPES, line
            family.type = text
        return name
    assert not line.startswith("#") and line.strip() == line and line, repr(line)
    name, labels, value = _parse_sample(line)
    family = families.setdefault(name, Family())
    assert labels not in family.samples, f"repeated series {name}{dict(labels)}"
    family.samples[labels] = value
    return name


def _parse_sample(line: str) -> tuple[str, Labels, float]:
    match = METRIC_NAME.match(line)
    assert match, line
    name, rest = match.group(), line[match.end() :]
    labels: list[tuple[str, str]] = []
    if rest.startswith("{"):
        rest = rest[1:]
        while not rest.startswith("}"):
            label, rest = _parse_label(rest)
            labels.append(label)
            rest = rest[1:] if rest.startswith(",") else rest
        rest = rest[1:]
    assert len({n for n, _ in labels}) == len(labels), f"a label twice: {line}"
    assert rest.startswith(" "), line
    fields = rest[1:].split(" ")
    assert 1 <= len(fields) <= 2, line
    return name, frozenset(labels), _parse_value(fields[0])


def _parse_label(rest: str) -> tuple[tuple[str, str], str]:
    match = LABEL_NAME.match(rest)
    assert match and not match.group().startswith("__"), rest
    rest = rest[match.end() :]
    assert rest.startswith('="'), rest
    i, raw = 2, []
    while rest[i] != '"':
        if rest[i] == "\\":
            raw.append(rest[i : i + 2])
            i += 2
        else:
            assert rest[i] != "\n", "a raw newline in a label value"
            raw.append(rest[i])
            i += 1
    return (match.group(), _unescape("".join(raw), quotes=True)), rest[i + 1 :]


def _unescape(text: str, *, quotes: bool) -> str:
    escapes = {"\\\\": "\\", "\\n": "\n", **({'\\"': '"'} if quotes else {})}
    parts = re.split(r"(\\.)", text)
    for part in parts:
        assert not part.startswith("\\") or part in escapes, f"bad escape {part!r} in {text!r}"
    assert not text.endswith("\\") or text.endswith("\\\\"), text
    return "".join(escapes.get(p, p) for p in parts)


def _parse_value(text: str) -> float:
    if text in ("NaN", "+Inf", "-Inf"):
        return float(text.replace("Inf", "inf").replace("NaN", "nan"))
    assert re.fullmatch(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", text), text
    return float(text)


def checked(text: str) -> dict[str, Family]:
    """Parse, then check this exporter's own conventions on every family."""
    families = parse(text)
    for name, family in families.items():
        assert name.startswith("mediabroker_"), name
        assert family.help and family.type in ("counter", "gauge"), (name, family)
        if family.type == "counter":
            assert name.endswith("_total"), name
            assert all(v >= 0 for v in family.samples.values()), family
    return families


def value(families: dict[str, Family], name: str, **labels: str) -> float:
    matches = [v for k, v in families[name].samples.items() if set(labels.items()) <= k]
    assert len(matches) == 1, (name, labels, families[name].samples)
    return matches[0]


# -- a stats reply as the daemon sends it --------------------------------------------


def reply() -> dict[str, Any]:
    video = {
        "id": "2-video-640x480-bgr24-30fps",
        "deviceId": "2d709bfb",
        "label": "Fake camera (test pattern)",
        "state": "live",
        "holders": ["track:aa11", "source:3-video"],
        "holderCount": 2,
        "capture": {},
        "pid": 4573,
        "ring": "mb.2-video.abc",
        "frameRate": 30.0,
        "kind": "video",
        "width": 640,
        "height": 480,
        "pixelFormat": "bgr24",
        "frames": 260,
        "newestNs": 123,
        "shmBytes": 7373568,
        "measuredRate": 29.994,
        "droppedFrames": 3,
    }
    audio = {
        **{k: video[k] for k in ("state", "capture", "ring", "newestNs")},
        "id": "1-audio-48000hz-1ch",
        "deviceId": "74cff676",
        "label": "Fake microphone",
        "holders": [],
        "holderCount": 1,
        "pid": 4521,
        "frameRate": 0,
        "kind": "audio",
        "sampleRate": 48000,
        "channels": 1,
        "frames": 433920,
        "shmBytes": 384256,
        "measuredRate": None,  # not sampled twice yet
        "droppedFrames": 0,
    }
    sessions = [
        {
            "name": "probe",
            "pid": 10,
            "uid": 0,
            "gid": 0,
            "tracks": ["aa11"],
            "delivered": 7,
            "discarded": 2,
        },
        {
            "name": "new",
            "pid": 11,
            "uid": 1000,
            "gid": 1000,
            "tracks": [],
            "delivered": None,
            "discarded": None,
        },
    ]
    processes = [
        {"pid": 4512, "role": "daemon", "cpuSeconds": 0.67, "rssBytes": 56635392},
        {
            "pid": 4573,
            "role": "capture 2-video-640x480-bgr24-30fps",
            "cpuSeconds": 0.54,
            "rssBytes": 50114560,
        },
    ]
    counters = {"requests": 30, "malformed": 0, "bad handshakes": 1}
    return {
        "pid": 4512,
        "sessions": sessions,
        "sources": [video, audio],
        "processes": processes,
        "counters": counters,
    }


GATEWAY = GatewayFigures(
    encoders=[
        EncoderFigures(
            "2d709bfb",
            640,
            480,
            30.0,
            viewers=2,
            joined=5,
            skipped=12,
            frames=900,
            encode_seconds=4.5,
            keyframes=3,
        ),
        EncoderFigures(
            "2d709bfb",
            None,
            None,
            None,
            viewers=0,
            joined=1,
            skipped=0,
            frames=10,
            encode_seconds=0.25,
        ),
    ]
)

FAMILIES = {
    "mediabroker_source_info": "gauge",
    "mediabroker_source_frames_total": "counter",
    "mediabroker_source_dropped_frames_total": "counter",
    "mediabroker_source_measured_frames_per_second": "gauge",
    "mediabroker_source_nominal_frames_per_second": "gauge",
    "mediabroker_source_shm_bytes": "gauge",
    "mediabroker_source_readers": "gauge",
    "mediabroker_consumer_delivered_frames_total": "counter",
    "mediabroker_consumer_discarded_frames_total": "counter",
    "mediabroker_consumer_tracks": "gauge",
    "mediabroker_process_cpu_seconds_total": "counter",
    "mediabroker_process_resident_memory_bytes": "gauge",
    "mediabroker_control_events_total": "counter",
}
GATEWAY_FAMILIES = {
    "mediabroker_gateway_viewers": "gauge",
    "mediabroker_gateway_viewers_joined_total": "counter",
    "mediabroker_gateway_skipped_packets_total": "counter",
    "mediabroker_gateway_encoded_frames_total": "counter",
    "mediabroker_gateway_encode_seconds_total": "counter",
    "mediabroker_gateway_keyframes_total": "counter",
}

# -- tests ----------------------------------------------------------------------------


def test_every_family_once_with_help_and_type() -> None:
    families = checked(render_metrics(reply(), GATEWAY))
    assert {n: f.type for n, f in families.items()} == {**FAMILIES, **GATEWAY_FAMILIES}
    assert CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_no_gateway_no_gateway_families() -> None:
    assert set(checked(render_metrics(reply()))) == set(FAMILIES)


def test_an_empty_reply_still_names_every_family() -> None:
    families = checked(render_metrics({}, GatewayFigures()))
    assert set(families) == {*FAMILIES, *GATEWAY_FAMILIES}
    assert not families["mediabroker_source_info"].samples


def test_source_figures_carry_the_sources_labels() -> None:
    families = checked(render_metrics(reply()))
    video = {
        "source": "2-video-640x480-bgr24-30fps",
        "device_id": "2d709bfb",
        "label": "Fake camera (test pattern)",
        "kind": "video",
        "width": "640",
        "height": "480",
    }
    assert value(families, "mediabroker_source_frames_total", **video) == 260
    assert value(families, "mediabroker_source_dropped_frames_total", **video) == 3
    assert value(families, "mediabroker_source_measured_frames_per_second", **video) == 29.994
    assert value(families, "mediabroker_source_nominal_frames_per_second", **video) == 30
    assert value(families, "mediabroker_source_shm_bytes", **video) == 7373568
    assert value(families, "mediabroker_source_readers", **video) == 2
    info = value(families, "mediabroker_source_info", pixel_format="bgr24", state="live")
    assert info == 1
    audio = {"source": "1-audio-48000hz-1ch", "kind": "audio"}
    assert value(families, "mediabroker_source_nominal_frames_per_second", **audio) == 48000
    assert value(families, "mediabroker_source_info", channels="1", **audio) == 1
    audio_labels = next(
        k for k in families["mediabroker_source_frames_total"].samples if ("kind", "audio") in k
    )
    assert {n for n, _ in audio_labels} == {"source", "device_id", "label", "kind"}


def test_what_is_not_measured_yet_is_left_out() -> None:
    """A null rate or a session before its first heartbeat: no sample, no 0."""
    families = checked(render_metrics(reply()))
    rates = families["mediabroker_source_measured_frames_per_second"].samples
    assert [dict(k)["kind"] for k in rates] == ["video"]
    delivered = families["mediabroker_consumer_delivered_frames_total"].samples
    assert [dict(k)["consumer"] for k in delivered] == ["probe"]
    assert value(families, "mediabroker_consumer_tracks", consumer="new", uid="1000") == 0


def test_consumers_processes_and_control_counters() -> None:
    families = checked(render_metrics(reply()))
    assert (
        value(
            families,
            "mediabroker_consumer_delivered_frames_total",
            consumer="probe",
            pid="10",
            uid="0",
        )
        == 7
    )
    assert value(families, "mediabroker_consumer_discarded_frames_total", consumer="probe") == 2
    assert (
        value(families, "mediabroker_process_cpu_seconds_total", role="daemon", pid="4512") == 0.67
    )
    capture = {"role": "capture 2-video-640x480-bgr24-30fps"}
    assert value(families, "mediabroker_process_resident_memory_bytes", **capture) == 50114560
    assert value(families, "mediabroker_control_events_total", event="bad handshakes") == 1


def test_gateway_figures_per_encoder() -> None:
    families = checked(render_metrics(reply(), GATEWAY))
    sized = {"device_id": "2d709bfb", "width": "640", "height": "480", "frame_rate": "30"}
    assert value(families, "mediabroker_gateway_viewers", **sized) == 2
    assert value(families, "mediabroker_gateway_viewers_joined_total", **sized) == 5
    assert value(families, "mediabroker_gateway_skipped_packets_total", **sized) == 12
    assert value(families, "mediabroker_gateway_encoded_frames_total", **sized) == 900
    assert value(families, "mediabroker_gateway_encode_seconds_total", **sized) == 4.5
    assert value(families, "mediabroker_gateway_keyframes_total", **sized) == 3
    native = frozenset({("device_id", "2d709bfb")})  # no size asked: no size labels
    assert families["mediabroker_gateway_encoded_frames_total"].samples[native] == 10


def test_series_with_one_label_set_are_summed() -> None:
    """One process, two sessions of one name: one series, their sum."""
    stats = reply()
    stats["sessions"] = [dict(stats["sessions"][0]), dict(stats["sessions"][0])]
    families = checked(render_metrics(stats))
    assert value(families, "mediabroker_consumer_delivered_frames_total", consumer="probe") == 14


def test_no_track_ids_ring_names_or_capture_internals() -> None:
    text = render_metrics(reply())
    for secret in ("aa11", "mb.2-video.abc", "source:3-video", "newestNs"):
        assert secret not in text


def test_label_values_are_escaped() -> None:
    label = 'Cam "front" \\ door\nline two'
    stats = reply()
    stats["sources"][0]["label"] = label
    text = render_metrics(stats)
    assert 'label="Cam \\"front\\" \\\\ door\\nline two"' in text
    assert value(checked(text), "mediabroker_source_frames_total", label=label) == 260


@given(st.text(max_size=40), st.text(max_size=20))
def test_any_label_reads_back_as_it_was(label: str, name: str) -> None:
    stats = reply()
    stats["sources"][0]["label"] = label
    stats["sessions"][0]["name"] = name
    families = checked(render_metrics(stats))
    assert value(families, "mediabroker_source_shm_bytes", label=label) == 7373568
    assert value(families, "mediabroker_consumer_tracks", consumer=name, pid="10") == 1


def test_values_nan_infinite_and_integers() -> None:
    stats = reply()
    stats["sources"][0]["measuredRate"] = math.nan
    stats["sources"][0]["frameRate"] = math.inf
    text = render_metrics(stats)
    assert "} +Inf\n" in text and "} NaN\n" in text
    assert 'mediabroker_source_frames_total{source="2-video-640x480-bgr24-30fps"' in text
    assert "} 260\n" in text  # integers stay integers
    checked(text)


def test_the_parser_refuses_what_the_format_does_not_allow() -> None:
    """The checks above mean something: each broken text fails."""
    good = "# HELP mediabroker_x_total x.\n# TYPE mediabroker_x_total counter\n"
    broken = [
        good + 'mediabroker_x_total{a="b"} 1',  # no final newline
        good + good,  # HELP and TYPE twice
        good + 'mediabroker_x_total{a="b\\q"} 1\n',  # an unknown escape
        good + 'mediabroker_x_total{a="1"} 1\nmediabroker_x_total{a="1"} 2\n',  # twice
        good + "mediabroker_x_total{a=b} 1\n",  # an unquoted value
        good + "mediabroker_x_total 1\n# TYPE mediabroker_x_total counter\n",
        good + "mediabroker_x_total one\n",
    ]
    for text in broken:
        try:
            parse(text)
        except (AssertionError, IndexError):
            continue
        raise AssertionError(f"accepted {text!r}")
