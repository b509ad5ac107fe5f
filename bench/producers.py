"""Producer processes: the frame writers the readers measure against.

Every producer renders the fake camera's test pattern (`FakeCamera.read_into`),
paced by the capture loop's own `Clock` (rate 0: flat out), and stops on
SIGTERM or when the bench that started it is gone. After it has bound its
socket it sends its endpoint over ``conn``.

- ``ring``: mediabroker's capture loop on a ring the bench created.
- ``notify``: the floor, a bare 16-byte ZeroMQ PUB message per tick.
- ``futex``: the other floor, a futex wake through shared memory (`bench.futex`).
- ``queue``, ``pyzmq``, ``imagezmq``: what people use today. Each frame is a
  new array (as ``cv2.VideoCapture.read()`` returns one), sent to every reader.
"""

from __future__ import annotations

import os
import queue
import signal
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.queues import Queue
from types import FrameType
from typing import Any, Protocol

import numpy as np
import zmq

from mediabroker.capture.backend import Clock
from mediabroker.capture.fake import FakeCamera
from mediastream.ring import Ring, VideoFormat, VideoWriter

from .receivers import FRAME_HWM, HEADER, FrameMessage, bounded_socket
from .specs import ProducerSpec

__all__ = ["Counter", "producer_main"]

StopCheck = Callable[[], bool]


class Counter(Protocol):
    """A shared ``multiprocessing.RawValue``: the last sequence number sent."""

    value: int


class _Stop:
    requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def producer_main(
    spec: ProducerSpec, conn: Connection, sent: Counter, frames: list[Queue[FrameMessage]]
) -> None:
    """Entry point of a producer process (spawned)."""
    stop = _Stop()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the bench decides when we stop

    def should_stop() -> bool:
        return stop.requested or os.getppid() != spec.parent_pid

    if spec.path == "ring":
        _run_ring_writer(spec, conn, should_stop)
    elif spec.path == "notify":
        _run_notifier(spec, conn, sent, should_stop)
    elif spec.path == "futex":
        _run_futex_waker(spec, conn, sent, should_stop)
    else:
        _run_frame_sender(spec, conn, sent, frames, should_stop)


# -- mediabroker -------------------------------------------------------------


def _run_ring_writer(spec: ProducerSpec, conn: Connection, should_stop: StopCheck) -> None:
    with Ring.open(spec.ring_name, writable=True) as ring:
        ring.set_pids(writer=os.getpid())
        conn.send(spec.endpoint)  # no socket: readers wait on the ring's doorbell
        camera = FakeCamera(VideoFormat(spec.width, spec.height), spec.fps)
        _write_frames(VideoWriter(ring), camera, should_stop)


def _write_frames(writer: VideoWriter, camera: FakeCamera, should_stop: StopCheck) -> None:
    """`mediabroker.capture._video_loop`, with one change: the slot's timestamp
    is taken when the frame is complete (commit), not when its capture began,
    so readers measure commit-to-view latency. Each commit rings the doorbell."""
    while not should_stop():
        view = writer.begin()
        camera.read_into(view, writer.seq)
        committed_ns = time.monotonic_ns()
        writer.commit(committed_ns, time.time_ns())


# -- the notification floor --------------------------------------------------


def _run_notifier(
    spec: ProducerSpec, conn: Connection, sent: Counter, should_stop: StopCheck
) -> None:
    context: zmq.Context[Any] = zmq.Context()
    socket = bounded_socket(context, zmq.PUB, 1000)
    try:
        socket.bind(spec.endpoint)
        conn.send(spec.endpoint)
        clock = Clock(spec.fps)
        seq = 0
        while not should_stop():
            clock.wait_next()
            seq += 1
            socket.send(HEADER.pack(seq, time.monotonic_ns()))
            sent.value = seq
    finally:
        socket.close(linger=0)
        context.term()


def _run_futex_waker(
    spec: ProducerSpec, conn: Connection, sent: Counter, should_stop: StopCheck
) -> None:
    from .futex import FutexSegment

    segment = FutexSegment(spec.ring_name)  # created by the bench
    try:
        conn.send(spec.ring_name)
        clock = Clock(spec.fps)
        seq = 0
        while not should_stop():
            clock.wait_next()
            seq += 1
            segment.publish(seq, time.monotonic_ns())
            sent.value = seq
    finally:
        segment.close()


# -- what people use today ----------------------------------------------------


class _FrameSender(Protocol):
    endpoint: str

    def send(self, seq: int, sent_ns: int, frame: np.ndarray) -> None: ...

    def close(self) -> None: ...


def _run_frame_sender(
    spec: ProducerSpec,
    conn: Connection,
    sent: Counter,
    frames: list[Queue[FrameMessage]],
    should_stop: StopCheck,
) -> None:
    fmt = VideoFormat(spec.width, spec.height)
    camera = FakeCamera(fmt, spec.fps)
    sender = _open_sender(spec, frames)
    try:
        conn.send(sender.endpoint)
        seq = 0
        while not should_stop():
            seq += 1
            frame = np.empty(fmt.shape, np.uint8)
            camera.read_into(frame, seq)
            sender.send(seq, time.monotonic_ns(), frame)
            sent.value = seq
    finally:
        sender.close()


def _open_sender(spec: ProducerSpec, frames: list[Queue[FrameMessage]]) -> _FrameSender:
    if spec.path == "queue":
        return _QueueSender(frames)
    if spec.path == "pyzmq":
        return _PyzmqSender(spec.endpoint)
    return _ImagezmqSender(spec.endpoint)


class _QueueSender:
    """One bounded `multiprocessing.Queue` per reader; a full queue drops the frame."""

    endpoint = "queue"

    def __init__(self, frames: list[Queue[FrameMessage]]) -> None:
        self._frames = frames

    def send(self, seq: int, sent_ns: int, frame: np.ndarray) -> None:
        for reader_queue in self._frames:
            try:
                reader_queue.put_nowait((seq, sent_ns, frame))
            except queue.Full:
                pass  # the reader sees the gap and counts it

    def close(self) -> None:
        for reader_queue in self._frames:
            reader_queue.cancel_join_thread()  # readers may be gone: never block on exit
            reader_queue.close()


class _PyzmqSender:
    """One PUB message [header, pixels] per frame, ``copy=False``, over ipc."""

    def __init__(self, endpoint: str) -> None:
        self._context: zmq.Context[Any] = zmq.Context()
        self._socket = bounded_socket(self._context, zmq.PUB, FRAME_HWM)
        self._socket.bind(endpoint)
        self.endpoint = endpoint

    def send(self, seq: int, sent_ns: int, frame: np.ndarray) -> None:
        self._socket.send_multipart([HEADER.pack(seq, sent_ns), frame.data], copy=False)

    def close(self) -> None:
        self._socket.close(linger=0)
        self._context.term()


class _ImagezmqSender:
    def __init__(self, endpoint: str) -> None:
        from .imagezmq_peer import open_sender

        self._sender, self.endpoint = open_sender(endpoint)

    def send(self, seq: int, sent_ns: int, frame: np.ndarray) -> None:
        self._sender.send_image(f"{seq} {sent_ns}", frame)

    def close(self) -> None:
        self._sender.close()
