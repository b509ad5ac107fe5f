"""The capture process: one per open source, started with ``spawn``.

It attaches to the ring the daemon created, drives one backend (the seam in
`mediabroker.capture.backend`, opened through `mediabroker.capture.registry`),
writes each frame straight into the next slot no reader holds and rings
the ring's doorbell. It tells the daemon what happens to it (ready,
failed, ended) on a PUSH socket, and takes readers' hold tables from it on
a socket pair. A crash here costs a restart, never the daemon; the process
exits on its own when the daemon is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

import msgpack
import zmq

from mediabroker.capture.backend import (
    AudioBackend,
    BackendSpec,
    VideoBackend,
    backend_counters,
    capture_origin,
)
from mediabroker.capture.registry import open_audio_backend, open_video_backend
from mediabroker.errors import CaptureError, EndOfStream
from mediastream.ring import AudioWriter, Ring, VideoFormat, VideoWriter

if TYPE_CHECKING:  # the daemon imports this module for CaptureSpec only
    from mediabroker.capture.readers import ReaderChannel

__all__ = ["CaptureSpec", "capture_main", "decode_status"]

log = logging.getLogger(__name__)

EXIT_FAILED = 3  # the backend could not open or failed: restart may help
STATUS_LINGER_MS = 1000  # let the last status message reach the daemon
COUNTERS_S = 1.0  # how often the backend's counters go to the daemon


@dataclass(frozen=True, slots=True)
class CaptureSpec:
    """Everything a capture process needs; plain data across the spawn boundary."""

    source_id: str
    ring_name: str
    backend: BackendSpec
    frame_rate: float
    status_endpoint: str
    parent_pid: int
    log_level: int = logging.INFO
    nice: int = 0  # a lower CPU priority for sources past their user's fair share


def decode_status(data: bytes) -> dict[str, Any]:
    """A status message from a capture process (trusted: our own child)."""
    message: dict[str, Any] = msgpack.unpackb(data, raw=False)
    return message


class _StopRequested(Exception):
    """SIGTERM arrived while a backend waited for a frame (internal)."""


class _Stop:
    """SIGTERM's handler. The loop checks ``requested`` between frames; a
    backend blocked waiting for a frame (a derived source whose parent is
    stalled, a silent sound server) is interrupted instead."""

    def __init__(self, parent_pid: int) -> None:
        self.requested = False
        self._parent_pid = parent_pid
        self._waiting = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self._waiting:
            self._waiting = False
            raise _StopRequested

    def should_stop(self) -> bool:
        # An orphan (daemon killed) stops too: nothing would ever reap it.
        return self.requested or os.getppid() != self._parent_pid

    @contextlib.contextmanager
    def waiting(self) -> Iterator[None]:
        """Around a backend's blocking read: SIGTERM interrupts it."""
        self._waiting = True
        try:
            yield
        finally:
            self._waiting = False


def capture_main(
    spec: CaptureSpec, channel: socket.socket | None = None, output: socket.socket | None = None
) -> None:
    """Entry point of the capture process. Exits 0 when stopped or at the end
    of the stream, `EXIT_FAILED` when the device failed. ``channel`` brings
    readers' hold tables and doorbells; ``output`` becomes fd 2, read by the
    daemon (`mediabroker.childlog`): what FFmpeg and OpenCV print goes there."""
    if output is not None:
        os.dup2(output.fileno(), 2)
        output.close()
    logging.basicConfig(
        level=spec.log_level,
        format=f"%(levelname)s capture[{spec.source_id}] %(message)s",
        stream=sys.stderr,
    )
    stop = _Stop(spec.parent_pid)
    signal.signal(signal.SIGTERM, stop)
    if spec.nice:
        os.nice(spec.nice)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon decides when we stop
    ctx = zmq.Context()
    status = ctx.socket(zmq.PUSH)
    status.setsockopt(zmq.LINGER, STATUS_LINGER_MS)
    status.connect(spec.status_endpoint)
    from mediabroker.capture.readers import ReaderChannel

    readers = ReaderChannel(channel)
    try:
        code = _capture(spec, stop, status, readers)
    finally:
        readers.close()
        ctx.destroy(linger=STATUS_LINGER_MS)
    sys.exit(code)


class _Status:
    """Tells the daemon what happens to this capture: ``ready`` after the first
    frame, the backend's counters once a second, ``failed``, ``ended``."""

    def __init__(self, socket: zmq.Socket[Any], source_id: str) -> None:
        self._socket = socket
        self._source_id = source_id
        self._next_counters: float | None = None

    def send(self, event: str, reason: str = "", counters: dict[str, float] | None = None) -> None:
        message = {
            "source": self._source_id,
            "pid": os.getpid(),
            "event": event,
            "reason": reason,
            "counters": counters or {},
        }
        self._socket.send(msgpack.packb(message))

    def frame_done(self, backend: object) -> None:
        now = time.monotonic()
        if self._next_counters is None:
            self.send("ready", counters=backend_counters(backend))
        elif now < self._next_counters:
            return
        else:
            self.send("counters", counters=backend_counters(backend))
        self._next_counters = now + COUNTERS_S


def _capture(
    spec: CaptureSpec, stop: _Stop, status_socket: zmq.Socket[Any], readers: ReaderChannel
) -> int:
    status = _Status(status_socket, spec.source_id)

    with Ring.open(spec.ring_name, writable=True) as ring:
        ring.set_pids(writer=os.getpid())
        try:
            if isinstance(ring.format, VideoFormat):
                video = open_video_backend(spec.backend, ring.format, spec.frame_rate, readers)
                if getattr(video, "ready_at_start", False):
                    status.frame_done(video)  # a producer's relay may be silent a while
                _closing(video, lambda: _video_loop(video, ring, stop, status, readers))
            else:
                audio = open_audio_backend(spec.backend, ring.format)
                _closing(audio, lambda: _audio_loop(audio, ring, stop, status, readers))
        except _StopRequested:
            pass
        except EndOfStream as exc:
            ring.mark_ended()
            status.send("ended", str(exc) or "end of stream")
        except CaptureError as exc:
            log.error("%s", exc)
            status.send("failed", str(exc))
            return EXIT_FAILED
    return 0


def _closing(backend: VideoBackend | AudioBackend, run: Callable[[], None]) -> None:
    try:
        run()
    finally:
        backend.close()


def _video_loop(
    backend: VideoBackend, ring: Ring, stop: _Stop, status: _Status, readers: ReaderChannel
) -> None:
    """Capture into the ring until stopped, into slots no reader holds; each
    commit wakes the ring's futex and rings the readers' doorbells."""
    writer = VideoWriter(ring, readers.holds)
    while not stop.should_stop():
        readers.poll()
        view = writer.begin()
        with stop.waiting():
            captured_ns = backend.read_into(view, writer.seq)
        wall_ns = time.time_ns() - (time.monotonic_ns() - captured_ns)
        writer.commit(captured_ns, wall_ns, capture_origin(backend))
        readers.bells.ring()
        status.frame_done(backend)


def _audio_loop(
    backend: AudioBackend, ring: Ring, stop: _Stop, status: _Status, readers: ReaderChannel
) -> None:
    writer = AudioWriter(ring)
    while not stop.should_stop():
        readers.poll()
        with stop.waiting():
            block, captured_ns = backend.read_block()
        writer.write(block, captured_ns)
        readers.bells.ring()
        status.frame_done(backend)
