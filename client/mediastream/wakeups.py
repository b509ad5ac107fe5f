"""One file descriptor that wakes when any track of a `MediaDevices` has new media.

Design note. A track's ring has a futex doorbell (`mediastream.ring.Doorbell`),
which a blocking `read()` waits on, but an event loop can only wait on file
descriptors. So each `MediaDevices` that is asked to (`fileno()`, `wait()`,
`aread()`) makes one FIFO in /dev/shm, keeps it open read-write (it never
sees end-of-file, and the writer end stays valid while this process lives),
and registers it with the daemon, which opens it for writing and hands it to
the capture process of every source this process's tracks read. Each writer
writes one byte per frame; a full FIFO means "woken already". The name is
unlinked as soon as the daemon has it open: nothing is left in /dev/shm.

A wake-up says only that something moved: the reader drains the FIFO and
then looks at its tracks' rings (drain first, then look: a frame published
after the look writes a byte after the drain, so the next wait returns).
This is iceoryx2's listener model; one write per reading process per
frame, whatever its number of tracks.

A new session (the daemon restarted, or this process was paused past its
timeout) needs a new registration: the FIFO is renewed on the next use,
kept at the same descriptor number with ``dup2``. Loops that registered the
old descriptor must register again (`AsyncWakeups` does).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import select
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

from .paths import resolve_shm_prefix
from .ring import SHM_DIR

__all__ = ["AsyncWakeups", "Wakeups"]

DRAIN_BYTES = 4096
FIFO_MODE = 0o620  # we read, the daemon's group writes (it runs as another user)


class Wakeups:
    """This process's doorbell FIFO for a `MediaDevices`.

    ``register(name)`` asks the daemon to open it (``registerDoorbell``);
    ``session()`` says which session the connection is in now, and under
    which shared-memory prefix the daemon expects the name."""

    def __init__(
        self,
        register: Callable[[str], None],
        session: Callable[[], tuple[int, str]],
        group: int,
    ) -> None:
        self._register = register
        self._session = session
        self._group = group  # the run dir's: the group the daemon writes with
        self._fd = -1
        self._registered_in = -1
        self._lock = threading.Lock()
        self.renewals = 0  # how often the descriptor was renewed: loops re-register

    def fileno(self) -> int:
        """The descriptor, readable while a frame may be waiting; registered
        with the daemon (again, after a new session) first."""
        with self._lock:
            if self._fd < 0 or self._registered_in != self._session()[0]:
                self._renew()
            return self._fd

    def _renew(self) -> None:
        prefix = self._session()[1] or resolve_shm_prefix()
        path = SHM_DIR / f"{prefix}bell.{secrets.token_hex(6)}"
        os.mkfifo(path, FIFO_MODE)
        try:
            fd = _open_own_fifo(path, self._group)
            try:
                self._register(path.name)
            except BaseException:
                os.close(fd)
                raise
        finally:
            path.unlink(missing_ok=True)
        if self._fd < 0:
            self._fd = fd
        else:  # same number: whoever holds it reads the new FIFO
            os.dup2(fd, self._fd)
            os.close(fd)
            self.renewals += 1
        self._registered_in = self._session()[0]

    def drain(self) -> None:
        """Empty the FIFO (before looking at the rings)."""
        if self._fd < 0:
            return
        try:
            while len(os.read(self._fd, DRAIN_BYTES)) == DRAIN_BYTES:
                pass  # a short read emptied it: no second call to learn so
        except BlockingIOError:
            pass

    def sleep(self, timeout_s: float) -> None:
        """Wait until a byte arrives, or ``timeout_s``."""
        poller = select.poll()
        poller.register(self.fileno(), select.POLLIN)
        poller.poll(max(0.0, timeout_s) * 1000)

    def poke(self) -> None:
        """Wake every waiter (a track ended or stopped: they look again)."""
        if self._fd >= 0:
            try:
                os.write(self._fd, b"\0")
            except BlockingIOError:
                pass

    def close(self) -> None:
        with self._lock:
            fd, self._fd = self._fd, -1
            if fd >= 0:
                os.close(fd)


def _open_own_fifo(path: Path, group: int) -> int:
    """Open our FIFO read-write and non-blocking, writable by ``group`` (the
    run dir's, which the daemon writes with), or by anyone when we are not
    in that group (a socket open to all): a stray byte is only a spurious
    wake-up, and the name is gone as soon as the daemon has opened it."""
    fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        os.fchown(fd, -1, group)
        mode = FIFO_MODE
    except PermissionError:
        mode = FIFO_MODE | 0o002
    os.fchmod(fd, mode)  # the umask must not narrow it
    return fd


class AsyncWakeups:
    """`Wakeups` for asyncio: the loop watches the descriptor (from the first
    wait for as long as the loop runs: no epoll_ctl per frame), and every
    coroutine waiting in `wait` wakes when it is readable. No threads."""

    def __init__(self, wakeups: Wakeups) -> None:
        self._wakeups = wakeups
        self._waiters: set[asyncio.Future[None]] = set()
        # (loop, descriptor, renewals), the loop weakly: the MediaDevices keys
        # its watchers by loop in a WeakKeyDictionary, which a strong
        # reference here would keep alive forever.
        self._watched: tuple[weakref.ref[asyncio.AbstractEventLoop], int, int] | None = None

    async def wait(self, timeout_s: float) -> None:
        """Until the next byte (drained for all), or ``timeout_s``."""
        loop = asyncio.get_running_loop()
        self._watch(loop)
        future: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(timeout_s, _settle, future)
        self._waiters.add(future)
        try:
            await future
        finally:
            timer.cancel()
            self._waiters.discard(future)

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        fd = self._wakeups.fileno()
        key = (weakref.ref(loop), fd, self._wakeups.renewals)
        if self._watched == key:
            return
        self._unwatch()
        loop.add_reader(fd, self._readable)
        self._watched = key

    def _unwatch(self) -> None:
        if self._watched is None:
            return
        loop_ref, fd, _ = self._watched
        self._watched = None
        loop = loop_ref()
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop or not loop.is_running():
            loop.remove_reader(fd)
        else:  # closed from another thread than the loop's
            loop.call_soon_threadsafe(loop.remove_reader, fd)

    def _readable(self) -> None:
        self._wakeups.drain()
        for future in list(self._waiters):
            _settle(future)

    def close(self) -> None:
        """Stop watching (the MediaDevices closes)."""
        self._unwatch()


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
