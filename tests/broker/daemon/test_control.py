"""daemon/control.py in-process: the real control socket on a scratch run dir,
a real DEALER client, handlers of the test's own. What only the error
boundary decides is checked here: which exceptions are the client's answer
and which are the daemon's bugs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import zmq
import zmq.asyncio

from mediabroker.config import BrokerConfig
from mediabroker.daemon.control import ControlServer
from mediabroker.daemon.sessions import Session, SessionTable
from mediastream import wire
from mediastream.errors import ConstraintTypeError, NotFoundError
from mediastream.paths import control_endpoint

Handler = Callable[[Session, dict[str, Any]], Awaitable[dict[str, Any]]]
REPLY_TIMEOUT_S = 5.0


class Peer:
    """A client speaking the wire protocol over a DEALER socket."""

    def __init__(self, socket: zmq.asyncio.Socket) -> None:
        self.socket = socket
        self._ids = iter(range(1, 1_000_000))

    async def ask(self, op: str, args: dict[str, Any]) -> wire.Reply:
        request_id = next(self._ids)
        await self.socket.send(wire.encode_request(request_id, op, args))
        data = await asyncio.wait_for(self.socket.recv(), REPLY_TIMEOUT_S)
        reply = wire.decode_reply(data)
        assert reply.id == request_id, reply
        return reply


Scenario = Callable[[ControlServer, Peer], Awaitable[None]]


async def _serve(run_dir: Path, scenario: Scenario) -> None:
    """Run ``scenario`` against a bound, serving ControlServer with one
    session open (hello said), then close everything."""
    ctx = zmq.asyncio.Context()
    sessions = SessionTable()
    server = ControlServer(BrokerConfig(run_dir=run_dir), sessions, sessions.close)
    await server.start()
    socket = ctx.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(control_endpoint(run_dir))
    try:
        peer = Peer(socket)
        hello = await peer.ask("hello", {"version": wire.PROTOCOL_VERSION, "name": "test"})
        assert hello.ok, hello
        await scenario(server, peer)
    finally:
        await server.close_requests()
        socket.close()
        await server.close()
        for session in sessions:
            sessions.close(session, "test over")
        ctx.term()


def serve(run_dir: Path, scenario: Scenario) -> None:
    asyncio.run(_serve(run_dir, scenario))


def _raising(exc: Exception) -> Handler:
    async def handler(session: Session, args: dict[str, Any]) -> dict[str, Any]:
        raise exc

    return handler


def test_a_handler_bug_is_logged_and_answered_as_an_internal_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """1. a handler raises a builtin TypeError (a bug, not the client's
    mistake); 2. the client gets AbortError saying it is internal; 3. the log
    has the traceback."""

    async def scenario(server: ControlServer, peer: Peer) -> None:
        server.route({"stats": _raising(TypeError("object of type 'NoneType' has no len()"))})
        reply = await peer.ask("stats", {})
        assert reply.error_name == "AbortError", reply
        assert "internal error in the daemon" in reply.error_message
        assert server.counters["errors"] == 1

    with caplog.at_level(logging.ERROR, logger="mediabroker.daemon.control"):
        serve(tmp_path, scenario)
    [record] = [r for r in caplog.records if "stats failed" in r.getMessage()]
    assert record.exc_info is not None and record.exc_info[0] is TypeError


def test_the_spec_type_error_travels_as_type_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario(server: ControlServer, peer: Peer) -> None:
        server.route({"stats": _raising(ConstraintTypeError("width must be a number"))})
        reply = await peer.ask("stats", {})
        assert (reply.error_name, reply.error_message) == ("TypeError", "width must be a number")

    with caplog.at_level(logging.ERROR, logger="mediabroker.daemon.control"):
        serve(tmp_path, scenario)
    assert not [r for r in caplog.records if r.exc_info], "a client's mistake is no traceback"


def test_a_dom_exception_keeps_its_name(tmp_path: Path) -> None:
    async def scenario(server: ControlServer, peer: Peer) -> None:
        server.route({"stats": _raising(NotFoundError("no camera"))})
        reply = await peer.ask("stats", {})
        assert (reply.error_name, reply.error_message) == ("NotFoundError", "no camera")

    serve(tmp_path, scenario)


def test_the_loop_serves_on_after_a_bug(tmp_path: Path) -> None:
    async def ok(session: Session, args: dict[str, Any]) -> dict[str, Any]:
        return {"devices": []}

    async def scenario(server: ControlServer, peer: Peer) -> None:
        server.route({"stats": _raising(KeyError("bug")), "enumerateDevices": ok})
        assert (await peer.ask("stats", {})).error_name == "AbortError"
        reply = await peer.ask("enumerateDevices", {})
        assert reply.ok and reply.result == {"devices": []}, reply

    serve(tmp_path, scenario)
