"""A client's link to the daemon (internal; `MediaDevices` is the public face).

Design note. ZeroMQ sockets are not thread-safe, and a client has three
jobs that must not wait for each other: requests from any user thread,
heartbeats on time (even while a request waits for a slow device start),
and events from the daemon. So one I/O thread owns the DEALER and the SUB
sockets; user threads hand it requests over an inproc PAIR and wait on a
future. Events go to a second thread for dispatch, so a listener may call
back into the API without deadlocking the I/O thread.
"""

from __future__ import annotations

import itertools
import logging
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
from .paths import CONTROL, control_endpoint, events_endpoint

__all__ = ["BrokerConnection"]

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 15.0  # a device start may take the daemon up to 10 s
HELLO_TIMEOUT_S = 5.0
DAEMON_SILENCE_HEARTBEATS = 3  # missed daemon heartbeats before it counts as gone

EventHandler = Callable[[str, dict[str, Any]], None]


class BrokerConnection:
    """Requests, heartbeats and events for one `MediaDevices`.

    ``on_event(topic, payload)`` runs on the dispatch thread for every notice
    the daemon sends this session; ``on_lost(reason)`` runs there once if the daemon goes
    away (its heartbeats stop, or it says it is stopping).
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
                "you to the daemon's group (the 'socket_group' in its configuration)"
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
        try:
            hello = self.request(
                "hello", {"name": name, "version": wire.PROTOCOL_VERSION}, timeout=HELLO_TIMEOUT_S
            )
        except BaseException:
            self.close()
            raise
        self.heartbeat_s = float(hello["heartbeat_s"])
        self.daemon_pid = int(hello["daemon_pid"])

    # -- called from user threads -----------------------------------------

    def request(
        self, op: str, args: dict[str, Any] | None = None, timeout: float = REQUEST_TIMEOUT_S
    ) -> dict[str, Any]:
        """Send a request and wait for its reply. Raises the error the daemon
        names, `NotReadableError` when it does not answer in time, and
        `InvalidStateError` once this connection is closed."""
        if self._closed:
            raise InvalidStateError("this MediaDevices is closed")
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
        last_daemon_beat = time.monotonic()
        next_beat = time.monotonic()
        lost = False
        while True:
            for socket in io.poll(max(0.0, next_beat - time.monotonic())):
                if socket is io.inbox and not io.handle_command():
                    return
                if socket is io.dealer:
                    self._deliver(io.dealer.recv())
                if socket is io.events:
                    topic, payload = io.receive_event()
                    if topic == "broker":
                        last_daemon_beat = time.monotonic()
                    if payload is not None:
                        self._dispatch_queue.put((topic, payload))
            now = time.monotonic()
            if now >= next_beat:
                delivered, discarded = self._counts()
                beat = {"delivered": delivered, "discarded": discarded}
                io.dealer.send(wire.encode_request(0, "heartbeat", beat))
                next_beat = now + self.heartbeat_s
            silence = now - last_daemon_beat
            if not lost and silence > DAEMON_SILENCE_HEARTBEATS * self.heartbeat_s:
                lost = True
                reason = f"the daemon sent no heartbeat for {silence:.1f} s"
                self._dispatch_queue.put(("", {"type": "lost", "reason": reason}))

    def _deliver(self, data: bytes) -> None:
        """A reply goes to the caller waiting for it, a notice to the dispatcher."""
        try:
            reply = wire.decode_from_daemon(data)
        except ProtocolError:
            log.warning("dropped an undecodable message from the daemon")
            return
        if isinstance(reply, wire.Notice):
            self._dispatch_queue.put((reply.topic, reply.payload))
            return
        with self._pending_lock:
            future = self._pending.get(reply.id)
        if future is not None and not future.done():
            future.set_result(reply)

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
                if payload.get("type") in ("lost", "stopping"):
                    self._on_lost(str(payload.get("reason", "the daemon is stopping")))
                else:
                    self._on_event(topic, payload)
            except Exception:
                log.exception("an event handler failed on %s %s", topic, payload.get("type"))


class _IoLoop:
    """The sockets the I/O thread owns, and what it does with each."""

    def __init__(self, context: zmq.Context[Any], run_dir: Path, key: int) -> None:
        self.inbox = context.socket(zmq.PAIR)
        self.inbox.connect(f"inproc://mediastream-{key}")
        self.dealer = context.socket(zmq.DEALER)
        self.dealer.setsockopt(zmq.LINGER, 0)
        self.dealer.connect(control_endpoint(run_dir))
        self.events = context.socket(zmq.SUB)
        self.events.setsockopt(zmq.LINGER, 0)
        self.events.setsockopt(zmq.SUBSCRIBE, b"broker")
        self.events.connect(events_endpoint(run_dir))
        self._poller = zmq.Poller()
        for socket in (self.inbox, self.dealer, self.events):
            self._poller.register(socket, zmq.POLLIN)

    def poll(self, timeout_s: float) -> list[Any]:
        return [socket for socket, _ in self._poller.poll(round(timeout_s * 1000))]

    def handle_command(self) -> bool:
        """Run one command from a user thread; False means quit."""
        command: bytes
        body: bytes
        command, body = self.inbox.recv_multipart()
        if command == b"R":
            self.dealer.send(body)
        return command != b"Q"

    def receive_event(self) -> tuple[str, dict[str, Any] | None]:
        frames = self.events.recv_multipart()
        try:
            topic, payload = wire.decode_event(frames)
        except ProtocolError:
            log.warning("dropped an undecodable event from the daemon")
            return "", None
        return topic, (None if payload["type"] == "heartbeat" else payload)

    def close(self) -> None:
        for socket in (self.inbox, self.dealer, self.events):
            socket.close(linger=0)


def process_name() -> str:
    """How this process introduces itself to the daemon (shown in `stats`)."""
    return f"{Path(sys.argv[0]).name or 'python'}[{os.getpid()}]"
