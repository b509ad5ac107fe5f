"""The control socket: requests in, replies and notices out.

Design note. One ROUTER socket carries every client's requests. Each
request runs as a task of its own so that a slow device start never stalls
other clients; a client's own requests are serial because the client waits
for each reply. Nothing a client sends can raise out of the loop:
undecodable or invalid messages are counted and answered with an error.
This is the one place where exceptions become replies: a `MediaStreamError`
is the client's answer (the spec's TypeError travels as
`ConstraintTypeError`), anything else is a bug of ours, logged with its
traceback and answered as an internal error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import zmq
import zmq.asyncio

from mediabroker.config import BrokerConfig
from mediabroker.daemon.access import check_peer
from mediabroker.daemon.sessions import Session, SessionTable, parse_peer_address
from mediastream import wire
from mediastream.errors import (
    AbortError,
    InvalidStateError,
    MediaStreamError,
    OverconstrainedError,
    ProtocolError,
)
from mediastream.paths import control_endpoint

__all__ = ["SHUTDOWN_LINGER_MS", "TRANSPORT_MAX_BYTES", "ControlServer", "Handler"]

log = logging.getLogger(__name__)

# libzmq drops (and disconnects) anything larger before we see it; messages
# between the wire limit and this one are decoded, refused and counted.
TRANSPORT_MAX_BYTES = 4 * wire.MAX_MESSAGE_BYTES
SHUTDOWN_LINGER_MS = 1000  # every daemon socket, at shutdown: the last notices get out
MAX_NAME_CHARS = 100

Handler = Callable[[Session, dict[str, Any]], Awaitable[dict[str, Any]]]
SessionEnder = Callable[[Session, str], None]


class ControlServer:
    """Serves the op table `route` was given, for the sessions of ``sessions``.
    ``end_session(session, reason)`` releases what a session holds."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        config: BrokerConfig,
        sessions: SessionTable,
        end_session: SessionEnder,
    ) -> None:
        self.config = config
        self.counters = {"requests": 0, "malformed": 0, "errors": 0}
        self._ctx = ctx
        self._sessions = sessions
        self._end_session = end_session
        self._handlers: dict[str, Handler] = {"bye": self._bye}
        self._tasks: set[asyncio.Task[None]] = set()
        self._socket: zmq.asyncio.Socket | None = None

    def route(self, handlers: dict[str, Handler]) -> None:
        self._handlers.update(handlers)

    def bind(self) -> None:
        socket = self._ctx.socket(zmq.ROUTER)
        socket.setsockopt(zmq.LINGER, 0)
        # Before bind: the listener copies the options then, for every connection.
        socket.setsockopt(zmq.MAXMSGSIZE, TRANSPORT_MAX_BYTES)
        socket.bind(control_endpoint(self.config.run_dir))
        self._socket = socket

    @property
    def socket(self) -> zmq.asyncio.Socket:
        if self._socket is None:
            raise RuntimeError("the control socket is not bound yet")
        return self._socket

    async def serve(self) -> None:
        """Receive and dispatch requests (runs until cancelled)."""
        while True:
            frames = await self.socket.recv_multipart(copy=False)
            self._dispatch(frames)
            # A receive that finds a message waiting does not yield: under a
            # flood, requests' tasks (other clients' answers) and the heartbeat
            # would wait until the socket ran dry.
            await asyncio.sleep(0)

    def send_notice(self, session: Session, topic: str, event_type: str, **fields: Any) -> None:
        """Send one session a notice about its own tracks, streams or devices."""
        notice = wire.encode_notice(topic, event_type, **fields)
        self.socket.send_multipart([session.identity, notice])

    async def close_requests(self) -> None:
        """Cancel the requests in flight (at shutdown, before tracks end)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def close(self) -> None:
        """Close the socket, lingering so the last notices (every track's
        "ended") reach connected clients."""
        if self._socket is not None:
            self._socket.close(linger=SHUTDOWN_LINGER_MS)

    def _dispatch(self, frames: list[zmq.Frame]) -> None:
        if len(frames) != 2:
            self.counters["malformed"] += 1
            return
        identity, payload = frames[0].bytes, frames[1]
        try:
            request = wire.decode_request(payload.bytes)
        except ProtocolError as exc:
            self.counters["malformed"] += 1
            self._reply_error(identity, wire.request_id_of(payload.bytes), exc)
            return
        self.counters["requests"] += 1
        session = self._sessions.get(identity)
        if session is not None:
            session.last_seen = time.monotonic()
        if request.op == "heartbeat":
            _record_heartbeat(session, request.args)
            return
        task = asyncio.create_task(self._answer(identity, payload, session, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(
        self, identity: bytes, payload: zmq.Frame, session: Session | None, request: wire.Request
    ) -> None:
        try:
            if request.op == "hello":
                result = self._hello(identity, payload, request.args)
            elif session is None:
                raise InvalidStateError(f"{request.op} before hello: say hello first")
            else:
                result = await self._handlers[request.op](session, request.args)
            reply = _encode_reply(request, result)
        except MediaStreamError as exc:
            self._reply_error(identity, request.id, exc)
        except Exception as exc:  # a bug of ours: the loop must survive it, the log must show it
            log.exception("%s failed", request.op)
            self._reply_error(identity, request.id, exc)
        else:
            self.socket.send_multipart([identity, reply])

    def _reply_error(self, identity: bytes, request_id: int, exc: Exception) -> None:
        self.counters["errors"] += 1
        if isinstance(exc, MediaStreamError):
            name, message = exc.name, str(exc)
        else:
            name, message = "AbortError", f"internal error in the daemon: {exc!r}"
        constraint = exc.constraint if isinstance(exc, OverconstrainedError) else None
        reply = wire.encode_error(request_id, name, message, constraint)
        self.socket.send_multipart([identity, reply])

    def _hello(self, identity: bytes, payload: zmq.Frame, args: dict[str, Any]) -> dict[str, Any]:
        if args["version"] != wire.PROTOCOL_VERSION:
            raise ProtocolError(
                f"client speaks protocol {args['version']}, daemon {wire.PROTOCOL_VERSION}"
            )
        peer = parse_peer_address(str(payload.get("Peer-Address")))
        check_peer(self.config, peer)  # NotAllowedError naming the rule
        old = self._sessions.get(identity)
        if old is not None:
            self._end_session(old, "hello again")
        self._sessions.open(identity, peer, args["name"][:MAX_NAME_CHARS])
        return {"heartbeat_s": self.config.heartbeat_s, "daemon_pid": os.getpid()}

    async def _bye(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        self._end_session(session, "bye")
        return {}


def _record_heartbeat(session: Session | None, args: dict[str, Any]) -> None:
    """A client's heartbeat carries its own frame counts (``mediabroker stats``)."""
    if session is not None and "delivered" in args:
        session.delivered = args["delivered"]
        session.discarded = args.get("discarded", 0)


def _encode_reply(request: wire.Request, result: dict[str, Any]) -> bytes:
    """Raises `AbortError` for a result over the message size limit: the
    client gets an error instead of silence."""
    try:
        return wire.encode_reply(request.id, result)
    except ProtocolError as exc:
        raise AbortError(f"the reply to {request.op} is too large to send: {exc}") from exc
