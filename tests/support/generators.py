"""Generator writers and readers for the tests:
``python tests/support/generators.py MODE RUN_DIR [ARGS]``.

Each prints JSON lines on stdout (`clients.emit`), so a test can follow it.
Writers fill every frame with one value (frame number mod 250), so a reader
knows a torn frame (two values) and which frame it got, at any derived
size or pixel format. Hostile writers do to their staging ring what
`mediastream.generator` never would: they keep a read-write descriptor of
it (taken before its name is unlinked) and truncate, regrow or rewrite it,
or die in the middle of a frame.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import clients

import mediastream.generator as generator_module
from mediastream import (
    FrameOverwrittenError,
    MediaDevices,
    MediaStreamError,
    NotReadableError,
    ReadTimeoutError,
    VideoFrame,
)
from mediastream.generator import VideoTrackGenerator
from mediastream.ring import SHM_DIR, Ring, VideoFormat

VALUES = 250
_EMITTING = threading.Lock()  # event listeners emit from the client's event thread


def emit(**fields: object) -> None:
    with _EMITTING:
        clients.emit(**fields)


def _init(width: str, height: str, rate: str, pixel_format: str = "bgr24") -> dict[str, Any]:
    return {
        "width": int(width),
        "height": int(height),
        "frameRate": float(rate),
        "pixelFormat": pixel_format,
        "label": "Test generator",
    }


def _follow(gen: VideoTrackGenerator) -> None:
    """Emit the generator's and its own track's events."""
    for kind in ("watched", "unwatched", "ended"):
        gen.addEventListener(kind, lambda ev, kind=kind: emit(event=kind, watched=gen.watched))
    for kind in ("mute", "unmute", "ended"):
        gen.track.addEventListener(kind, lambda ev, kind=kind: emit(event="track-" + kind))


class Pacer(threading.Thread):
    """Writes a frame every 1/rate s (0: as fast as it can) until told to stop."""

    def __init__(self, gen: VideoTrackGenerator, rate: float) -> None:
        super().__init__(daemon=True)
        self.gen, self.period = gen, 1 / rate if rate > 0 else 0.0
        self.running = threading.Event()
        self.running.set()
        self.written = 0
        self.lock = threading.Lock()

    def run(self) -> None:
        shape = self.gen.format.shape
        frame = np.empty(shape, np.uint8)
        while True:
            self.running.wait()
            with self.lock:
                if self.gen.closed:
                    return
                frame[...] = self.written % VALUES
                try:
                    self.gen.write(frame)
                except MediaStreamError:
                    return
                self.written += 1
            if self.period:
                time.sleep(self.period)


def write(
    run_dir: str, width: str, height: str, rate: str, pixel_format: str, publish: str
) -> None:
    """A generator declared and written at ``rate`` ("10/0": declared 10 fps,
    written flat out); stdin lines steer it: mute, unmute, pause, resume,
    stop-track, close, exit."""
    with MediaDevices(run_dir, name="writer.py") as md:
        declared, _, pace = rate.partition("/")  # "10/0": declares 10 fps, writes flat out
        gen = md.createVideoTrackGenerator(
            _init(width, height, declared, pixel_format), publish=publish == "publish"
        )
        _follow(gen)
        pacer = Pacer(gen, float(pace or declared))
        pacer.start()
        emit(
            event="ready",
            deviceId=gen.deviceId,
            track=gen.track.id,
            settings=gen.track.getSettings(),
        )
        for line in sys.stdin:
            command = line.strip()
            if command == "mute":
                gen.muted = True
            elif command == "unmute":
                gen.muted = False
            elif command == "pause":
                pacer.running.clear()
            elif command == "resume":
                pacer.running.set()
            elif command == "stop-track":
                gen.track.stop()
            elif command == "close":
                with pacer.lock:
                    gen.close()
            elif command == "exit":
                os._exit(0)
            emit(done=command, written=pacer.written, muted=gen.muted)


def read(
    run_dir: str, device_id: str, width: str, height: str, pixel_format: str, extra: str
) -> None:
    """Read a published generator at this size and format (``extra``:
    "letterbox" or "-") until stdin says ``stop`` or the track ends;
    each frame's value, captureSeq and integrity in one line per frame."""
    with MediaDevices(run_dir, name="reader.py") as md:
        video: dict[str, Any] = {
            "deviceId": {"exact": device_id},
            "width": {"exact": int(width)},
            "height": {"exact": int(height)},
            "pixelFormat": {"exact": pixel_format},
        }
        if extra == "letterbox":
            video["resizeMode"] = "letterbox"
        track = md.getUserMedia({"video": video}).getVideoTracks()[0]
        ended = threading.Event()
        track.addEventListener("ended", lambda ev: ended.set())
        for kind in ("mute", "unmute"):
            track.addEventListener(kind, lambda ev, kind=kind: emit(event=kind))
        emit(event="ready", settings=track.getSettings())
        stop = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
        while not stop.is_set() and not ended.is_set():
            try:
                frame = track.read(timeout=0.5)
            except ReadTimeoutError:
                continue
            except NotReadableError:  # the track ended
                ended.set()
                break
            emit(**_describe(frame))
        gone = ended.is_set() or track.readyState == "ended"
        emit(event="ended" if gone else "stopped", state=track.readyState)


def _describe(frame: VideoFrame) -> dict[str, Any]:
    try:
        data = frame.copy().data
    except FrameOverwrittenError:
        return {"valid": False}
    content = data if data.dtype == np.uint8 else (data * 255).round().astype(np.int64)
    # A letterboxed frame's bands are black: the picture is the rest.
    values = np.unique(content[content > 0]) if (content == 0).any() else np.unique(content)
    if not len(values):
        values = np.zeros(1, np.int64)  # frame 0: all black, bands or not
    return {
        "valid": True,
        "shape": list(data.shape),
        "values": [int(v) for v in values[:4]],
        "captureSeq": frame.captureSeq,
        "seq": frame.seq,
        "timestamp": frame.timestamp,
        "monotonic": time.monotonic(),
    }


def count(run_dir: str, device_id: str, seconds: str) -> None:
    """How many frames a reader of ``device_id`` is woken for in ``seconds``."""
    with MediaDevices(run_dir, name="counter.py") as md:
        constraints = {"video": {"deviceId": {"exact": device_id}}}
        track = md.getUserMedia(constraints).getVideoTracks()[0]
        track.read(timeout=5.0)
        emit(event="ready")
        frames, deadline = 0, time.monotonic() + float(seconds)
        while time.monotonic() < deadline:
            try:
                track.read(timeout=max(0.01, deadline - time.monotonic()))
                frames += 1
            except MediaStreamError:
                break
        emit(frames=frames, seconds=float(seconds))
        track.stop()


# -- hostile writers ---------------------------------------------------------

_KEPT: list[int] = []


def _keep_descriptor(real: Any) -> Any:
    """create_staging, but keeping a read-write fd of the file for later."""

    def create(prefix: str, fmt: VideoFormat) -> Ring:
        ring = real(prefix, fmt)
        _KEPT.append(os.open(SHM_DIR / ring.name, os.O_RDWR))
        return ring

    return create


def _lying(real_format: VideoFormat, how: str) -> Any:
    """create_staging making a ring of another size, or the right size
    with a header that says another format."""

    def create(prefix: str, fmt: VideoFormat) -> Ring:
        if how == "size":
            other = VideoFormat(fmt.width * 2, fmt.height, fmt.pixel_format)
            return Ring.create(
                generator_module.staging_name(prefix),
                other,
                generator_module.STAGING_SLOTS,
                mode=0o644,
            )
        ring = Ring.create(
            generator_module.staging_name(prefix), fmt, generator_module.STAGING_SLOTS, mode=0o644
        )
        ring.header["width"] = fmt.width // 2  # the size stays: only the header lies
        return ring

    return create


def hostile(run_dir: str, attack: str, width: str, height: str, rate: str) -> None:
    """A published generator that writes 10 good frames, emits ``wrote``,
    then, on the next stdin line, does ``attack``: kill-mid-frame,
    truncate, regrow, liar-size, liar-header (the liars fail at creation)."""
    fmt = VideoFormat(int(width), int(height))
    if attack.startswith("liar-"):
        generator_module.create_staging = _lying(fmt, attack[5:])
    else:
        generator_module.create_staging = _keep_descriptor(generator_module.create_staging)
    with MediaDevices(run_dir, name="hostile.py") as md:
        try:
            gen = md.createVideoTrackGenerator(_init(width, height, rate), publish=True)
        except MediaStreamError as exc:
            emit(event="refused", error=type(exc).__name__, message=str(exc))
            return
        frame = np.empty(fmt.shape, np.uint8)
        emit(event="ready", deviceId=gen.deviceId)
        sys.stdin.readline()
        for i in range(10):
            frame[...] = i + 1
            gen.write(frame)
            time.sleep(1 / float(rate))
        emit(event="wrote", frames=10)
        sys.stdin.readline()
        if attack == "kill-mid-frame":
            with gen.frame() as view:
                view[: fmt.height // 2] = 200  # half a frame, then death
                os.kill(os.getpid(), signal.SIGKILL)
        fd = _KEPT[0]
        size = os.fstat(fd).st_size
        if attack == "truncate":
            os.ftruncate(fd, 4096)
        elif attack == "regrow":
            os.ftruncate(fd, 0)
            os.ftruncate(fd, size)  # zeros now, where the relay's slots were
            garbage = np.full(64, 0xFFFFFFFF, np.uint32).tobytes()
            os.pwrite(fd, garbage, 0)  # a header that says nonsense
        emit(event="attacked", attack=attack)
        sys.stdin.readline()  # stay alive, its session open, until told
        os._exit(0)  # never touch the broken mapping again (it would SIGBUS us)


def as_nobody(run_dir: str) -> None:
    """Become nobody, then try to publish a generator (refused), and make an
    unpublished one and read its own track (allowed)."""
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
    with MediaDevices(run_dir, name="nobody.py") as md:
        init = _init("160", "120", "30")
        try:
            md.createVideoTrackGenerator(init, publish=True).close()
            emit(event="published")
        except MediaStreamError as exc:
            emit(event="refused", error=type(exc).__name__, message=str(exc))
        with md.createVideoTrackGenerator(init) as gen:
            gen.write(np.full(gen.format.shape, 7, np.uint8))
            frame = gen.track.read(timeout=5.0)
            emit(event="own", values=[int(v) for v in np.unique(frame.copy().data)])
            try:
                md.publishDevice(gen)
                emit(event="published")
            except MediaStreamError as exc:
                emit(event="refused", error=type(exc).__name__, message=str(exc))


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    modes = {"write": write, "read": read, "count": count, "hostile": hostile, "nobody": as_nobody}
    modes[mode](*args)
