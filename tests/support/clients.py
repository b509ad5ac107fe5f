"""Client processes for the tests: ``python tests/support/clients.py MODE RUN_DIR [ARGS]``.

Each prints JSON lines on stdout, so a test can follow it step by step.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import msgpack
import zmq

from mediabroker.capture.fake import verify_pattern
from mediastream import MediaDevices, MediaStreamError, MediaStreamTrack, VideoFrame, wire
from mediastream.paths import control_endpoint


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def read_frames(run_dir: str, width: str, height: str, count: str) -> None:
    """Read ``count`` frames; emit each frame's seq and a digest of its pixels."""
    with MediaDevices(run_dir, name="reader") as devices:
        constraints = {"video": {"width": int(width), "height": int(height)}}
        track = devices.getUserMedia(constraints).getVideoTracks()[0]
        emit(event="ready", track=track.id)
        for _ in range(int(count)):
            frame = track.read(timeout=5.0)
            assert isinstance(frame, VideoFrame)
            digest = hashlib.sha1(frame.data).hexdigest()
            emit(
                seq=frame.seq,
                digest=digest,
                valid=frame.valid,
                owndata=frame.data.flags.owndata,
                intact=verify_pattern(frame.data),
            )
        track.stop()


def read_on_demand(run_dir: str, width: str, height: str) -> None:
    """Take a camera track of exactly this size; then read one frame per line
    on stdin, emitting its shape, capture time and the track's settings."""
    with MediaDevices(run_dir, name="on demand") as devices:
        size = {"width": {"exact": int(width)}, "height": {"exact": int(height)}}
        track = devices.getUserMedia({"video": size}).getVideoTracks()[0]
        emit(event="ready", track=track.id)
        for _ in sys.stdin:
            frame = track.read(timeout=5.0)
            assert isinstance(frame, VideoFrame)
            shape = list(frame.data.shape)
            emit(shape=shape, timestamp=frame.timestamp, settings=track.getSettings())
        track.stop()


def ask(run_dir: str, width: str, height: str) -> None:
    """Say so, then ask for a camera mode (the test kills us while we wait)."""
    devices = MediaDevices(run_dir, name="asker")
    emit(event="asking")
    devices.getUserMedia({"video": {"width": int(width), "height": int(height)}})
    emit(event="answered")
    threading.Event().wait()


SLOW_READ_S = 0.5  # what makes this reader slow: it spends this long on each frame


def read_slowly(run_dir: str, width: str, height: str, count: str) -> None:
    """Read ``count`` frames, spending `SLOW_READ_S` on each (nothing can
    queue for a reader: it waits on the ring's doorbell, a futex, and looks
    at the ring)."""
    with MediaDevices(run_dir, name="slow reader") as devices:
        constraints = {"video": {"width": int(width), "height": int(height)}}
        track = devices.getUserMedia(constraints).getVideoTracks()[0]
        for _ in range(int(count)):
            frame = track.read(timeout=5.0)
            emit(seq=frame.seq, stats=track.stats)
            time.sleep(SLOW_READ_S)
        track.stop()


# The flood: message kinds, each with the reply the daemon owes it.
FLOOD_WINDOW = 500  # requests in flight at most, so that no reply is dropped at the HWM


def _flood_message(kind: int, request_id: int) -> tuple[list[bytes], str | None]:
    """(frames, the error name expected, "ok", or None for no reply)."""
    junk = os.urandom(64)
    if kind == 0:  # undecodable bytes
        return [b"\xc1" + junk], "ProtocolError"
    if kind == 1:  # an unknown op
        return [msgpack.packb({"v": 1, "id": request_id, "op": "rm -rf /", "args": {}})], (
            "ProtocolError"
        )
    if kind == 2:  # a valid, cheap request
        return [wire.encode_request(request_id, "enumerateDevices")], "ok"
    if kind == 3:  # stopping a track that never was: a no-op
        return [wire.encode_request(request_id, "stopTrack", {"trackId": junk.hex()})], "ok"
    if kind == 4:  # two frames: not a request at all
        return [b"", junk], None
    if kind == 5:  # over the message size limit, under the transport's
        return [b"\x81\xa1x\xc6" + (70_000).to_bytes(4, "big") + bytes(70_000)], "ProtocolError"
    if kind == 6:  # a wrong type where a constraint set goes
        args = {"constraints": {"video": "please"}}
        return [wire.encode_request(request_id, "getUserMedia", args)], "TypeError"
    return [b"\x91" * 5000 + b"\x01"], "ProtocolError"  # nested 5000 deep


FLOOD_KINDS = 8


def flood(run_dir: str, count: str) -> None:
    """Say hello, then send ``count`` messages of every kind above as fast as
    the daemon takes them (at most `FLOOD_WINDOW` unanswered); check every
    reply against what its message deserves; emit what was sent and seen."""
    ctx = zmq.Context()
    socket = ctx.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(control_endpoint(Path(run_dir)))
    socket.send(wire.encode_request(1, "hello", {"name": "flood", "version": 1}))
    assert wire.decode_reply(socket.recv()).ok
    emit(event="flooding")
    owed = _Owed()
    sent: dict[str, int] = {}
    started = time.monotonic()
    for n in range(int(count)):
        kind, request_id = n % FLOOD_KINDS, n + 2
        frames, outcome = _flood_message(kind, request_id)
        sent[str(kind)] = sent.get(str(kind), 0) + 1
        owed.expect(request_id if kind in (1, 2, 3, 6) else 0, outcome)
        socket.send_multipart(frames)
        while owed.count > FLOOD_WINDOW and owed.take(socket):
            pass
    while owed.count and owed.take(socket):
        pass
    emit(
        event="done",
        sent=sent,
        seen=owed.seen,
        wrong=owed.wrong[:10],
        owed=owed.count,
        seconds=time.monotonic() - started,
    )
    socket.close()
    ctx.term()


class _Owed:
    """The replies the daemon owes the flood, and what came instead."""

    def __init__(self) -> None:
        self.by_id: dict[int, str] = {}  # request id -> "ok" or the error name
        self.anonymous = 0  # ProtocolErrors owed with id 0 (no id to take)
        self.seen: dict[str, int] = {}
        self.wrong: list[Any] = []

    @property
    def count(self) -> int:
        return len(self.by_id) + self.anonymous

    def expect(self, request_id: int, outcome: str | None) -> None:
        if outcome is None:
            return  # dropped (and counted) by the daemon: no reply
        if request_id:
            self.by_id[request_id] = outcome
        else:
            self.anonymous += 1

    def take(self, socket: zmq.Socket[bytes]) -> bool:
        """Receive one reply and check it; False when none comes within 10 s."""
        if not socket.poll(10_000):
            self.wrong.append(f"no reply within 10 s with {self.count} owed")
            return False
        reply = wire.decode_from_daemon(socket.recv())
        if isinstance(reply, wire.Notice):
            return True
        outcome = "ok" if reply.ok else reply.error_name
        self.seen[outcome] = self.seen.get(outcome, 0) + 1
        if reply.id == 0 and outcome == "ProtocolError" and self.anonymous:
            self.anonymous -= 1
        elif self.by_id.pop(reply.id, None) != outcome:
            self.wrong.append([reply.id, outcome, reply.error_message[:80]])
        return True


def hold(run_dir: str) -> None:
    """Take a camera and a microphone track, then wait until killed."""
    devices = MediaDevices(run_dir, name="holder")
    stream = devices.getUserMedia({"video": True, "audio": True})
    emit(event="ready", tracks=[t.id for t in stream.getTracks()])
    threading.Event().wait()


def hold_frames(run_dir: str, width: str, height: str) -> None:
    """Hold two camera frames (zero copy), emit their seqs and the ring, then
    wait until killed."""
    devices = MediaDevices(run_dir, name="frame-holder")
    constraints = {"width": int(width), "height": int(height)}
    track = devices.getUserMedia({"video": constraints}).getVideoTracks()[0]
    frames = [track.read(timeout=5.0, hold=True) for _ in range(2)]
    emit(event="holding", seqs=[f.seq for f in frames], ring=track._info["ring"])
    threading.Event().wait()


def async_reader(run_dir: str) -> None:
    """Read camera frames with aread (the doorbell FIFO path), emit after the
    first ones, then keep reading until killed."""
    import asyncio

    async def main() -> None:
        with MediaDevices(run_dir, name="async-reader") as devices:
            stream = devices.getUserMedia({"video": {"width": 160, "height": 120}})
            track = stream.getVideoTracks()[0]
            for _ in range(3):
                await track.aread(timeout=5.0)
            emit(event="reading", seq=(await track.aread(timeout=5.0)).seq)
            async for _frame in track:
                pass

    asyncio.run(main())


def publish(run_dir: str, name: str) -> None:
    """Publish a camera stream under ``name``, then wait until killed."""
    devices = MediaDevices(run_dir, name="publisher")
    devices.publishStream(devices.getUserMedia({"video": True}), name)
    emit(event="published")
    threading.Event().wait()


WATCH_VIDEO = {"width": 160, "height": 120}  # small: these tests are about lifetimes
AGAIN_PATIENCE_S = 5.0  # how long `watch` retries a getUserMedia refused while the daemon is silent


def watch(run_dir: str, kinds: str) -> None:
    """Take one track of each of ``kinds`` ("video", "audio" or "video,audio")
    and report each one's ``ended`` with its reason, as it happens. Then, for
    each line on stdin, call getUserMedia for a camera again (retrying, for
    up to `AGAIN_PATIENCE_S`, only while the client itself counts the daemon
    silent) and report what came of it; at EOF, close and exit."""
    lock = threading.Lock()

    def report(**fields: object) -> None:
        with lock:
            emit(**fields)

    def on_ended(track: MediaStreamTrack) -> None:
        try:
            track.read(timeout=0)
            reason = "(read worked)"
        except MediaStreamError as exc:  # an ended track's read names why it ended
            reason = str(exc)
        report(event="ended", kind=track.kind, track=track.id, reason=reason)

    devices = MediaDevices(run_dir, name="watcher")
    constraints = {k: (WATCH_VIDEO if k == "video" else True) for k in kinds.split(",")}
    tracks = devices.getUserMedia(constraints).getTracks()
    for track in tracks:
        track.addEventListener("ended", lambda _event, t=track: on_ended(t))
    for track in tracks:
        track.read(timeout=5.0)
    report(event="ready", pid=os.getpid(), tracks={t.kind: t.id for t in tracks})
    for _line in sys.stdin:
        report(event="again", **_gum_again(devices))
    devices.close()


def _gum_again(devices: MediaDevices) -> dict[str, object]:
    """One more camera track, read once: what came of it (and of each refusal
    while the daemon was silent)."""
    refusals: list[str] = []
    started = time.monotonic()
    while True:
        try:
            track = devices.getUserMedia({"video": WATCH_VIDEO}).getVideoTracks()[0]
            frame = track.read(timeout=5.0)
            return {"ok": True, "track": track.id, "seq": frame.seq, "refusals": refusals}
        except MediaStreamError as exc:
            silent = str(exc).startswith("the daemon is not answering")
            if not silent or time.monotonic() - started > AGAIN_PATIENCE_S:
                return {"ok": False, "error": exc.name, "message": str(exc), "refusals": refusals}
            refusals.append(str(exc))
            time.sleep(0.05)  # the client's own state changes at the daemon's next heartbeat


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    modes = {
        "read": read_frames,
        "on-demand": read_on_demand,
        "hold": hold,
        "hold-frames": hold_frames,
        "async-reader": async_reader,
        "publish": publish,
        "ask": ask,
        "slow": read_slowly,
        "flood": flood,
        "watch": watch,
    }
    modes[mode](*args)
