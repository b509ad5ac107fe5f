"""The client side of the ``mediabroker`` command: devices, stats, snapshot, record.

Each of these is an ordinary client of a running daemon: it uses the public
`mediastream` API (plus `MediaDevices.broker_stats()`), as any consumer
would, so it works for any user the daemon lets in. Failures are
`CommandError` (the command exits 1, or 2 for a usage mistake) or the
library's own errors (`NotReadableError` when no daemon runs,
`NotAllowedError` when its access rules refuse us), which the command line
reports in one line.
"""

from __future__ import annotations

import json
import pwd
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from mediabroker.errors import CommandError
from mediastream import (
    AudioData,
    FrameOverwrittenError,
    InputDeviceInfo,
    MediaDeviceInfo,
    MediaDevices,
    MediaStreamTrack,
    VideoFrame,
)

__all__ = [
    "StatsSample",
    "capability_summary",
    "find_device",
    "run_devices",
    "run_fake_add",
    "run_fake_remove",
    "run_record",
    "run_snapshot",
    "run_stats",
    "stats_report",
]

READ_TIMEOUT_S = 5.0  # a device start takes up to the daemon's start timeout
PROGRESS_EVERY_S = 0.1  # tty progress line refresh; one line a second otherwise
KIND_WORDS = {
    "camera": "videoinput",
    "video": "videoinput",
    "microphone": "audioinput",
    "mic": "audioinput",
    "audio": "audioinput",
}
VIDEO_CODECS = {".avi": "MJPG", ".mp4": "mp4v"}  # the headless wheel has no H.264 encoder
MIB = 1024 * 1024


# -- choosing a device -------------------------------------------------------


def find_device(
    infos: list[MediaDeviceInfo], query: str, kind: str | None = None
) -> MediaDeviceInfo:
    """The one device ``query`` names: its deviceId or a unique prefix of it
    (4+ characters), its label or a unique part of it (any case), or a kind
    word ("camera", "microphone") for the first device of that kind.
    Raises `CommandError` listing the candidates when none or several fit."""
    candidates = [i for i in infos if kind is None or i.kind == kind]
    lowered = query.lower()
    rules: list[Callable[[MediaDeviceInfo], bool]] = [
        lambda i: i.deviceId == query,
        lambda i: i.label.lower() == lowered,
        lambda i: len(query) >= 4 and i.deviceId.startswith(query),
        lambda i: lowered in i.label.lower(),
    ]
    for rule in rules:
        found = [i for i in candidates if rule(i)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise CommandError(f"{query!r} names {len(found)} devices: {_listing(found)}", 2)
    word_kind = KIND_WORDS.get(lowered)
    if word_kind is not None and kind in (None, word_kind):
        of_kind = [i for i in candidates if i.kind == word_kind]
        if of_kind:
            return of_kind[0]
    what = {"videoinput": "camera", "audioinput": "microphone"}.get(kind or "", "device")
    raise CommandError(f"no {what} matches {query!r}; there are: {_listing(candidates)}", 2)


def _listing(infos: list[MediaDeviceInfo]) -> str:
    return ", ".join(f"{i.label!r} ({i.deviceId[:8]})" for i in infos) or "none"


def _open_track(
    devices: MediaDevices, info: MediaDeviceInfo, extra: dict[str, Any]
) -> MediaStreamTrack:
    kind = "video" if info.kind == "videoinput" else "audio"
    constraints = {kind: {"deviceId": {"exact": info.deviceId}, **extra}}
    return devices.getUserMedia(constraints).getTracks()[0]


def _size_constraints(width: int | None, height: int | None) -> dict[str, Any]:
    return {
        name: {"exact": value}
        for name, value in (("width", width), ("height", height))
        if value is not None
    }


# -- devices -------------------------------------------------------------------


def capability_summary(info: MediaDeviceInfo) -> str:
    """One line: sizes, rates and formats of a camera; rates and channels of a microphone."""
    if not isinstance(info, InputDeviceInfo):
        return ""
    caps = info.getCapabilities()
    parts = []
    if "width" in caps and "height" in caps:
        low = f"{caps['width']['min']}x{caps['height']['min']}"
        high = f"{caps['width']['max']}x{caps['height']['max']}"
        parts.append(high if low == high else f"{low}..{high}")
    if "frameRate" in caps:
        parts.append(f"{_span(caps['frameRate'])} fps")
    if "pixelFormat" in caps:
        parts.append("/".join(caps["pixelFormat"]))
    if "sampleRate" in caps:
        parts.append(f"{_span(caps['sampleRate'])} Hz")
    if "channelCount" in caps:
        parts.append(f"{_span(caps['channelCount'])} ch")
    return ", ".join(parts)


def _span(value: Any) -> str:
    if isinstance(value, dict):
        low, high = value.get("min"), value.get("max")
        return f"{low:g}" if low == high else f"{low:g}..{high:g}"
    return str(value)


def run_devices(run_dir: Path | None, as_json: bool, out: TextIO) -> int:
    with MediaDevices(run_dir, name="mediabroker devices") as devices:
        infos = devices.enumerateDevices()
    if as_json:
        rows = [{**i.toJSON(), "capabilities": _capabilities(i)} for i in infos]
        json.dump(rows, out, indent=2)
        out.write("\n")
        return 0
    table = [[i.kind, i.label, i.deviceId, capability_summary(i)] for i in infos]
    out.write(_table(["KIND", "LABEL", "ID", "CAPABILITIES"], table))
    if not infos:
        out.write("(the daemon offers no devices)\n")
    return 0


def _capabilities(info: MediaDeviceInfo) -> dict[str, Any]:
    return info.getCapabilities() if isinstance(info, InputDeviceInfo) else {}


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=False)]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    ]
    return "\n".join(lines) + "\n"


# -- stats ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatsSample:
    at: float  # time.monotonic() when taken
    stats: dict[str, Any]


def take_sample(devices: MediaDevices) -> StatsSample:
    return StatsSample(time.monotonic(), devices.broker_stats())


def stats_report(first: StatsSample | None, second: StatsSample) -> dict[str, Any]:
    """Sources, consumers and processes from ``second``; rates (fps, drops,
    CPU %) over the time since ``first`` (None: rates are null)."""
    stats = second.stats
    before = first.stats if first is not None else {}
    elapsed = second.at - first.at if first is not None else 0.0
    old_sources = {s["id"]: s for s in before.get("sources", [])}
    old_processes = {p["pid"]: p for p in before.get("processes", [])}
    return {
        "daemon": {
            "pid": stats.get("pid"),
            "counters": stats.get("counters", {}),
            "interval_s": round(elapsed, 3) if first is not None else None,
        },
        "sources": [_source_row(s, old_sources.get(s["id"])) for s in stats.get("sources", [])],
        "consumers": [_consumer_row(s) for s in stats.get("sessions", [])],
        "processes": [
            _process_row(p, old_processes.get(p["pid"]), elapsed)
            for p in stats.get("processes", [])
        ],
    }


def _source_row(now: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    kind = now.get("kind", "")
    if kind == "video":
        fmt = f"{now['width']}x{now['height']} {now['pixelFormat']}"
    elif kind == "audio":
        fmt = f"{now['sampleRate']} Hz x{now['channels']}"
    else:
        fmt = ""
    rate, drops = None, None
    if old is not None and now.get("newestNs") and old.get("newestNs"):
        span_s = (now["newestNs"] - old["newestNs"]) / 1e9
        frames = now["frames"] - old["frames"]
        if span_s > 0 and frames >= 0:
            rate = frames / span_s
            if kind == "video" and now.get("frameRate"):
                drops = max(0, round(span_s * now["frameRate"]) - frames)
        elif frames == 0:
            rate = 0.0
    return {
        "id": now["id"],
        "device": now.get("label", ""),
        "state": now.get("state", ""),
        "kind": kind,
        "format": fmt,
        "nominalRate": now.get("frameRate") if kind == "video" else now.get("sampleRate"),
        "rate": None if rate is None else round(rate, 2),  # frames or sample frames a second
        "frames": now.get("frames", 0),
        "drops": drops,
        "shmBytes": now.get("shmBytes", 0),
        "consumers": now.get("refs", 0),
        "pid": now.get("pid"),
    }


def _consumer_row(session: dict[str, Any]) -> dict[str, Any]:
    uid = session.get("uid")
    return {
        "pid": session.get("pid"),
        "name": session.get("name", ""),
        "uid": uid,
        "user": _user_name(uid) if isinstance(uid, int) else "",
        "tracks": len(session.get("tracks", [])),
        # Counted in each client; null while the daemon does not collect them.
        "delivered": session.get("delivered"),
        "discarded": session.get("discarded"),
    }


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _process_row(now: dict[str, Any], old: dict[str, Any] | None, elapsed: float) -> dict[str, Any]:
    cpu = None
    if old is not None and elapsed > 0:
        cpu = round(max(0.0, (now["cpuSeconds"] - old["cpuSeconds"]) / elapsed * 100), 1)
    return {"pid": now["pid"], "role": now["role"], "cpuPercent": cpu, "rssBytes": now["rssBytes"]}


def render_stats(report: dict[str, Any], run_dir: Path) -> str:
    daemon = report["daemon"]
    counters = ", ".join(f"{k} {v}" for k, v in daemon["counters"].items())
    head = f"mediabroker pid {daemon['pid']} on {run_dir} ({counters})\n"
    sources = [
        [
            s["id"],
            s["device"],
            s["state"],
            s["format"],
            _rate(s["rate"], s["kind"]),
            str(s["frames"]),
            _opt(s["drops"]),
            _mib(s["shmBytes"]),
            str(s["consumers"]),
        ]
        for s in report["sources"]
    ]
    consumers = [
        [
            str(c["pid"]),
            c["name"],
            c["user"],
            str(c["tracks"]),
            _opt(c["delivered"]),
            _opt(c["discarded"]),
        ]
        for c in report["consumers"]
    ]
    processes = [
        [str(p["pid"]), p["role"], _opt(p["cpuPercent"], "{:.1f}"), _mib(p["rssBytes"])]
        for p in report["processes"]
    ]
    return "".join(
        [
            head,
            "\nSOURCES\n",
            _table(
                ["ID", "DEVICE", "STATE", "FORMAT", "RATE", "FRAMES", "DROPS", "SHM", "TRACKS"],
                sources,
            )
            if sources
            else "(none)\n",
            "\nCONSUMERS\n",
            _table(["PID", "NAME", "USER", "TRACKS", "DELIVERED", "DISCARDED"], consumers)
            if consumers
            else "(none)\n",
            "\nPROCESSES\n",
            _table(["PID", "ROLE", "CPU%", "RSS"], processes),
        ]
    )


def _rate(rate: float | None, kind: str) -> str:
    if rate is None:
        return "-"
    return f"{rate:.1f} fps" if kind == "video" else f"{rate:.0f} Hz"


def _opt(value: Any, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def _mib(size: int) -> str:
    return f"{size / MIB:.1f} MiB"


def run_stats(
    run_dir: Path | None, as_json: bool, interval_s: float, count: int | None, out: TextIO
) -> int:
    """``--json``: one report over one interval. Otherwise a live view that
    refreshes every ``interval_s`` until Ctrl-C (or ``count`` refreshes)."""
    with MediaDevices(run_dir, name="mediabroker stats") as devices:
        previous = take_sample(devices)
        if as_json:
            time.sleep(interval_s)  # a rate needs two samples
            json.dump(stats_report(previous, take_sample(devices)), out, indent=2)
            out.write("\n")
            return 0
        clear = "\033[H\033[2J" if out.isatty() else ""
        shown = 0
        try:
            while count is None or shown < count:
                time.sleep(interval_s)
                sample = take_sample(devices)
                out.write(clear + render_stats(stats_report(previous, sample), devices.run_dir))
                out.write("\n" if not clear else "")
                out.flush()
                previous, shown = sample, shown + 1
        except KeyboardInterrupt:
            pass  # the way to leave a live view
    return 0


# -- snapshot ------------------------------------------------------------------


def run_snapshot(
    run_dir: Path | None,
    query: str,
    output: Path,
    width: int | None,
    height: int | None,
    out: TextIO,
) -> int:
    """Save the next frame of a camera to ``output`` (PNG is lossless; any
    image format OpenCV writes)."""
    import cv2

    if not cv2.haveImageWriter(str(output)):
        raise CommandError(
            f"cannot write {output.suffix or 'extension-less'} images; name the file .png or .jpg",
            2,
        )
    with MediaDevices(run_dir, name="mediabroker snapshot") as devices:
        info = find_device(devices.enumerateDevices(), query, "videoinput")
        track = _open_track(devices, info, _size_constraints(width, height))
        try:
            frame = _next_frame(track)
        finally:
            track.stop()
    if not cv2.imwrite(str(output), _bgr(frame)):
        raise CommandError(f"OpenCV could not write {output}")
    shape = "x".join(str(n) for n in frame.data.shape[1::-1])
    out.write(f"saved frame {frame.seq} ({shape} {frame.format}) of {info.label} to {output}\n")
    return 0


def _next_frame(track: MediaStreamTrack) -> VideoFrame:
    """The next frame, as a verified private copy."""
    while True:
        frame = track.read(timeout=READ_TIMEOUT_S)
        assert isinstance(frame, VideoFrame)
        try:
            return frame.copy()
        except FrameOverwrittenError:
            continue  # lapped while copying: the next one will do


def _bgr(frame: VideoFrame) -> np.ndarray:
    """Pixels in the channel order OpenCV writes."""
    if frame.format == "rgb24":
        return np.ascontiguousarray(frame.data[:, :, ::-1])
    return frame.data


# -- fake devices ----------------------------------------------------------------


def run_fake_add(run_dir: Path | None, kind: str, label: str | None, out: TextIO) -> int:
    """Plug a fake device into the daemon; print its deviceId."""
    with MediaDevices(run_dir, name="mediabroker fake-device") as devices:
        if label is None:
            noun = "camera" if kind == "videoinput" else "microphone"
            same = [i for i in devices.enumerateDevices() if i.kind == kind]
            label = f"Fake {noun} {len(same) + 1}"
        device_id = devices.add_fake_device(kind, label)
    out.write(f"{device_id}\n")
    return 0


def run_fake_remove(run_dir: Path | None, query: str, out: TextIO) -> int:
    """Unplug a fake device added at run time (`NotFoundError` for any other)."""
    with MediaDevices(run_dir, name="mediabroker fake-device") as devices:
        info = find_device(devices.enumerateDevices(), query)
        devices.remove_fake_device(info.deviceId)
    out.write(f"removed {info.label!r} ({info.deviceId})\n")
    return 0


# -- record --------------------------------------------------------------------


class Progress:
    """One status line on a terminal (redrawn in place), one line a second otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = 0.0
        self._width = 0

    def update(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last < (PROGRESS_EVERY_S if self._tty else 1.0):
            return
        self._last = now
        if self._tty:
            self._stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def finish(self) -> None:
        """End the redrawn line, so what follows starts on a line of its own."""
        if self._tty and self._width:
            self._stream.write("\n")
            self._stream.flush()


def run_record(
    run_dir: Path | None,
    query: str,
    output: Path,
    duration_s: float,
    width: int | None,
    height: int | None,
    progress: TextIO,
) -> int:
    """Record ``duration_s`` seconds of a camera (.avi MJPG, .mp4 mp4v) or a
    microphone (.wav, 16-bit PCM) to ``output``, with a progress line."""
    suffix = output.suffix.lower()
    if suffix != ".wav" and suffix not in VIDEO_CODECS:
        raise CommandError(
            f"cannot record to {suffix or 'extension-less'} files: "
            "use .avi or .mp4 for a camera, .wav for a microphone",
            2,
        )
    kind = "audioinput" if suffix == ".wav" else "videoinput"
    with MediaDevices(run_dir, name="mediabroker record") as devices:
        info = find_device(devices.enumerateDevices(), query, kind)
        extra = _size_constraints(width, height) if kind == "videoinput" else {}
        track = _open_track(devices, info, extra)
        try:
            if kind == "audioinput":
                summary = _record_audio(track, output, duration_s, Progress(progress))
            else:
                summary = _record_video(track, output, duration_s, Progress(progress))
        finally:
            track.stop()
    progress.write(f"wrote {summary} of {info.label} to {output}\n")
    return 0


def _record_video(
    track: MediaStreamTrack, output: Path, duration_s: float, progress: Progress
) -> str:
    import cv2

    settings = track.getSettings()
    size = (int(settings["width"]), int(settings["height"]))
    rate = float(settings["frameRate"])
    fourcc = cv2.VideoWriter.fourcc(*VIDEO_CODECS[output.suffix.lower()])
    color = settings.get("pixelFormat", "bgr24") != "gray8"
    writer = cv2.VideoWriter(str(output), fourcc, rate, size, isColor=color)
    if not writer.isOpened():
        raise CommandError(f"OpenCV cannot write {output} ({output.suffix} at {rate:g} fps)")
    target = max(1, round(duration_s * rate))
    written = skipped = last_seq = 0
    try:
        while written < target:
            frame = _next_frame(track)
            # A frame the reader missed is repeated, so the file keeps real time.
            gap = frame.seq - last_seq if last_seq else 1
            skipped += gap - 1
            last_seq = frame.seq
            image = _bgr(frame)
            for _ in range(min(gap, target - written)):
                writer.write(image)
                written += 1
            progress.update(
                f"recording {track.label}: {written / rate:.1f} / {target / rate:.1f} s, "
                f"{written} frames, {skipped} repeated"
            )
    finally:
        writer.release()
    progress.finish()
    return f"{written} frames ({size[0]}x{size[1]} at {rate:g} fps, {skipped} repeated)"


def _record_audio(
    track: MediaStreamTrack, output: Path, duration_s: float, progress: Progress
) -> str:
    settings = track.getSettings()
    rate, channels = int(settings["sampleRate"]), int(settings["channelCount"])
    target = max(1, round(duration_s * rate))
    written = 0
    with wave.open(str(output), "wb") as file:
        file.setnchannels(channels)
        file.setsampwidth(2)
        file.setframerate(rate)
        while written < target:
            block = track.read(timeout=READ_TIMEOUT_S)
            assert isinstance(block, AudioData)
            samples = block.data[: target - written]
            pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
            file.writeframes(pcm.tobytes())
            written += len(samples)
            progress.update(
                f"recording {track.label}: {written / rate:.1f} / {target / rate:.1f} s"
            )
    progress.finish()
    return f"{written / rate:.1f} s ({rate} Hz, {channels} channel(s), 16-bit)"
