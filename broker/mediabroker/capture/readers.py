"""What a capture process keeps of its readers: their hold tables and their
doorbells, as the daemon hands them over a socket pair
(`mediabroker.sources.reader_files`). Looked at between frames, never
waited on: the capture loop must not block on anything but its device."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import msgpack

from mediastream.holds import HeldSeqs

__all__ = ["Doorbells", "ReaderChannel"]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 4096
RING = b"\x01"


class Doorbells:
    """The FIFOs of the processes reading this source: one byte each after
    every frame. A full FIFO is a reader already woken and not yet drained;
    a FIFO nobody reads any more (its process died) is dropped."""

    def __init__(self) -> None:
        self._fds: dict[str, int] = {}

    def add(self, reader: str, fd: int) -> None:
        self.drop(reader)
        os.set_blocking(fd, False)
        self._fds[reader] = fd

    def drop(self, reader: str) -> None:
        fd = self._fds.pop(reader, None)
        if fd is not None:
            os.close(fd)

    def ring(self) -> None:
        for reader, fd in list(self._fds.items()):
            try:
                os.write(fd, RING)
            except BlockingIOError:
                pass  # woken already
            except OSError as exc:  # EPIPE: nobody has it open
                log.debug("doorbell of %s: %s; dropped", reader, exc)
                self.drop(reader)

    def close(self) -> None:
        for reader in list(self._fds):
            self.drop(reader)


class ReaderChannel:
    """The daemon's messages about readers: ``hold``/``drop`` (a hold table,
    acknowledged when its token asks), ``bell``/``unbell`` (a doorbell);
    and, for a generator's relay, ``staging`` (its staging ring, read-only)."""

    def __init__(self, channel: socket.socket | None) -> None:
        self._channel = channel
        if channel is not None:
            channel.setblocking(False)
        self.holds = HeldSeqs()
        self.bells = Doorbells()
        self._staging: int | None = None  # a generator's staging ring (capture.relay)

    def poll(self) -> None:
        """Apply what the daemon sent since the last frame (no wait)."""
        while self._channel is not None:
            try:
                data, fds, _, _ = socket.recv_fds(self._channel, MAX_MESSAGE_BYTES, 1)
            except BlockingIOError:
                return
            if not data:  # the daemon is gone: the orphan check stops us
                self._channel = None
                return
            self._apply(msgpack.unpackb(data), fds)

    def _apply(self, message: dict[str, Any], fds: list[int]) -> None:
        op, holder = message.get("op"), str(message.get("holder"))
        if op == "hold" and fds:
            self.holds.add(holder, fds.pop(), int(message["limit"]))
            if message.get("token"):
                assert self._channel is not None
                self._channel.send(msgpack.packb({"ack": message["token"]}))
        elif op == "bell" and fds:
            self.bells.add(holder, fds.pop())
        elif op == "drop":
            self.holds.drop(holder)
        elif op == "unbell":
            self.bells.drop(holder)
        elif op == "staging" and fds and self._staging is None:
            self._staging = fds.pop()
        for fd in fds:  # nothing else carries a file
            os.close(fd)

    def take_staging(self) -> int | None:
        """The staging ring's descriptor the daemon sent (``staging``), once;
        the caller owns it then."""
        fd, self._staging = self._staging, None
        return fd

    def close(self) -> None:
        self.holds.close()
        if self._staging is not None:
            os.close(self._staging)
        self.bells.close()
        if self._channel is not None:
            self._channel.close()
