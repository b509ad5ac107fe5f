"""The reader side of every transport the bench compares, one class each.

``receive()`` blocks for the next frame and returns (sequence number,
latency in ns, intact). Latency is taken the moment the reader holds the
numpy array (or, for the bare notification, the message), before it looks
at a pixel; then the reader checks the frame's stamp (its first 16 bytes),
which is all the "work" a bench reader does with a frame.
"""

from __future__ import annotations

import struct
import time
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import zmq

from mediabroker.capture.fake import pattern_seq
from mediastream import MediaDevices, VideoFrame
from mediastream.frames import NS_PER_S
from mediastream.reader import SourceReader
from mediastream.ring import VideoFormat

from .specs import ReaderSpec

__all__ = ["HEADER", "AsyncReceiver", "Receiver", "bounded_socket", "open_receiver"]

READ_TIMEOUT_S = 5.0
FRAME_HWM = 2  # frames a peer's socket may queue: their default (1000) is unbounded RAM
HEADER = struct.Struct("<QQ")  # seq, monotonic ns when sent (the peers' frame header)

Received = tuple[int, int, bool]
FrameMessage = tuple[int, int, np.ndarray]


class Receiver(Protocol):
    def receive(self) -> Received: ...

    def close(self) -> None: ...


class AsyncReceiver(Receiver, Protocol):
    """A receiver that can also wait in an event loop (``daemon-async``)."""

    async def areceive(self) -> Received: ...


def open_receiver(spec: ReaderSpec, frames: Queue[FrameMessage] | None) -> Receiver:
    if spec.path in ("daemon", "daemon-async", "daemon-pair"):
        return DaemonReceiver(spec)
    if spec.path == "ring":
        return RingReceiver(spec)
    if spec.path == "notify":
        return NotifyReceiver(spec)
    if spec.path == "futex":
        from .futex import FutexReceiver

        return FutexReceiver(spec.ring_name, READ_TIMEOUT_S)
    if spec.path == "queue":
        assert frames is not None
        return QueueReceiver(frames)
    if spec.path == "pyzmq":
        return PyzmqReceiver(spec)
    return ImagezmqReceiver(spec)


def _view_result(frame: object) -> Received:
    now = time.monotonic_ns()
    assert isinstance(frame, VideoFrame)
    latency = now - round(frame.timestamp * NS_PER_S)
    return frame.seq, latency, pattern_seq(frame.data) == frame.seq


class DaemonReceiver:
    """The product as a user runs it: ``getUserMedia`` on the daemon, then
    ``track.read()`` (``daemon``) or ``await track.aread()`` (``daemon-async``:
    the event loop watches this process's doorbell FIFO, no thread).

    Latency starts at the slot's capture timestamp (before the fake camera
    renders the frame), the only time the ring stores.
    """

    def __init__(self, spec: ReaderSpec) -> None:
        self._devices = MediaDevices(Path(spec.endpoint), name=f"bench-reader-{spec.index}")
        size = {"width": {"exact": spec.width}, "height": {"exact": spec.height}}
        try:
            stream = self._devices.getUserMedia({"video": {**size, "frameRate": spec.fps}})
        except BaseException:
            self._devices.close()
            raise
        self._track = stream.getVideoTracks()[0]

    def receive(self) -> Received:
        return _view_result(self._track.read(timeout=READ_TIMEOUT_S))

    async def areceive(self) -> Received:
        return _view_result(await self._track.aread(timeout=READ_TIMEOUT_S))

    def close(self) -> None:
        self._track.stop()
        self._devices.close()


class RingReceiver:
    """`SourceReader`, the object behind ``track.read()``, on a ring the bench writes."""

    def __init__(self, spec: ReaderSpec) -> None:
        self._reader = SourceReader(spec.ring_name, lambda: True)

    def receive(self) -> Received:
        return _view_result(self._reader.read(READ_TIMEOUT_S))

    def close(self) -> None:
        self._reader.close()


def bounded_socket(context: zmq.Context[Any], kind: int, hwm: int) -> zmq.Socket[Any]:
    socket: zmq.Socket[Any] = context.socket(kind)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SNDHWM if kind == zmq.PUB else zmq.RCVHWM, hwm)
    if kind == zmq.SUB:
        socket.setsockopt(zmq.RCVTIMEO, int(READ_TIMEOUT_S * 1000))
        socket.setsockopt(zmq.SUBSCRIBE, b"")
    return socket


class NotifyReceiver:
    """The floor: a SUB socket receiving a 16-byte (seq, sent ns) message.

    Flat out it conflates, as mediabroker's readers do: else it would measure
    a queue of 1000 stale messages rather than a notification.
    """

    def __init__(self, spec: ReaderSpec) -> None:
        self._context: zmq.Context[Any] = zmq.Context()
        self._socket = bounded_socket(self._context, zmq.SUB, 1000)
        if not spec.fps:
            self._socket.setsockopt(zmq.CONFLATE, 1)
        self._socket.connect(spec.endpoint)

    def receive(self) -> Received:
        data = self._socket.recv()
        now = time.monotonic_ns()
        seq, sent_ns = HEADER.unpack(data)
        return seq, now - sent_ns, True

    def close(self) -> None:
        self._socket.close(linger=0)
        self._context.term()


class QueueReceiver:
    """Frames pickled through a `multiprocessing.Queue` of its own."""

    def __init__(self, frames: Queue[FrameMessage]) -> None:
        self._frames = frames

    def receive(self) -> Received:
        seq, sent_ns, frame = self._frames.get(timeout=READ_TIMEOUT_S)
        now = time.monotonic_ns()
        return seq, now - sent_ns, pattern_seq(frame) == seq

    def close(self) -> None:
        self._frames.close()


class PyzmqReceiver:
    """Frames sent with pyzmq ``copy=False`` over ipc PUB/SUB: [header, pixels]."""

    def __init__(self, spec: ReaderSpec) -> None:
        self._shape = VideoFormat(spec.width, spec.height).shape
        self._context: zmq.Context[Any] = zmq.Context()
        self._socket = bounded_socket(self._context, zmq.SUB, FRAME_HWM)
        self._socket.connect(spec.endpoint)

    def receive(self) -> Received:
        header, pixels = self._socket.recv_multipart(copy=False)
        frame = np.frombuffer(pixels.buffer, np.uint8).reshape(self._shape)
        now = time.monotonic_ns()
        seq, sent_ns = HEADER.unpack(header.bytes)
        return seq, now - sent_ns, pattern_seq(frame) == seq

    def close(self) -> None:
        self._socket.close(linger=0)
        self._context.term()


class ImagezmqReceiver:
    """imagezmq (PyPI) PUB/SUB over TCP loopback, as its docs use it."""

    def __init__(self, spec: ReaderSpec) -> None:
        from .imagezmq_peer import open_hub  # imported only where imagezmq is measured

        self._hub = open_hub(spec.endpoint)

    def receive(self) -> Received:
        message, frame = self._hub.recv_image()
        now = time.monotonic_ns()
        seq, sent_ns = (int(part) for part in message.split())
        return seq, now - sent_ns, pattern_seq(frame) == seq

    def close(self) -> None:
        self._hub.close()
