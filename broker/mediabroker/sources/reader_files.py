"""What readers hand to a source's capture process, and the channel it goes
by: hold tables (which reader may hold how many frames) and doorbells
(a FIFO per reading process the writer rings after each frame).

Design note. A reader's hold table is its own file (`mediastream.holds`).
The daemon opens it once, after checking that it is a regular file of the
right size owned by the asking user, and sends the open file over a socket
pair to the capture process, which reads it before claiming each slot. The
daemon answers the reader only once the capture process has acknowledged
the table: a hold the writer does not know of yet would not be honoured.
A new capture process (restart, re-open) gets every table before its first
frame. A lease released (track stopped or moved, session gone) drops its
table.

A ring of n slots lets readers hold n - `UNHELD_SLOTS` frames in all, so
the writer always has a slot to write, one to publish and one for readers
that do not hold.

A doorbell (`mediastream.wakeups`) is a FIFO the reading process created
and keeps open; the daemon opens it for writing after the same checks and
hands it the same way, for every source that process's tracks read. No
acknowledgement is needed: a missed ring only delays a reader until its
next check, and readers look at the ring before they wait.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

import msgpack

from mediastream.errors import HoldLimitError, NotReadableError
from mediastream.holds import HOLD_TABLE_BYTES
from mediastream.ring import check_segment_name

__all__ = ["UNHELD_SLOTS", "ReaderFiles", "open_doorbell", "open_hold_table"]

log = logging.getLogger(__name__)

UNHELD_SLOTS = 3
ACK_TIMEOUT_S = 2.0  # a capture process takes a table before its next frame
MAX_CHANNEL_BYTES = 4096


@dataclass(slots=True)
class _Grant:
    fd: int
    limit: int


def open_hold_table(shm_dir: Path, ring_name: str, name: str, uid: int) -> int:
    """Open reader ``uid``'s hold table ``name`` for ``ring_name`` read-only;
    raises `NotReadableError` unless it is that user's regular file of the
    table's size (never follows a link, never blocks on a FIFO)."""
    fd = _open_readers_file(shm_dir, ring_name + ".hold.", name, os.O_RDONLY, "hold table")
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != uid or info.st_size != HOLD_TABLE_BYTES:
        os.close(fd)
        raise NotReadableError(
            f"{shm_dir / name} is not a hold table of uid {uid}: it must be that user's "
            f"regular file of {HOLD_TABLE_BYTES} bytes"
        )
    return fd


def open_doorbell(shm_dir: Path, prefix: str, name: str, uid: int) -> int:
    """Open reader ``uid``'s doorbell FIFO ``name`` (``prefix`` + "bell.")
    for writing; raises `NotReadableError` unless it is that user's FIFO and
    the reader holds it open (else the open fails: it would never wake)."""
    fd = _open_readers_file(shm_dir, prefix + "bell.", name, os.O_WRONLY, "doorbell")
    info = os.fstat(fd)
    if not stat.S_ISFIFO(info.st_mode) or info.st_uid != uid:
        os.close(fd)
        raise NotReadableError(f"{shm_dir / name} is not a doorbell FIFO of uid {uid}")
    return fd


def _open_readers_file(shm_dir: Path, start: str, name: str, mode: int, what: str) -> int:
    """Open a file a reader made, by name: never a link, never blocking."""
    if not name.startswith(start):
        raise NotReadableError(f"{name!r} is not a {what} name (it starts {start!r})")
    path = shm_dir / check_segment_name(name)
    try:
        return os.open(path, mode | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise NotReadableError(f"cannot open the {what} {path}: {exc.strerror}") from exc


class ReaderFiles:
    """One source's hold tables and doorbells, and its channel to the
    capture process."""

    def __init__(self, source_id: str, holdable: int) -> None:
        self._source_id = source_id
        self._holdable = holdable  # frames all readers together may hold
        self._grants: dict[str, _Grant] = {}
        self._bells: dict[str, int] = {}  # reading process -> our own dup of its FIFO
        self._channel: socket.socket | None = None
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._tokens = itertools.count(1)
        self._staging: int | None = None  # a generator's staging ring (capture.relay)

    def new_channel(self) -> socket.socket:
        """A channel for a new capture process (the end to hand it), loaded
        with every table granted so far; the old channel is closed."""
        self._close_channel()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self._channel = ours
        asyncio.get_running_loop().add_reader(ours.fileno(), self._read_acks)
        for holder, grant in self._grants.items():
            self._send_table(holder, grant, token=0)
        for reader, fd in self._bells.items():
            self._send({"op": "bell", "holder": reader}, fd)
        if self._staging is not None:
            self._send({"op": "staging", "holder": ""}, self._staging)
        return theirs

    def set_staging(self, fd: int) -> None:
        """A generator's staging ring (read-only ``fd``, dup'ed): every
        capture process of this source gets it before its first frame."""
        if self._staging is not None:
            os.close(self._staging)
        self._staging = os.dup(fd)
        self._send({"op": "staging", "holder": ""}, self._staging)

    def add_bell(self, reader: str, fd: int) -> None:
        """Ring ``reader``'s doorbell after every frame (``fd`` is dup'ed)."""
        self.drop_bell(reader)
        self._bells[reader] = os.dup(fd)
        try:
            self._send({"op": "bell", "holder": reader}, self._bells[reader])
        except OSError:
            pass  # logged; the process is restarted with every doorbell

    def drop_bell(self, reader: str) -> None:
        fd = self._bells.pop(reader, None)
        if fd is not None:
            os.close(fd)
            self._send({"op": "unbell", "holder": reader})

    async def grant(self, holder: str, fd: int, wanted: int, running: bool) -> int:
        """Grant ``holder`` up to ``wanted`` held frames through table ``fd``
        (taken over: closed here when dropped); returns how many. Raises
        `HoldLimitError` when the ring has none left."""
        self.drop_holds(holder)
        free = self._holdable - sum(g.limit for g in self._grants.values())
        if free < 1:
            os.close(fd)
            raise HoldLimitError(
                f"readers of source {self._source_id} hold all {self._holdable} frames its "
                "ring can spare; release some, or raise [rings] slots"
            )
        grant = _Grant(fd, min(wanted, free))
        self._grants[holder] = grant
        if running:
            await self._acknowledged(holder, grant)
        return grant.limit

    async def _acknowledged(self, holder: str, grant: _Grant) -> None:
        token = next(self._tokens)
        future = asyncio.get_running_loop().create_future()
        self._acks[token] = future
        try:
            self._send_table(holder, grant, token)
            await asyncio.wait_for(future, ACK_TIMEOUT_S)
        except (TimeoutError, OSError) as exc:
            self.drop_holds(holder)
            raise NotReadableError(
                f"the capture process of source {self._source_id} did not take the hold "
                f"table within {ACK_TIMEOUT_S:g} s (is it delivering frames?)"
            ) from exc
        finally:
            self._acks.pop(token, None)

    def drop_holds(self, holder: str) -> None:
        """Forget ``holder``'s table (its lease ended). Idempotent."""
        grant = self._grants.pop(holder, None)
        if grant is None:
            return
        os.close(grant.fd)
        self._send({"op": "drop", "holder": holder})

    def close(self) -> None:
        for holder in list(self._grants):
            self.drop_holds(holder)
        for reader in list(self._bells):
            self.drop_bell(reader)
        self._close_channel()
        if self._staging is not None:
            os.close(self._staging)
            self._staging = None

    def _send_table(self, holder: str, grant: _Grant, token: int) -> None:
        message = {"op": "hold", "holder": holder, "limit": grant.limit, "token": token}
        self._send(message, grant.fd)

    def _send(self, message: dict[str, object], fd: int | None = None) -> None:
        if self._channel is None:
            return  # no process now: the next one gets the tables at its start
        fds = [fd] if fd is not None else []
        try:
            socket.send_fds(self._channel, [msgpack.packb(message)], fds)
        except OSError as exc:
            # A full channel means the process stopped reading it: the stall
            # watch restarts it, and the new one gets every table.
            log.warning("source %s: hold channel: %s", self._source_id, exc)
            if fd is not None:
                raise

    def _read_acks(self) -> None:
        channel = self._channel
        assert channel is not None
        try:
            data = channel.recv(MAX_CHANNEL_BYTES)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the process is gone
            self._close_channel()
            return
        token = msgpack.unpackb(data).get("ack")
        future = self._acks.get(token) if isinstance(token, int) else None
        if future is not None and not future.done():
            future.set_result(None)

    def _close_channel(self) -> None:
        """Close the channel of a process that is gone or being replaced.
        Grants waiting for its acknowledgement are safe now: no writer runs
        until the next process, which gets every table before its first frame."""
        channel, self._channel = self._channel, None
        if channel is not None:
            asyncio.get_running_loop().remove_reader(channel.fileno())
            channel.close()
        for future in self._acks.values():
            if not future.done():
                future.set_result(None)
