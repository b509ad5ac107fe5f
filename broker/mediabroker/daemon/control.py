"""The control socket: requests in, replies and notices out.

Design note. Clients' DEALERs connect to `ZmtpServer` (zmtp.py), which
decides who may connect; each connection that says ``hello`` gets a session.
Each request runs as a task of its own so that a slow device start never
stalls other clients. A connection has at most `MAX_IN_FLIGHT` requests
running and `MAX_QUEUED` waiting their turn; past that we stop reading from
it (its own backlog, nobody else's). Heartbeats are handled as they are
read, so a client waiting on slow device starts is not taken for dead.
Nothing a client sends can raise out of the loop: undecodable or invalid
messages are counted and answered with an error. This is the one
place where exceptions become replies: a `MediaStreamError` is the client's
answer (the spec's TypeError travels as `ConstraintTypeError`), anything
else is a bug of ours, logged with its traceback and answered as an
internal error.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from mediabroker.config import BrokerConfig
from mediabroker.daemon.access import check_peer, describe_uid, over_limit
from mediabroker.daemon.sessions import Session, SessionTable
from mediabroker.daemon.zmtp import (
    Cap,
    Connection,
    ConnectionLimits,
    PeerCredentials,
    ZmtpServer,
)
from mediastream import wire
from mediastream.errors import (
    AbortError,
    InvalidStateError,
    MediaStreamError,
    NotReadableError,
    OverconstrainedError,
    ProtocolError,
)
from mediastream.paths import CONTROL

__all__ = [
    "MAX_IN_FLIGHT",
    "MAX_QUEUED",
    "SHUTDOWN_LINGER_S",
    "TRANSPORT_MAX_BYTES",
    "ControlServer",
    "Handler",
]

log = logging.getLogger(__name__)

# A larger frame closes its connection unread; messages between the wire
# limit and this one are decoded, refused and counted.
TRANSPORT_MAX_BYTES = 4 * wire.MAX_MESSAGE_BYTES
SHUTDOWN_LINGER_S = 1.0  # at shutdown: the last notices (every track's "ended") get out
MAX_NAME_CHARS = 100
MAX_IN_FLIGHT = 8  # requests of one connection running at once
MAX_QUEUED = 64  # requests of one connection read and not finished; then it is not read

Handler = Callable[[Session, dict[str, Any]], Awaitable[dict[str, Any]]]
NoReplyHandler = Callable[[Session, dict[str, Any]], None]  # run as read: wire.NO_REPLY_OPS
SessionEnder = Callable[[Session, str], None]


class ControlServer:
    """Serves the op table `route` was given, for the sessions of ``sessions``.
    ``end_session(session, reason)`` releases what a session holds."""

    def __init__(
        self, config: BrokerConfig, sessions: SessionTable, end_session: SessionEnder
    ) -> None:
        self.config = config
        self.counters = {"requests": 0, "malformed": 0, "errors": 0}
        self._sessions = sessions
        self._end_session = end_session
        self._handlers: dict[str, Handler] = {"bye": self._bye}
        self._no_reply: dict[str, NoReplyHandler] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._pipelines: dict[bytes, _Pipeline] = {}
        limits = ConnectionLimits(
            config.max_connections, config.connections_per_user, TRANSPORT_MAX_BYTES
        )
        self.server = ZmtpServer(
            config.run_dir / CONTROL, limits, self._receive, self._closed, self._refused
        )

    def route(self, handlers: dict[str, Handler]) -> None:
        self._handlers.update(handlers)

    def route_no_reply(self, handlers: dict[str, NoReplyHandler]) -> None:
        """Handlers of ops that get no reply, run as each is read (in order,
        no task): an error is counted and logged at debug, never answered."""
        self._no_reply.update(handlers)

    async def start(self) -> None:
        await self.server.start()

    def send_notice(self, session: Session, topic: str, event_type: str, **fields: Any) -> None:
        """Send one session a notice about its own tracks, streams or devices."""
        session.connection.send(wire.encode_notice(topic, event_type, **fields))

    def broadcast(self, topic: str, event_type: str, **fields: Any) -> None:
        """Send every connection a notice (the heartbeat, shutdown)."""
        self.server.broadcast(wire.encode_notice(topic, event_type, **fields))

    def disconnect(self, session: Session, reason: str) -> None:
        """End ``session`` and close its connection, telling the client why
        first: it may be alive but paused, and must not take the silence for
        a session that still holds its tracks."""
        self.send_notice(session, "session", "ended", reason=reason)
        self._end_session(session, reason)
        session.connection.close()

    async def close_requests(self) -> None:
        """Cancel the requests in flight (at shutdown, before tracks end)."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Close every connection once its last notices are written."""
        await self.server.close(SHUTDOWN_LINGER_S)

    async def _receive(self, connection: Connection, frames: list[bytes]) -> None:
        if len(frames) != 1:
            self.counters["malformed"] += 1
            return
        payload = frames[0]
        try:
            request = wire.decode_request(payload)
        except ProtocolError as exc:
            self.counters["malformed"] += 1
            self._reply_error(connection, wire.request_id_of(payload), exc)
            return
        self.counters["requests"] += 1
        session = self._sessions.get(connection.id)
        if session is not None:
            session.last_seen = time.monotonic()
        if request.op == "heartbeat":
            _record_heartbeat(session, request.args)
            return
        if request.op in self._no_reply:
            self._run_no_reply(session, request)
            return
        pipeline = self._pipelines.setdefault(connection.id, _Pipeline())
        await pipeline.queued.acquire()  # a full connection waits here, and is read no further
        task = asyncio.create_task(self._answer_in_turn(pipeline, connection, session, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: pipeline.queued.release())

    def _run_no_reply(self, session: Session | None, request: wire.Request) -> None:
        try:
            if session is None:
                raise InvalidStateError(f"{request.op} before hello")
            self._no_reply[request.op](session, request.args)
        except MediaStreamError as exc:
            self.counters["errors"] += 1
            log.debug("%s from %r refused: %s", request.op, session, exc)
        except Exception:  # a bug of ours: the loop must survive it, the log must show it
            self.counters["errors"] += 1
            log.exception("%s failed", request.op)

    def _closed(self, connection: Connection) -> None:
        self._pipelines.pop(connection.id, None)
        session = self._sessions.get(connection.id)
        if session is not None:
            self._end_session(session, "its connection closed")

    def _refused(self, peer: PeerCredentials, cap: Cap) -> bytes:
        """Log a refused connection; the notice that tells its client why."""
        if cap is Cap.TOTAL:
            field, shown, who = "max_connections", self.config.max_connections, "the daemon"
            held = len(self.server)
        else:
            field, shown = "connections_per_user", self.config.connections_per_user
            who, held = f"user {describe_uid(peer.uid)}", self.server.connections_of(peer.uid)
        what = f"{who} holds {held} connections to the daemon, the limit"
        reason = over_limit(self.config, peer, "a connection", field, shown, what)
        advice = "close some, or ask the administrator to raise it"
        return wire.encode_notice("session", "refused", reason=f"{reason}: {advice}")

    async def _answer_in_turn(
        self,
        pipeline: _Pipeline,
        connection: Connection,
        session: Session | None,
        request: wire.Request,
    ) -> None:
        async with pipeline.running:
            await self._answer(connection, session, request)

    async def _answer(
        self, connection: Connection, session: Session | None, request: wire.Request
    ) -> None:
        try:
            if request.op == "hello":
                result = self._hello(connection, request.args)
            elif session is None:
                raise InvalidStateError(f"{request.op} before hello: say hello first")
            else:
                result = await self._handlers[request.op](session, request.args)
            reply = _encode_reply(request, result)
        except MediaStreamError as exc:
            self._reply_error(connection, request.id, exc)
        except Exception as exc:  # a bug of ours: the loop must survive it, the log must show it
            log.exception("%s failed", request.op)
            self._reply_error(connection, request.id, exc)
        else:
            connection.send(reply)

    def _reply_error(self, connection: Connection, request_id: int, exc: Exception) -> None:
        self.counters["errors"] += 1
        if isinstance(exc, MediaStreamError):
            name, message = exc.name, str(exc)
        else:
            name, message = "AbortError", f"internal error in the daemon: {exc!r}"
        constraint = exc.constraint if isinstance(exc, OverconstrainedError) else None
        connection.send(wire.encode_error(request_id, name, message, constraint))

    def _hello(self, connection: Connection, args: dict[str, Any]) -> dict[str, Any]:
        if args["version"] != wire.PROTOCOL_VERSION:
            raise ProtocolError(
                f"client speaks protocol {args['version']}, daemon {wire.PROTOCOL_VERSION}"
            )
        peer = connection.peer
        check_peer(self.config, peer)  # NotAllowedError naming the rule
        old = self._sessions.get(connection.id)
        if old is not None:
            self._end_session(old, "hello again")
        self._check_session_room(peer)
        self._sessions.open(connection, args["name"][:MAX_NAME_CHARS])
        return {
            "heartbeat_s": self.config.heartbeat_s,
            "daemon_pid": os.getpid(),
            "shm_prefix": self.config.shm_prefix,  # where clients make their doorbells
        }

    def _check_session_room(self, peer: PeerCredentials) -> None:
        held, limit = len(self._sessions.of_uid(peer.uid)), self.config.sessions_per_user
        if held < limit:
            return
        what = f"user {describe_uid(peer.uid)} has {held} sessions open, the limit"
        reason = over_limit(self.config, peer, "a session", "sessions_per_user", limit, what)
        raise NotReadableError(
            f"{reason}: close MediaDevices it no longer uses, or ask the administrator to raise it"
        )

    async def _bye(self, session: Session, args: dict[str, Any]) -> dict[str, Any]:
        self._end_session(session, "bye")
        return {}


class _Pipeline:
    """One connection's requests: how many may run, how many may wait."""

    def __init__(self) -> None:
        self.running = asyncio.Semaphore(MAX_IN_FLIGHT)
        self.queued = asyncio.Semaphore(MAX_QUEUED)


def _record_heartbeat(session: Session | None, args: dict[str, Any]) -> None:
    """A client's heartbeat carries its own frame counts (``mediabroker stats``,
    ``/metrics``): reads happen in shared memory, where the daemon sees none.
    Counts are never negative, whatever a client sends."""
    if session is not None and "delivered" in args:
        session.delivered = max(0, args["delivered"])
        session.discarded = max(0, args.get("discarded", 0))


def _encode_reply(request: wire.Request, result: dict[str, Any]) -> bytes:
    """Raises `AbortError` for a result over the message size limit: the
    client gets an error instead of silence."""
    try:
        return wire.encode_reply(request.id, result)
    except ProtocolError as exc:
        raise AbortError(f"the reply to {request.op} is too large to send: {exc}") from exc
