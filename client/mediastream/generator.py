"""Video track generators: a process publishes video as a new source.

Design note. This follows the spec's ``VideoTrackGenerator``
(mediacapture-transform): ``track`` is an ordinary track on a new source,
``muted`` mutes every track of it, ``close()`` ends them all, and nothing a
reader does ever blocks the writer (no backpressure: a write always
succeeds or is dropped).

The writer never writes into a ring that readers map. It writes into a
*staging ring* of its own (a file it creates in /dev/shm under the daemon's
prefix, named ``<prefix>gen.<random>``, the ordinary ring layout and
`VideoWriter` seqlock), and hands it to the daemon (``createGenerator``),
which opens it read-only after checking that it is the asker's own regular
file of exactly the declared format's size; then the name is unlinked, as a
doorbell FIFO's is, so nothing is left in /dev/shm whatever happens to the
writer. The daemon creates the real ring in the format it validated and
starts a normal source on it whose capture backend is a *relay*
(`mediabroker.capture.relay`): it copies each new staging frame into the
real ring with ``preadv`` (one copy per produced frame, never one per
reader) and checks the staging slot's seqlock around the copy.

Why a copy instead of zero copy: it keeps every reader's code unchanged
(readers map daemon-made rings by name, as for a camera) and it makes the
writer harmless. Whatever the writer does to its own file (truncate it,
replace it, rewrite its header, die mid-frame), the relay only ever reads
it with system calls, which return short or stale data instead of raising
SIGBUS; a torn or short frame is never committed; the format readers see
comes from the daemon, not from anything the writer can write. The relay
commits at most twice the declared frame rate (the newest frame wins) and
clamps the writer's timestamps to its own commit time.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from .errors import ConstraintTypeError, InvalidStateError
from .events import Event, EventHandler, EventTarget
from .frames import NS_PER_S
from .paths import resolve_shm_prefix
from .ring import SHM_DIR, Ring, VideoFormat, VideoWriter

if TYPE_CHECKING:
    from .devices import MediaDevices
    from .track import VideoTrack

__all__ = [
    "GENERATOR_PIXEL_FORMATS",
    "MAX_FRAME_RATE",
    "STAGING_SLOTS",
    "VideoTrackGenerator",
    "check_generator_init",
    "open_generator",
    "staging_name",
]

STAGING_SLOTS = 4  # the writer's own ring: the relay reads the newest, the writer laps freely
GENERATOR_PIXEL_FORMATS = ("bgr24", "rgb24", "gray8")
MAX_FRAME_RATE = 240.0  # frames per second a generator may declare
MAX_LABEL_CHARS = 100
_INIT_KEYS = frozenset({"width", "height", "frameRate", "pixelFormat", "label"})


def staging_name(prefix: str) -> str:
    """A fresh staging ring name under the daemon's shared-memory ``prefix``."""
    return f"{prefix}gen.{secrets.token_hex(8)}"


def check_generator_init(init: Mapping[str, Any]) -> tuple[VideoFormat, float, str]:
    """The (format, frame rate, label) a generator ``init`` asks for; raises
    `ConstraintTypeError` (a `TypeError`) naming what is wrong. Both sides
    call it: the daemon never trusts the client's check."""
    if not isinstance(init, Mapping):
        raise ConstraintTypeError(f"a generator's init is a dict, not {type(init).__name__}")
    unknown = sorted(set(init) - _INIT_KEYS)
    if unknown:
        raise ConstraintTypeError(
            f"unknown generator option {unknown[0]!r}; the options are {sorted(_INIT_KEYS)}"
        )
    width, height = _integer(init, "width"), _integer(init, "height")
    rate = init.get("frameRate")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)):
        raise ConstraintTypeError(f"frameRate must be a number of frames per second, not {rate!r}")
    if not 1 <= rate <= MAX_FRAME_RATE:
        raise ConstraintTypeError(f"frameRate is {rate:g}; it must be 1 to {MAX_FRAME_RATE:g}")
    pixel_format = init.get("pixelFormat", "bgr24")
    if pixel_format not in GENERATOR_PIXEL_FORMATS:
        raise ConstraintTypeError(
            f"pixelFormat {pixel_format!r} is not one of {list(GENERATOR_PIXEL_FORMATS)}"
        )
    label = init.get("label", "Generated video")
    if not isinstance(label, str) or not 0 < len(label) <= MAX_LABEL_CHARS:
        raise ConstraintTypeError(f"label must be 1 to {MAX_LABEL_CHARS} characters, not {label!r}")
    if not label.isprintable():
        raise ConstraintTypeError(f"label {label!r} has characters that are not printable")
    try:
        fmt = VideoFormat(width, height, pixel_format)
    except ValueError as exc:
        raise ConstraintTypeError(str(exc)) from None
    return fmt, float(rate), label


def _integer(init: Mapping[str, Any], name: str) -> int:
    value = init.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConstraintTypeError(f"{name} must be an integer number of pixels, not {value!r}")
    return value


class VideoTrackGenerator(EventTarget[Event]):
    """A video source this process writes; made by
    `MediaDevices.createVideoTrackGenerator`.

    ``track`` is a `VideoTrack` on it; more come from ``track.clone()``,
    ``applyConstraints`` (other sizes, rates, pixel formats, letterbox) and,
    once published (`MediaDevices.publishDevice`), any process's
    ``getUserMedia({"video": {"deviceId": gen.deviceId}})``.

    Events: ``watched`` when a first track reads it again, ``unwatched``
    when the last track on it stopped (``watched`` says which holds now),
    ``ended`` when the daemon ended it (the session went away). Close it
    (or use ``with``): every track of it then ends.
    """

    onwatched = EventHandler()
    onunwatched = EventHandler()
    onended = EventHandler()
    _ring: Ring | None = None  # set last: a half-built generator closes cleanly

    def __init__(
        self,
        devices: MediaDevices,
        generator_id: str,
        ring: Ring,
        track: VideoTrack,
        frame_rate: float,
        label: str,
    ) -> None:
        """Internal: `MediaDevices.createVideoTrackGenerator` builds it."""
        super().__init__()
        self._devices = devices
        self.id = generator_id
        self.track = track
        self.label = label
        self.frameRate = frame_rate
        self.deviceId: str | None = None  # set by publishDevice
        self.watched = True  # gen.track reads it
        self._muted = False
        self._ended = False
        self._lock = threading.RLock()  # one writer at a time on the staging ring
        self._writer = VideoWriter(ring)
        fmt = ring.format
        assert isinstance(fmt, VideoFormat)
        self.format = fmt
        self._ring = ring

    @property
    def muted(self) -> bool:
        """The spec's ``muted``: while True, writes are dropped and every
        track of this generator is muted (``mute`` fires on each)."""
        return self._muted

    @muted.setter
    def muted(self, value: bool) -> None:
        value = bool(value)
        if value == self._muted:
            return
        self._check_open()
        self._devices._connection_request("muteGenerator", {"generatorId": self.id, "muted": value})
        self._muted = value

    @property
    def closed(self) -> bool:
        return self._ring is None

    def write(self, data: np.ndarray, timestamp: float | None = None) -> None:
        """Publish one frame: a copy of ``data`` (the generator's shape,
        uint8). ``timestamp`` is CLOCK_MONOTONIC seconds (`time.monotonic`),
        now by default; the relay keeps it only if it lies within the last
        second. Never blocks on readers; dropped while `muted`. Raises
        `InvalidStateError` once closed or ended, `ConstraintTypeError` (a
        `TypeError`) for another shape or dtype."""
        expected = self.format.shape
        if not isinstance(data, np.ndarray) or data.shape != expected or data.dtype != np.uint8:
            shape = getattr(data, "shape", None)
            raise ConstraintTypeError(
                f"a frame of this generator is a uint8 array of shape {expected}, "
                f"not {type(data).__name__} {shape} {getattr(data, 'dtype', '')}"
            )
        with self.frame(timestamp) as view:
            np.copyto(view, data)

    @contextlib.contextmanager
    def frame(self, timestamp: float | None = None) -> Iterator[np.ndarray]:
        """The next staging slot's pixels, writable, to fill in place; the
        frame is published when the block ends normally (not when it
        raises). ``timestamp`` as for `write`."""
        self._check_open()
        with self._lock:
            writer = self._writer
            view = writer.begin()
            yield view
            if self._muted or self.closed:
                return  # the spec drops frames written while muted
            captured_ns = time.monotonic_ns() if timestamp is None else int(timestamp * NS_PER_S)
            wall_ns = time.time_ns() - (time.monotonic_ns() - captured_ns)
            writer.commit(captured_ns, wall_ns)

    def close(self) -> None:
        """The spec's close of the writable: every track of this generator
        ends (``ended``), and a published device disappears. Idempotent."""
        ring, self._ring = self._ring, None
        if ring is None:
            return
        self._devices._forget_generator(self)
        with self._lock:
            del self._writer
            ring.close()
        self._ended = True

    def _check_open(self) -> None:
        if self._ring is None or self._ended:
            raise InvalidStateError(f"generator {self.label!r} is closed or has ended")

    # -- notices from the daemon (dispatch thread) ------------------------

    def _on_notice(self, payload: Mapping[str, Any]) -> None:
        kind = payload.get("type")
        if kind in ("watched", "unwatched"):
            self.watched = kind == "watched"
            self.dispatchEvent(Event(str(kind)))
        elif kind == "ended" and not self._ended:
            self._ended = True
            self.dispatchEvent(Event("ended"))

    def __enter__(self) -> VideoTrackGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        if self._ring is not None:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2)
            self.close()

    def __repr__(self) -> str:
        fmt = self.format if hasattr(self, "format") else None
        size = f"{fmt.width}x{fmt.height} {fmt.pixel_format}" if fmt else "?"
        state = "closed" if self.closed else ("ended" if self._ended else "live")
        muted = " muted" if self._muted else ""
        return f"<VideoTrackGenerator {self.label!r} {size} {self.frameRate:g} fps {state}{muted}>"


def create_staging(prefix: str, fmt: VideoFormat) -> Ring:
    """The writer's staging ring, mode 0644: the daemon (another user) reads
    it, only we write. Raises `NotReadableError` when /dev/shm is full."""
    for _ in range(3):
        try:
            return Ring.create(
                staging_name(prefix), fmt, STAGING_SLOTS, mode=0o644, shm_dir=SHM_DIR
            )
        except FileExistsError:
            continue
    raise InvalidStateError("three random staging ring names were taken; try again")


def open_generator(
    devices: MediaDevices, init: Mapping[str, Any], publish: bool
) -> VideoTrackGenerator:
    """`MediaDevices.createVideoTrackGenerator`'s work: check ``init``, make
    the staging ring, register it, adopt the track. The staging name is
    unlinked once the daemon has it open (or refused it)."""
    fmt, frame_rate, label = check_generator_init(init)
    connection = devices._live_connection()
    ring = create_staging(connection.shm_prefix or resolve_shm_prefix(), fmt)
    try:
        args = {
            "width": fmt.width,
            "height": fmt.height,
            "frameRate": frame_rate,
            "pixelFormat": fmt.pixel_format,
            "label": label,
            "staging": ring.name,
            "publish": bool(publish),
        }
        try:
            result = devices._connection_request("createGenerator", args)
        finally:
            Ring.unlink(ring.name, SHM_DIR)
        track = devices._adopt_either(result["track"])
        assert track.kind == "video"
        generator = VideoTrackGenerator(
            devices, str(result["generatorId"]), ring, cast("VideoTrack", track), frame_rate, label
        )
    except BaseException:
        ring.close()
        raise
    device_id = result.get("deviceId")
    generator.deviceId = str(device_id) if device_id else None
    return generator
