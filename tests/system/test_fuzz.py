"""Hostile input on the live daemon's control socket.

Covered elsewhere, not repeated here: the decoder alone under hypothesis
(arbitrary bytes, structured and mutated messages, size, count and depth
limits; test_wire.py) and one example of each kind of bad request against a
daemon (test_server.py). Here a real daemon takes what hypothesis makes up
(random bytes, truncated msgpack, wrong types, huge maps and strings, deep
nesting, unknown ops, every op with hostile arguments) on a raw DEALER, and
a flood of thousands of messages from one client while a well-formed client
goes on working. Each bad message must get its error reply or be dropped,
and be counted. Then: names and ids from clients never become a path or a
segment name, and requests that race the end of their session or track
leave nothing behind.

Where client strings go (daemon/control.py and ops.py, by reading): ``hello`` name -> the
session's name (cut to 100, logged with repr); trackId, deviceId -> dict
lookups only; stream names -> `_stream_name` (printable, 1 to 200) ->
dict keys; fake device labels (root and the daemon's user only) -> a label
and a hashed id. Segment names come from the daemon's own source counter,
the validated format and a random tag (`Source.ring_name`), and
`Ring.create` refuses any name that is not [A-Za-z0-9._-].
"""

from __future__ import annotations

import itertools
import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import psutil
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediabroker.daemon.tracks import MAX_TRACKS_PER_SESSION
from mediastream import (
    MediaDevices,
    MediaStreamError,
    NotFoundError,
    ProtocolError,
    VideoFrame,
    wire,
)
from mediastream.paths import control_endpoint
from mediastream.ring import SHM_DIR
from support import ClientProcess, Daemon, add_figure, segments, wait_until

FUZZ_EXAMPLES = 1000
FLOOD_MESSAGES = 10_000
FLOOD_LATENCY_RATIO = 10  # generous: one flooding client used to cost others x300
REPLY_TIMEOUT_S = 10.0
SENTINEL_IDS = 0x5E17_0000_0000_0000  # our own requests' ids start here; fuzz ids hardly ever

HOSTILE_STRINGS = [
    "../../etc/passwd",
    "/etc/shadow",
    "..",
    "/",
    "",
    "\x00",
    "a/../../b",
    "mediabroker.1-video-640x480-bgr24-30fps",
    "source-1-video-640x480-bgr24-30fps",
    "%s%n%x",
    "\n<3>ERROR forged log line",
    "x" * 4096,
    "é" * 2049,  # 4098 bytes: over the string limit
]
EXTREME_NUMBERS = [0, -1, 1, 2, 30, 31, 640, 1080, 1920, 1921, 2**31, 2**63 - 1, -(2**63)]
EXTREME_NUMBERS += [2**64 - 1, 0.5, 1e-300, 5e-324, 1e308, -1e308]
EXTREME_VALUES = [*EXTREME_NUMBERS, float("nan"), float("inf"), float("-inf")]
CONSTRAINT_NAMES = [
    "width",
    "height",
    "aspectRatio",
    "frameRate",
    "resizeMode",
    "pixelFormat",
    "deviceId",
    "groupId",
    "facingMode",
    "sampleRate",
    "channelCount",
    "latency",
    "backgroundBlur",
    "advanced",
    "__proto__",
]


# -- what hypothesis makes up -----------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(EXTREME_VALUES),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(),
    st.text(max_size=40),
    st.binary(max_size=40),
    st.sampled_from(HOSTILE_STRINGS),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=20,
)
constraint_values = st.one_of(
    st.sampled_from(EXTREME_VALUES),
    st.sampled_from([*HOSTILE_STRINGS, "bgr24", "gray8", "none", "crop-and-scale"]),
    st.dictionaries(
        st.sampled_from(["min", "max", "exact", "ideal", "bogus"]),
        st.sampled_from([*EXTREME_VALUES, "x"]),
        max_size=3,
    ),
    st.lists(st.sampled_from(HOSTILE_STRINGS), max_size=3),
    values,
)
constraint_sets = st.dictionaries(st.sampled_from(CONSTRAINT_NAMES), constraint_values, max_size=4)
gum_constraints = st.fixed_dictionaries(
    {},
    optional={
        "video": st.one_of(st.booleans(), constraint_sets, values),
        "audio": st.one_of(st.booleans(), constraint_sets, values),
        "screen": values,
    },
)
hostile_text = st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=60))
request_ids = st.one_of(st.integers(min_value=-(2**63), max_value=2**64 - 1), values)


def args_for(op: str) -> st.SearchStrategy[dict[str, Any]]:
    """Arguments for ``op``: of the right type but hostile, of the wrong type,
    missing, or with extras."""
    if op == "getUserMedia":
        right: dict[str, st.SearchStrategy[Any]] = {"constraints": gum_constraints}
    elif op == "applyConstraints":
        right = {"trackId": hostile_text, "constraints": constraint_sets}
    elif op == "publishStream":
        right = {"name": hostile_text, "trackIds": st.lists(hostile_text, max_size=5)}
    elif op == "hello":
        right = {"name": hostile_text, "version": st.sampled_from([1, 0, 2, -1, 2**64 - 1])}
    else:
        right = {name: hostile_text for name in wire.OPS[op]}
    wrong = {name: values for name in wire.OPS[op]}
    return st.one_of(
        st.fixed_dictionaries(right),
        st.fixed_dictionaries({}, optional=right),
        st.fixed_dictionaries(wrong),
        st.fixed_dictionaries(right, optional={"extra": values}),
    )


RANDOM_OPS = sorted(set(wire.OPS) - {"addFakeDevice"})  # plugging devices: an explicit test

valid_ops = st.sampled_from(RANDOM_OPS).flatmap(
    lambda op: st.builds(
        lambda request_id, args: msgpack.packb(
            {"v": 1, "id": request_id, "op": op, "args": args}, use_bin_type=True
        ),
        st.integers(min_value=0, max_value=2**32),
        args_for(op),
    )
)


def _packable(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


wrong_types = st.builds(
    _packable,
    st.fixed_dictionaries(
        {},
        optional={
            "v": st.one_of(st.just(1), values),
            "id": request_ids,
            "op": st.one_of(st.sampled_from(sorted(wire.OPS)), values),
            "args": values,
        },
    ),
)
unknown_ops = st.builds(
    lambda request_id, op: _packable({"v": 1, "id": request_id, "op": op, "args": {}}),
    st.integers(min_value=0, max_value=2**32),
    hostile_text.filter(lambda op: op not in wire.OPS),
)
truncated = st.builds(
    lambda data, cut: data[: cut % max(1, len(data))], valid_ops, st.integers(0, 400)
)
HUGE = [
    _packable({"v": 1, "id": 3, "op": "stats", "args": {str(i): i for i in range(300)}}),
    _packable({"v": 1, "id": 4, "op": "stopTrack", "args": {"trackId": "x" * 5000}}),
    _packable({"v": 1, "id": 5, "op": "hello", "args": {"name": "y" * 4096, "version": 1}}),
    _packable(
        {"v": 1, "id": 6, "op": "publishStream", "args": {"name": "n", "trackIds": ["t"] * 300}}
    ),
    _packable({"v": 1, "id": 7, "op": "stats", "args": {}, "pad": "z" * 60_000}),
    _packable({"v": 1, "id": 8, "op": "stats", "args": {}, "pad": [b"p" * 4096] * 17}),
    b"\x91" * 3000 + b"\x01",  # arrays nested 3000 deep
    b"\x81\xa1a" * 40 + b"\x01",  # maps nested 40 deep
    b"\xdf\xff\xff\xff\xff",  # a map that claims 4 billion entries
    b"\xdb\xff\xff\xff\xff",  # a string that claims 4 GiB
]
huge = st.sampled_from(HUGE)
multipart = st.lists(st.binary(max_size=64), min_size=2, max_size=4)
requests = valid_ops.map(lambda data: [data])
hostile_messages = st.one_of(  # about half are well-formed requests with hostile arguments
    *[requests] * 6,
    st.binary(max_size=2048).map(lambda data: [data]),
    truncated.map(lambda data: [data]),
    wrong_types.map(lambda data: [data]),
    huge.map(lambda data: [data]),
    unknown_ops.map(lambda data: [data]),
    multipart,
)


# -- a raw session ------------------------------------------------------------------


@dataclass
class Expected:
    """What the daemon owes: replies, and how its counters should move."""

    replies: int = 0
    malformed: int = 0
    requests: int = 0


class RawSession:
    """A bare DEALER that said hello, sending what no client library would.

    It predicts with the client's own decoder what the daemon owes for each
    message (`owed`), and counts the replies that came to messages not its
    own (`replies_seen`, `errors_seen`)."""

    def __init__(self, run_dir: Path) -> None:
        self.owed = Expected()
        self.replies_seen = 0
        self.errors_seen = 0
        self.outcomes: Counter[str] = Counter()  # replies to messages not ours, by outcome
        self._ids = itertools.count(SENTINEL_IDS)
        self._ours: set[int] = set()
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(control_endpoint(run_dir))

    def close(self) -> None:
        self.socket.close()
        self.context.term()

    def send(self, frames: list[bytes]) -> int | None:
        """Send one message; returns the id of the ProtocolError it must get
        before anything sent after it, if the decoder refuses it."""
        self.socket.send_multipart(frames)
        if len(frames) != 1:
            self.owed.malformed += 1  # dropped and counted: no reply
            return None
        try:
            request = wire.decode_request(frames[0])
        except ProtocolError:
            self.owed.malformed += 1
            self.owed.replies += 1
            return wire.request_id_of(frames[0])
        self.owed.requests += 1
        self.owed.replies += request.op != "heartbeat"
        return None

    def call(
        self, op: str, args: dict[str, Any] | None = None
    ) -> tuple[wire.Reply, list[wire.Reply]]:
        """A request of ours: its reply (which must be ok), and the replies to
        other messages that came first."""
        request_id = next(self._ids)
        self._ours.add(request_id)
        self.owed.requests += 1
        self.socket.send(wire.encode_request(request_id, op, args))
        others = []
        while True:
            reply = self.receive(REPLY_TIMEOUT_S)
            assert reply is not None, f"no reply to {op} within {REPLY_TIMEOUT_S:g} s"
            if reply.id == request_id:
                assert reply.ok, reply
                return reply, others
            others.append(reply)

    def receive(self, timeout_s: float) -> wire.Reply | None:
        """The next reply (notices are skipped), or None after the timeout."""
        deadline = time.monotonic() + timeout_s
        while self.socket.poll(max(0, round((deadline - time.monotonic()) * 1000))):
            message = wire.decode_from_daemon(self.socket.recv())
            if isinstance(message, wire.Notice):
                continue
            if message.id in self._ours:
                self._ours.discard(message.id)
            else:
                self.replies_seen += 1
                self.errors_seen += not message.ok
                self.outcomes["ok" if message.ok else message.error_name] += 1
            return message
        return None

    def drain(self) -> None:
        """Wait for every reply still owed (a getUserMedia may wait for a
        device), and make sure no more come."""
        while self.replies_seen < self.owed.replies:
            reply = self.receive(REPLY_TIMEOUT_S)
            missing = self.owed.replies - self.replies_seen
            assert reply is not None, f"{missing} of {self.owed.replies} replies never came"
        assert self.receive(0.2) is None, "more replies than messages that deserve one"

    def counters(self) -> dict[str, int]:
        counters: dict[str, int] = self.call("stats")[0].result["counters"]
        return counters


@pytest.fixture
def raw_session(daemon: Daemon) -> Iterator[RawSession]:
    session = RawSession(daemon.run_dir)
    try:
        session.call("hello", {"name": "fuzz", "version": 1})
        yield session
    finally:
        session.close()


def test_fuzzed_messages_are_answered_or_dropped_and_counted(
    daemon: Daemon, raw_session: RawSession
) -> None:
    """1. Hypothesis sends the daemon hundreds of made-up messages on a raw
       DEALER, each followed by a hello of ours (which also releases whatever
       the last message got: hello again ends the old session).
    2. After each, the daemon is alive and answers that hello; a message the
       decoder refuses got its ProtocolError (with its id) before it.
    3. At the end every reply owed came, none more, and the counters moved by
       exactly what was sent: malformed for each refused or multi-part
       message, requests for each decoded one, errors for each error reply.
    4. The daemon stops cleanly with nothing left (the fixture)."""
    session = raw_session
    start = session.counters()
    session.owed = Expected()
    examples = 0

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(message=hostile_messages)
    def exchange(message: list[bytes]) -> None:
        nonlocal examples
        examples += 1
        refused_id = session.send(message)
        replies = session.call("hello", {"name": "fuzz", "version": 1})[1]
        assert daemon.process.poll() is None, daemon.log()[-3000:]
        if refused_id is not None:
            assert any(r.error_name == "ProtocolError" and r.id == refused_id for r in replies), (
                f"no ProtocolError with id {refused_id} for {message[0][:80]!r}: {replies}"
            )

    exchange()
    session.drain()
    end = session.counters()
    delta = {key: end[key] - start[key] for key in start}
    assert delta["malformed"] == session.owed.malformed, (delta, session.owed)
    assert delta["requests"] == session.owed.requests, (delta, session.owed)
    assert delta["errors"] == session.errors_seen, (delta, session.errors_seen)
    session.call("hello", {"name": "fuzz", "version": 1})  # releases what the last one got
    with MediaDevices(daemon.run_dir, name="observer") as devices:

        def held() -> list[Any]:
            stats = devices.broker_stats()
            tracks = [s["tracks"] for s in stats["sessions"] if s["tracks"]]
            return tracks + stats["sources"] + segments(daemon.prefix)

        wait_until(lambda: not held(), 10, "every track, source and ring to go", held)
    add_figure("fuzz cases run against the live daemon", examples)
    for outcome, count in session.outcomes.items():
        add_figure(f"fuzz replies: {outcome}", count)
    log_text = daemon.log()
    at = log_text.find("Traceback")
    assert at < 0, log_text[max(0, at - 500) : at + 3000]


# -- a flood ------------------------------------------------------------------------


def test_a_flood_from_one_client_leaves_others_served(daemon: Daemon) -> None:
    """1. A well-formed client holds a camera track and times its requests
       (enumerateDevices) alone.
    2. Another process floods the daemon with 10,000 messages of eight kinds
       (undecodable, unknown op, valid, no-op stops, two-part junk, over the
       size limit, wrong types, nested 5000 deep), as fast as the daemon
       answers; it checks every reply against its message.
    3. Meanwhile the well-formed client's requests all succeed, at a median
       latency within 10 times its median alone (the ratio is reported: on a
       shared 2-core machine the flood also takes CPU from everyone), and its
       track stays live (the daemon's heartbeat went on).
    4. The counters moved by what the flood sent; afterwards the track reads.
    5. The daemon's log holds no unhandled error."""
    with MediaDevices(daemon.run_dir, name="well-formed") as devices:
        track = devices.getUserMedia({"video": True}).getTracks()[0]
        ended: list[str] = []
        track.addEventListener("ended", lambda ev: ended.append(ev.type))
        alone = [timed(devices.enumerateDevices) for _ in range(200)]
        before = devices.broker_stats()["counters"]
        flood = ClientProcess("flood", daemon.run_dir, FLOOD_MESSAGES)
        during: list[float] = []
        done = threading.Event()
        failures: list[BaseException] = []

        def probe() -> None:
            while not done.is_set():
                try:
                    during.append(timed(devices.enumerateDevices))
                except MediaStreamError as exc:  # reported by the test below
                    failures.append(exc)
                    return

        prober = threading.Thread(target=probe, name="probe")
        try:
            assert flood.next()["event"] == "flooding"
            prober.start()
            result = flood.next(timeout=120)
            done.set()
            prober.join(30)
            assert flood.wait() == 0, flood.stderr()
        finally:
            done.set()
            flood.close()
        after = devices.broker_stats()["counters"]
        assert isinstance(track.read(timeout=5), VideoFrame)
        assert track.readyState == "live" and not ended
        track.stop()

    assert not failures, failures
    assert result["event"] == "done" and result["owed"] == 0 and not result["wrong"], result
    sent = result["sent"]
    assert isinstance(sent, dict) and sum(sent.values()) == FLOOD_MESSAGES
    malformed = sum(sent[kind] for kind in ("0", "1", "4", "5", "7"))  # see clients.flood
    errors = sum(sent[kind] for kind in ("0", "1", "5", "6", "7"))
    assert after["malformed"] - before["malformed"] == malformed
    assert after["errors"] - before["errors"] == errors
    assert after["requests"] - before["requests"] >= FLOOD_MESSAGES - malformed
    ratio = statistics.median(during) / statistics.median(alone)
    add_figure("flood: messages sent", FLOOD_MESSAGES)
    add_figure("flood: seconds", round(float(result["seconds"]), 2))  # type: ignore[arg-type]
    add_figure("flood: well-formed requests answered during it", len(during))
    add_figure("flood: median latency during / alone", round(ratio, 2))
    assert len(during) >= 10, f"only {len(during)} requests answered during the flood"
    assert ratio <= FLOOD_LATENCY_RATIO, (
        f"median {statistics.median(during) * 1e3:.2f} ms during the flood, "
        f"{statistics.median(alone) * 1e3:.2f} ms alone"
    )
    # asyncio's "Future exception was never retrieved" (once logged under
    # floods) and any traceback mean an error nobody handled.
    log = daemon.log()
    assert "never retrieved" not in log and "Traceback" not in log, log[-3000:]


def timed(call: Any) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


# -- names, ids and races -------------------------------------------------------------

DAEMON_FILES = re.compile(
    r"(control|capture-status|mediabroker\.pid)"
)


def test_client_names_and_ids_never_become_paths(daemon: Daemon, raw_session: RawSession) -> None:
    """Path-like names and ids in every place a client gives one: the daemon
    treats them as opaque keys (found or not found), and afterwards its run
    dir and segments hold only names it made itself, and it holds open no
    file but its own."""
    hostile = ["../../etc/passwd", "/etc/shadow", "..", "a/../../b", "\x00", "source-1-x"]
    with MediaDevices(daemon.run_dir, name="../../etc/passwd") as devices:
        stream = devices.getUserMedia({"video": True})
        for name in hostile[:4]:
            devices.publishStream(stream, name)
            attached = devices.attachStream(name)
            assert len(attached.getTracks()) == 1
            for track in attached.getTracks():
                track.stop()
            devices.unpublishStream(name)
            with pytest.raises(NotFoundError):
                devices.attachStream(name)
        for name in hostile:
            for op, args in [
                ("stopTrack", {"trackId": name}),
                ("applyConstraints", {"trackId": name, "constraints": {"width": 320}}),
                ("unpublishStream", {"name": name}),
            ]:
                assert raw_session.call(op, args)[0].result == {}
            for op, args in [
                ("cloneTrack", {"trackId": name}),
                ("removeFakeDevice", {"deviceId": name}),
                ("getUserMedia", {"constraints": {"video": {"deviceId": {"exact": name}}}}),
            ]:
                raw_session.socket.send(wire.encode_request(1, op, args))
                reply = raw_session.receive(REPLY_TIMEOUT_S)
                assert reply is not None and not reply.ok, (op, name, reply)
                assert reply.error_name in (
                    "InvalidStateError",
                    "NotFoundError",
                    "OverconstrainedError",
                )
        device = devices.add_fake_device("videoinput", "../../etc/passwd")
        assert re.fullmatch(r"[0-9a-f]{32}", device)
        plugged = devices.getUserMedia({"video": {"deviceId": {"exact": device}}}).getTracks()[0]
        assert plugged.label == "../../etc/passwd" and plugged.read(timeout=5)
        stray = [p.name for p in daemon.run_dir.iterdir() if not DAEMON_FILES.fullmatch(p.name)]
        assert not stray, stray
        ours = re.compile(re.escape(daemon.prefix) + r"\d+-(video|audio)-[0-9a-z.x-]+")
        assert all(ours.fullmatch(name) for name in segments(daemon.prefix))
        assert len(segments(daemon.prefix)) == 2
        opened = [f.path for f in psutil.Process(daemon.pid).open_files()]
        assert all(p.startswith((str(daemon.log_path.parent), str(SHM_DIR))) for p in opened), (
            opened
        )
        plugged.stop()
        devices.remove_fake_device(device)
        for track in stream.getTracks():
            track.stop()
    assert not list(daemon.run_dir.parent.rglob("passwd")) and not list(SHM_DIR.glob("*passwd*"))


@pytest.mark.parametrize("ending", ["bye", "hello", "stopTrack"])
def test_a_request_racing_the_end_of_its_session_or_track_leaves_nothing(
    daemon: Daemon, raw_session: RawSession, ending: str
) -> None:
    """A client sends a request that waits for a device (getUserMedia, or
    applyConstraints to a new size) and, before it is answered, ends what
    the request is for: ``bye``, hello again (a new session on the same
    socket), or stopTrack of the track being changed. Both requests are
    answered; no track is left to a session that is gone, and every source
    closes after its grace period."""
    session = raw_session
    if ending == "stopTrack":
        reply = session.call("getUserMedia", {"constraints": {"video": {"width": 200}}})[0]
        track_id = reply.result["tracks"][0]["id"]
        first = ("applyConstraints", {"trackId": track_id, "constraints": {"width": 100}})
        then: tuple[str, dict[str, Any]] = ("stopTrack", {"trackId": track_id})
    else:
        first = ("getUserMedia", {"constraints": {"video": {"width": 200}, "audio": True}})
        then = ("bye", {}) if ending == "bye" else ("hello", {"name": "again", "version": 1})
    session.socket.send(wire.encode_request(1, *first))
    session.socket.send(wire.encode_request(2, *then))
    replies = {r.id: r for r in (session.receive(REPLY_TIMEOUT_S) for _ in range(2)) if r}
    assert sorted(replies) == [1, 2], replies
    assert replies[2].ok, replies[2]
    if ending == "stopTrack":  # the spec: applyConstraints on an ended track changes nothing
        assert replies[1].ok and replies[1].result == {}, replies[1]
    else:
        assert replies[1].error_name == "AbortError", replies[1]
    with MediaDevices(daemon.run_dir, name="observer") as devices:

        def held() -> list[Any]:
            stats = devices.broker_stats()
            tracks = [s["tracks"] for s in stats["sessions"] if s["tracks"]]
            return tracks + stats["sources"] + segments(daemon.prefix)

        wait_until(lambda: not held(), 10, "every track, source and ring to go", held)


def test_a_message_over_the_transport_limit_is_dropped_and_the_daemon_serves_on(
    daemon: Daemon,
) -> None:
    """Over 256 KiB libzmq itself drops the message and the connection (the
    daemon never sees it, so nothing is counted); the daemon serves on, and
    the client's socket reconnects and works."""
    session = RawSession(daemon.run_dir)
    try:
        session.call("hello", {"name": "big", "version": 1})
        before = session.counters()
        session.socket.send(b"\x00" * (300 * 1024))
        with MediaDevices(daemon.run_dir) as devices:
            assert len(devices.enumerateDevices()) == 2
            assert daemon.process.poll() is None

            def answers() -> bool:
                session.socket.send(
                    wire.encode_request(SENTINEL_IDS - 1, "hello", {"name": "big", "version": 1})
                )
                return session.receive(0.5) is not None

            wait_until(answers, 10, "the dropped client to reconnect and be answered")
            after = devices.broker_stats()["counters"]
        assert (after["malformed"], after["errors"]) == (before["malformed"], before["errors"])
    finally:
        session.close()
    assert "Traceback" not in daemon.log()


def test_a_session_holds_at_most_max_tracks_and_its_stats_still_decode(
    daemon: Daemon, raw_session: RawSession
) -> None:
    """A session asking for 300 tracks gets 256 and then NotReadableError
    naming the cap, so every reply about it (stats) stays within the wire's
    limits and decodes; the daemon serves on."""
    session = raw_session
    for request_id in range(1, 301):
        session.socket.send(
            wire.encode_request(request_id, "getUserMedia", {"constraints": {"video": True}})
        )
    replies = [session.receive(REPLY_TIMEOUT_S) for _ in range(300)]
    assert all(r is not None for r in replies), replies
    refused = [r for r in replies if r is not None and not r.ok]
    assert len(refused) == 300 - MAX_TRACKS_PER_SESSION
    assert all(r.error_name == "NotReadableError" and "256" in r.error_message for r in refused)
    session.socket.send(wire.encode_request(301, "stats"))
    reply = session.receive(REPLY_TIMEOUT_S)
    assert reply is not None and reply.ok, reply
    [held] = [s for s in reply.result["sessions"] if s["tracks"]]
    assert len(held["tracks"]) == MAX_TRACKS_PER_SESSION
    session.call("bye")
    with MediaDevices(daemon.run_dir) as devices:
        assert devices.broker_stats()["sessions"][0]["tracks"] == []
