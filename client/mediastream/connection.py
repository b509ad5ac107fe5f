"""A client's link to the daemon (internal; `MediaDevices` is the public face).

Design note. ZeroMQ sockets are not thread-safe, and a client has three
jobs that must not wait for each other: requests from any user thread,
heartbeats on time (even while a request waits for a slow device start),
and notices from the daemon. So one I/O thread owns the DEALER; user
threads hand it requests over an inproc PAIR and wait on a future. Notices
go to a second thread for dispatch, so a listener may call back into the
API without deadlocking the I/O thread.

Both sides bound a session's life alike. The daemon beats every
``heartbeat_s`` on the connection; after `DAEMON_SILENCE_HEARTBEATS`
silent beats the client gives up: its tracks end, requests waiting fail
with `NotReadableError`, new ones fail at once, and the connection is
dropped and made again, so that a daemon that was only stalled ends the
session (and frees the camera) the moment it runs again. A daemon that ended
the session (this client was paused past its timeout) says so before it
closes the connection; either way, the next request says ``hello`` again.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import zmq

from . import wire
from .errors import (
    InvalidStateError,
    NotAllowedError,
    NotReadableError,
    ProtocolError,
    error_from_wire,
)
from .paths import CONTROL, control_endpoint, group_to_join

__all__ = ["BrokerConnection"]

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 15.0  # a device start may take the daemon up to 10 s
HELLO_TIMEOUT_S = 5.0  # the first: the daemon may be busy starting
HELLO_AGAIN_TIMEOUT_S = 2.0  # after a lost session: a dead daemon fails that fast
DAEMON_SILENCE_HEARTBEATS = 3  # missed daemon heartbeats before it counts as gone
BYE_TIMEOUT_S = 1.0

EventHandler = Callable[[str, dict[str, Any]], None]


class BrokerConnection:
    """Requests, heartbeats and events for one `MediaDevices`.

    ``on_event(topic, payload)`` runs on the dispatch thread for every notice
    the daemon sends this session; ``on_lost(reason)`` runs there when the
    session is gone (the daemon's heartbeats stopped, it is stopping, or it
    ended the session); the next request opens a new one.
    """

    _closed = True  # class default: a half-built connection reads as closed
    heartbeat_s = 0.5  # until hello's reply says otherwise

    def __init__(
        self,
        run_dir: Path,
        name: str,
        on_event: EventHandler,
        on_lost: Callable[[str], None],
        counts: Callable[[], tuple[int, int]] = lambda: (0, 0),
    ) -> None:
        control_path = run_dir / CONTROL
        try:
            present = control_path.exists()
        except PermissionError as exc:
            raise NotAllowedError(
                f"no access to the daemon's run dir {run_dir}: ask its administrator to add "
                f"you to {group_to_join(run_dir)}"
            ) from exc
        if not present:
            raise NotReadableError(
                f"no mediabroker daemon at {run_dir}: start one with `mediabroker serve`, "
                "or set MEDIABROKER_RUNDIR to the run dir of the one you mean"
            )
        self.context = zmq.Context()
        self._on_event, self._on_lost = on_event, on_lost
        self._counts = counts  # (delivered, discarded) frames, for the daemon's stats
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[wire.Reply]] = {}
        self._pending_lock = threading.Lock()
        self._inbox_lock = threading.Lock()
        self._dispatch_queue: queue.SimpleQueue[tuple[str, dict[str, Any]] | None] = (
            queue.SimpleQueue()
        )
        self._hello_lock = threading.Lock()
        self._needs_hello = False  # the session ended; the next request opens another
        self.daemon_pid = 0  # the one that answered hello; 0 before
        self.sessions = 0  # sessions opened so far: what is registered per session knows
        self._gone_reason = ""  # why the last session ended
        self._silent = ""  # set while the daemon's heartbeats are missing: why
        self._inbox = self.context.socket(zmq.PAIR)
        self._inbox.bind(f"inproc://mediastream-{id(self)}")
        self._closed = False
        self._io = threading.Thread(
            target=self._io_main, args=(run_dir,), daemon=True, name="mediastream-io"
        )
        self._dispatcher = threading.Thread(
            target=self._dispatch_main, daemon=True, name="mediastream-events"
        )
        self._io.start()
        self._dispatcher.start()
        self._name = name
        try:
            self._hello(HELLO_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    def _hello(self, timeout: float) -> None:
        args = {"name": self._name, "version": wire.PROTOCOL_VERSION}
        hello = self._roundtrip("hello", args, timeout)
        self.heartbeat_s = float(hello["heartbeat_s"])
        self.daemon_pid = int(hello["daemon_pid"])
        self.shm_prefix = str(hello.get("shm_prefix", ""))
        self.sessions += 1
        self._needs_hello = False

    # -- called from user threads -----------------------------------------

    def request(
        self, op: str, args: dict[str, Any] | None = None, timeout: float = REQUEST_TIMEOUT_S
    ) -> dict[str, Any]:
        """Send a request and wait for its reply, saying ``hello`` first if the
        last session ended. Raises the error the daemon names,
        `NotReadableError` when it does not answer in time or is silent, and
        `InvalidStateError` once this connection is closed."""
        if self._closed:
            raise InvalidStateError("this MediaDevices is closed")
        if self._silent:
            raise NotReadableError(f"the daemon is not answering: {self._silent}")
        if self._needs_hello:
            with self._hello_lock:
                if self._needs_hello:
                    self._hello(HELLO_AGAIN_TIMEOUT_S)
        try:
            return self._roundtrip(op, args, timeout)
        except InvalidStateError as exc:
            if not self._needs_hello:
                raise
            # The session ended while this request was on its way.
            raise NotReadableError(
                f"the daemon ended this client's session ({self._gone_reason}); "
                "call again to start a new one"
            ) from exc

    def _roundtrip(self, op: str, args: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
        request_id = next(self._ids)
        future: Future[wire.Reply] = Future()
        with self._pending_lock:
            self._pending[request_id] = future
        self._post(b"R", wire.encode_request(request_id, op, args))
        try:
            reply = future.result(timeout)
        except FutureTimeout as exc:
            raise NotReadableError(f"the daemon did not answer {op} within {timeout:g} s") from exc
        finally:
            with self._pending_lock:
                self._pending.pop(request_id, None)
        if not reply.ok:
            raise error_from_wire(reply.error_name, reply.error_message, reply.error_constraint)
        return reply.result

    def send_only(self, op: str, args: dict[str, Any]) -> None:
        """Send one of `wire.NO_REPLY_OPS` and return at once: no reply, no
        error comes back. Raises `InvalidStateError` once closed and
        `NotReadableError` while the session is gone."""
        if self._needs_hello or self._silent:
            raise NotReadableError(f"the daemon ended this client's session ({self._gone_reason})")
        self._post(b"R", wire.encode_request(0, op, args))

    def say_bye(self) -> None:
        """End the session, if there is one (none after it was lost: saying
        hello only to say bye would be a session for nothing)."""
        if self._needs_hello or self._silent:
            return
        try:
            self._roundtrip("bye", None, BYE_TIMEOUT_S)
        except Exception as exc:  # the daemon may be gone; it ends the session anyway
            log.debug("bye: %s", exc)

    def _post(self, command: bytes, body: bytes) -> None:
        with self._inbox_lock:
            if self._closed:
                raise InvalidStateError("this MediaDevices is closed")
            self._inbox.send_multipart([command, body])

    def close(self) -> None:
        """Stop both threads and close every socket. Idempotent."""
        with self._inbox_lock:
            if self._closed:
                return
            self._closed = True
            self._inbox.send_multipart([b"Q", b""])
        if threading.current_thread() in (self._io, self._dispatcher):
            # A listener (or the garbage collector) closed us from one of our own
            # threads, which cannot join itself: finish on a thread of its own.
            threading.Thread(target=self._finish_close, name="mediastream-close").start()
        else:
            self._finish_close()

    def _finish_close(self) -> None:
        self._io.join()
        self._dispatch_queue.put(None)
        self._dispatcher.join()
        self._inbox.close(linger=0)
        self._fail_pending(InvalidStateError("this MediaDevices was closed"))
        self.context.term()

    # -- the I/O thread --------------------------------------------------

    def _io_main(self, run_dir: Path) -> None:
        io = _IoLoop(self.context, run_dir, id(self))
        try:
            self._io_loop(io)
        except Exception:  # a bug here must not leave user threads waiting forever
            log.exception("the mediastream I/O thread failed")
            self._fail_pending(NotReadableError("the client's I/O thread failed; see the log"))
            self._dispatch_queue.put(("", {"type": "lost", "reason": "client I/O failure"}))
        finally:
            io.close()

    def _io_loop(self, io: _IoLoop) -> None:
        last_daemon_beat = next_beat = woke = time.monotonic()
        while True:
            for socket in io.poll(max(0.0, next_beat - time.monotonic())):
                if socket is io.inbox and not io.handle_command():
                    return
                if socket is io.dealer and any([self._deliver(m) for m in io.receive_all()]):
                    last_daemon_beat = time.monotonic()
                    self._silent = ""
            now, slept = time.monotonic(), time.monotonic() - woke
            woke = now
            if slept > 2 * self.heartbeat_s:
                # This process was paused (SIGSTOP, a debugger, a long GC):
                # the silence was ours, not the daemon's. Give it a fresh
                # window; if it ended the session meanwhile, it says so.
                last_daemon_beat = now
            if now >= next_beat:
                delivered, discarded = self._counts()
                beat = {"delivered": delivered, "discarded": discarded}
                io.dealer.send(wire.encode_request(0, "heartbeat", beat))
                next_beat = now + self.heartbeat_s
            silence = now - last_daemon_beat
            if not self._silent and silence > DAEMON_SILENCE_HEARTBEATS * self.heartbeat_s:
                self._silent = f"it sent no heartbeat for {silence:.1f} s"
                self._session_gone(f"the daemon sent no heartbeat for {silence:.1f} s")
                io.reconnect()  # a stalled daemon, once it runs, sees us gone

    def _deliver(self, data: bytes) -> bool:
        """A reply goes to the caller waiting for it, a notice to the
        dispatcher. True for the daemon's heartbeat."""
        try:
            reply = wire.decode_from_daemon(data)
        except ProtocolError:
            log.warning("dropped an undecodable message from the daemon")
            return False
        if isinstance(reply, wire.Notice):
            return self._take_notice(reply)
        with self._pending_lock:
            future = self._pending.get(reply.id)
        if future is not None and not future.done():
            future.set_result(reply)
        return False

    def _take_notice(self, notice: wire.Notice) -> bool:
        kind = notice.payload["type"]
        if notice.topic == "broker" and kind == "heartbeat":
            self._check_same_daemon(notice.payload.get("pid"))
            return True
        if notice.topic == "broker" and kind == "stopping":
            self._session_gone("the daemon is stopping")
        elif notice.topic == "session" and kind == "ended":
            self._session_gone(f"the daemon ended the session: {notice.payload.get('reason')}")
        elif notice.topic == "session" and kind == "refused":
            self._session_gone(f"the daemon refused the connection: {notice.payload.get('reason')}")
        else:
            self._dispatch_queue.put((notice.topic, notice.payload))
        return False

    def _check_same_daemon(self, pid: object) -> None:
        """A daemon that restarted within the silence window (a service
        manager is quick) beats on as if nothing happened, but knows neither
        this session nor its tracks: its pid says so."""
        known = self.daemon_pid and not self._needs_hello
        if known and isinstance(pid, int) and pid != self.daemon_pid:
            self._session_gone(f"the daemon restarted (pid {self.daemon_pid}, now {pid})")

    def _session_gone(self, reason: str) -> None:
        """The session is over: waiting requests fail, tracks end (on the
        dispatch thread), and the next request says hello again."""
        self._gone_reason = reason
        self._needs_hello = True
        self._fail_pending(NotReadableError(reason))
        self._dispatch_queue.put(("", {"type": "lost", "reason": reason}))

    def _fail_pending(self, exc: BaseException) -> None:
        with self._pending_lock:
            futures = list(self._pending.values())
        for future in futures:
            if not future.done():
                future.set_exception(exc)

    # -- the dispatch thread ---------------------------------------------

    def _dispatch_main(self) -> None:
        while (item := self._dispatch_queue.get()) is not None:
            topic, payload = item
            try:
                if payload.get("type") == "lost":
                    self._on_lost(str(payload["reason"]))
                else:
                    self._on_event(topic, payload)
            except Exception:
                log.exception("an event handler failed on %s %s", topic, payload.get("type"))


class _IoLoop:
    """The sockets the I/O thread owns, and what it does with each."""

    def __init__(self, context: zmq.Context[Any], run_dir: Path, key: int) -> None:
        self._context = context
        self._endpoint = control_endpoint(run_dir)
        self.inbox = context.socket(zmq.PAIR)
        self.inbox.connect(f"inproc://mediastream-{key}")
        self.dealer = self._connect()
        self._poller = zmq.Poller()
        for socket in (self.inbox, self.dealer):
            self._poller.register(socket, zmq.POLLIN)

    def _connect(self) -> zmq.Socket[Any]:
        dealer: zmq.Socket[Any] = self._context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(self._endpoint)
        return dealer

    def reconnect(self) -> None:
        """Drop the connection and make a new one (without a session)."""
        self._poller.unregister(self.dealer)
        self.dealer.close(linger=0)
        self.dealer = self._connect()
        self._poller.register(self.dealer, zmq.POLLIN)

    def receive_all(self) -> list[bytes]:
        """Every message waiting on the DEALER (at least one when readable)."""
        messages = []
        with contextlib.suppress(zmq.Again):
            while True:
                messages.append(self.dealer.recv(zmq.NOBLOCK))
        return messages

    def poll(self, timeout_s: float) -> list[Any]:
        # Rounded up: a wait under half a millisecond rounded to 0 made the
        # loop spin until its next heartbeat (100 polls in 3 s, bench/).
        return [socket for socket, _ in self._poller.poll(math.ceil(timeout_s * 1000))]

    def handle_command(self) -> bool:
        """Run one command from a user thread; False means quit."""
        command: bytes
        body: bytes
        command, body = self.inbox.recv_multipart()
        if command == b"R":
            self.dealer.send(body)
        return command != b"Q"

    def close(self) -> None:
        for socket in (self.inbox, self.dealer):
            socket.close(linger=0)


def process_name() -> str:
    """How this process introduces itself to the daemon (shown in `stats`)."""
    return f"{Path(sys.argv[0]).name or 'python'}[{os.getpid()}]"
