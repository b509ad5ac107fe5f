"""Per-frame results channels and the listings of what is published, with
real processes (tests/support/result_clients.py) on a daemon of each test's
own: results line up with frames of other derived sizes by captureSeq and
captureTimestamp, slow subscribers skip instead of queueing, bad results
are refused, the channel ends with its publisher and its ring goes.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest

from conftest import assert_nothing_left
from mediastream import (
    ConstraintTypeError,
    InvalidStateError,
    MediaDevices,
    MediaStreamTrack,
    NotFoundError,
    NotReadableError,
    ReadTimeoutError,
)
from mediastream.results import DEFAULT_SLOTS, MAX_RESULT_BYTES
from support import ClientProcess, Daemon, add_figure, segments, wait_until
from support.hostile import reachable_daemon, serving
from support.users import needs_root, shared_dir

SCRIPT = "result_clients.py"
OPEN_TO_ALL = "[access]\nsocket_mode = 0o666\ngroup = 65534\n"  # as in test_quotas


def results_rings(daemon: Daemon) -> list[str]:
    return [name for name in segments(daemon.prefix) if ".results." in name]


@contextlib.contextmanager
def clients(*made: ClientProcess) -> Iterator[tuple[ClientProcess, ...]]:
    try:
        yield made
    finally:
        for client in made:
            client.close()


def client(mode: str, daemon: Daemon, *args: object) -> ClientProcess:
    return ClientProcess(mode, daemon.run_dir, *args, script=SCRIPT)


def camera(md: MediaDevices, width: int = 640, height: int = 360) -> MediaStreamTrack:
    size = {"width": {"exact": width}, "height": {"exact": height}}
    return md.getUserMedia({"video": size}).getVideoTracks()[0]


def test_results_line_up_with_frames_of_two_other_sizes(daemon: Daemon) -> None:
    """1. A detector publishes "faces" on a 640x360 track, one result per
    frame. 2. Two followers read 320x180 and the native 1280x720 alongside
    it: 40 results each line up exactly (captureSeq, captureTimestamp, and
    the frame's seq inside the data); ``get(frame)`` finds the frame's own.
    3. The detector is SIGKILLed: both followers' iteration stops, ``ended``
    fires with the reason, and the results ring leaves /dev/shm. (The camera
    runs at 1280x720 from the start: a camera re-opened in a larger mode
    numbers its captures from 0 again, and only captureTimestamp tells the
    two frames 19 apart.)"""
    with MediaDevices(daemon.run_dir) as warm:
        camera(warm, 1280, 720).read(timeout=5.0)
        _line_up_and_end(daemon)


def _line_up_and_end(daemon: Daemon) -> None:
    detector = client("detect", daemon, "faces")
    with clients(detector):
        assert detector.next()["event"] == "ready"
        small = client("follow", daemon, "faces", 320, 180, 40)
        native = client("follow", daemon, "faces", 1280, 720, 40)
        with clients(small, native):
            for follower in (small, native):
                subscribed = follower.next()
                assert subscribed["publisher"]["process"] == "detector", subscribed  # type: ignore[index]
            done = {}
            for follower, shape in ((small, [180, 320, 3]), (native, [720, 1280, 3])):
                seen = follower.next(timeout=30)
                assert seen["event"] == "done" and seen["shape"] == shape, seen
                assert seen["matched"] == 40 and seen["mismatched"] == 0, seen
                assert seen["gets"] > 0, seen
                done[shape[1]] = seen
            latencies = [d["latency_ms"] for d in done.values()]
            add_figure("results send-to-read median ms", max(m for m, _ in latencies))  # type: ignore[misc]
            print("send-to-subscriber latency ms (median, max):", latencies)
            assert len(results_rings(daemon)) == 1
            detector.kill()
            for follower in (small, native):
                follower.release()
                seen = follower.next()
                assert seen["ended"] and seen["fired"], seen
                assert "went away" in str(seen["reason"]), seen
                assert follower.wait() == 0, follower.stderr()
    wait_until(lambda: not results_rings(daemon), 5, "the results ring unlinked", segments)


def test_a_slow_subscriber_skips_and_does_not_grow(daemon: Daemon) -> None:
    """A subscriber spending 0.2 s per result on a 30 per second channel:
    it gets the newest each time, counts the ones it skipped, and its RSS
    stays put between its 2nd and 15th read (nothing queues)."""
    detector = client("detect", daemon, "boxes")
    with clients(detector):
        assert detector.next()["event"] == "ready"
        slow = client("slow", daemon, "boxes", 15, 0.2)
        with clients(slow):
            first, last = slow.next(), slow.next(timeout=30)
            assert last["stats"]["skippedResults"] > 5 * 13, last  # type: ignore[index]
            assert last["stats"]["deliveredResults"] == 15, last  # type: ignore[index]
            grown = int(last["rss_kib"]) - int(first["rss_kib"])  # type: ignore[call-overload]
            assert grown < 1024, (first, last)
            assert slow.wait() == 0, slow.stderr()


def test_results_over_the_limit_or_of_wrong_types_are_refused(daemon: Daemon) -> None:
    """1. Over 16 KiB packed, not a dict, not msgpack-able, int keys, a bad
    frame key: `ConstraintTypeError` (a TypeError) at once, naming the
    limit. 2. A raw sendResult the client would not send (a list, not a
    map) is refused by the daemon and never reaches subscribers. 3. Bad
    names, a taken name, an audio track: refused."""
    with MediaDevices(daemon.run_dir) as md, MediaDevices(daemon.run_dir) as other:
        track = camera(md)
        with md.publishResults("checked", track) as pub, other.subscribeResults("checked") as sub:
            frame = track.read(timeout=5.0)
            with pytest.raises(TypeError, match=str(MAX_RESULT_BYTES)):
                pub.send(frame, {"blob": b"\0" * MAX_RESULT_BYTES})
            for bad in ([1, 2], {"x": object()}, {1: "int key"}, "text"):
                with pytest.raises(ConstraintTypeError):
                    pub.send(frame, bad)  # type: ignore[arg-type]
            with pytest.raises(ConstraintTypeError, match="captureTimestamp"):
                pub.send(frame.captureSeq, {"ok": 1})
            with pytest.raises(ConstraintTypeError):
                pub.send("frame", {"ok": 1})  # type: ignore[arg-type]
            connection = md._live_connection()
            raw = {"channel": pub.id, "captureSeq": 1, "captureNs": 1, "sentNs": 1}
            connection.send_only("sendResult", {**raw, "data": msgpack.packb([1, 2])})
            connection.send_only("sendResult", {**raw, "data": b"\xc1"})
            pub.send(frame.captureSeq, {"ok": True}, frame.captureTimestamp)
            result = sub.read(timeout=5.0)
            assert result.data == {"ok": True} and result.captureSeq == frame.captureSeq
            assert sub.stats == {"deliveredResults": 1, "skippedResults": 0, "totalResults": 1}
            assert md.broker_stats()["counters"]["errors"] >= 2
            with pytest.raises(ConstraintTypeError):
                md.publishResults("", track)
            with pytest.raises(InvalidStateError, match="already published"):
                other.publishResults("checked", camera(other))
            audio = md.getUserMedia({"audio": True}).getAudioTracks()[0]
            with pytest.raises(InvalidStateError, match="video track"):
                md.publishResults("sound", audio)
            with pytest.raises(ConstraintTypeError):
                md.publishResults("foreign", camera(other))


def test_closing_or_stopping_ends_the_channel(daemon: Daemon) -> None:
    """1. ``pub.close()``: a subscriber blocked in read gets NotReadableError,
    ``ended`` fires, the ring is unlinked. 2. The published track's
    ``stop()`` does the same for a second channel, and its publisher's
    ``ended`` fires; sending on it is InvalidStateError. 3. A read times out
    as ReadTimeoutError while nothing is sent."""
    with MediaDevices(daemon.run_dir) as md, MediaDevices(daemon.run_dir) as other:
        track = camera(md)
        pub = md.publishResults("first", track)
        sub = other.subscribeResults("first")
        with pytest.raises(ReadTimeoutError):
            sub.read(timeout=0.05)
        fired = threading.Event()
        sub.onended = lambda _event: fired.set()
        outcome: list[BaseException] = []

        def reader() -> None:
            try:
                sub.read(timeout=10)
            except NotReadableError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=reader)
        thread.start()
        pub.close()
        thread.join(10)
        assert outcome and "ended" in str(outcome[0]), outcome
        assert fired.wait(5) and sub.ended
        assert not results_rings(daemon)
        sub.close()

        pub = md.publishResults("second", track)
        sub = other.subscribeResults("second")
        publisher_ended = threading.Event()
        pub.addEventListener("ended", lambda _event: publisher_ended.set())
        track.stop()
        assert list(sub) == []
        assert publisher_ended.wait(5) and "track ended" in pub.end_reason
        with pytest.raises(InvalidStateError):
            pub.send(1, {"late": True}, 1.0)
        pub.close()
        sub.close()
        assert not results_rings(daemon)


def test_listings_and_closest_names(daemon: Daemon) -> None:
    """``listStreams`` and ``listResults`` name what is published and who
    publishes it; a mistyped name's NotFoundError lists the closest."""
    with MediaDevices(daemon.run_dir, name="lister") as md, MediaDevices(daemon.run_dir) as other:
        track = camera(md)
        md.publishStream(md.getUserMedia({"video": True}), "lobby-camera")
        with md.publishResults("faces-lobby", track):
            streams, channels = other.listStreams(), other.listResults()
            assert [s["name"] for s in streams] == ["lobby-camera"]
            assert [c["name"] for c in channels] == ["faces-lobby"]
            assert channels[0]["publisher"]["process"] == "lister", channels
            assert streams[0]["publisher"]["uid"] == channels[0]["publisher"]["uid"]
            assert channels[0]["publisher"]["pid"] == os.getpid()  # one's own user sees pids
            with pytest.raises(NotFoundError, match="did you mean 'lobby-camera'"):
                other.attachStream("lobby-camra")
            with pytest.raises(NotFoundError, match="did you mean 'faces-lobby'"):
                other.subscribeResults("faces-lobyb")
            with pytest.raises(NotFoundError, match="published: 'faces-lobby'"):
                other.subscribeResults("zzz")
        assert other.listResults() == []


def test_channels_past_the_quota_are_refused(tmp_path: Path) -> None:
    """``[results] per_session = 2``: a third channel of one process is
    NotReadableError naming the key; another process may still publish."""
    config = "[results]\nper_session = 2\nslots = 16\n"
    with shared_dir("mbresults-", 0o755) as base, serving(base, config) as daemon:
        with MediaDevices(daemon.run_dir) as md, MediaDevices(daemon.run_dir) as other:
            track = camera(md)
            first, second = md.publishResults("a", track), md.publishResults("b", track)
            with pytest.raises(NotReadableError, match="per_session = 2"):
                md.publishResults("c", track)
            with other.publishResults("c", camera(other)), other.subscribeResults("a") as sub:
                assert sub._reader.segment.slot_count == 16 != DEFAULT_SLOTS
            first.close()
            second.close()


@needs_root
@pytest.mark.parametrize("open_rings", [True, False], ids=["rings-open", "rings-closed"])
def test_another_user_subscribes_as_it_attaches_streams(open_rings: bool) -> None:
    """nobody (another uid, no groups) against a daemon every user may reach:
    with the rings' group nogroup it lists and reads the results; with the
    rings 0640 root it gets NotAllowedError naming the group, as its
    getUserMedia would."""
    config = OPEN_TO_ALL if open_rings else "[access]\nsocket_mode = 0o666\n"
    with reachable_daemon("results", config) as daemon:
        detector = client("detect", daemon, "faces")
        with clients(detector):
            assert detector.next()["event"] == "ready"
            probe = client("nobody-subscribe", daemon, "faces")
            with clients(probe):
                seen = probe.next(timeout=30)
                if open_rings:
                    assert seen["outcome"] == "ok" and seen["listed"] == ["faces"], seen
                    assert seen["pids_shown"] == [False], seen  # root's pid is not nobody's to see
                else:
                    assert seen["outcome"] == "NotAllowedError", seen
                    assert "access.group" in str(seen["message"]), seen
                assert probe.wait() == 0, probe.stderr()


def test_a_killed_daemons_results_ring_is_swept_by_the_next(tmp_path: Path) -> None:
    """1. A daemon with a results channel is SIGKILLed: the results ring
    stays in /dev/shm, and the subscriber sees the channel end (its session
    is lost). 2. The next daemon on that prefix removes it as it removes
    stale video rings, and leaves nothing when it stops."""
    first = Daemon(tmp_path / "run")
    try:
        first.wait_ready()
        with MediaDevices(first.run_dir) as md:
            track = camera(md)
            pub = md.publishResults("orphan", track)
            sub = md.subscribeResults("orphan")
            pub.send(track.read(timeout=5.0), {"n": 1})
            assert sub.read(timeout=5.0).data == {"n": 1}
            first.kill()
            assert list(sub.results(timeout=10.0)) == []  # ends with the session
            assert sub.ended and "session" in sub.end_reason
            assert len(results_rings(first)) == 1
        wait_until(lambda: not first.living_children(), 10, "orphans to exit")
    finally:
        first.close()
    second = Daemon(tmp_path / "run", prefix=first.prefix)
    try:
        second.wait_ready()
        assert not results_rings(second), segments(second.prefix)
        assert second.terminate() == 0
        assert_nothing_left(second)
    finally:
        second.close()


def test_a_flooding_publisher_is_capped_and_subscribers_keep_up(daemon: Daemon) -> None:
    """5000 results sent as fast as send() returns: the daemon stores at most
    its rate cap's worth (the rest dropped and counted in listResults), a
    subscriber still gets the newest, and other clients are answered."""
    with MediaDevices(daemon.run_dir) as md, MediaDevices(daemon.run_dir) as other:
        track = camera(md)
        with md.publishResults("flood", track) as pub, other.subscribeResults("flood") as sub:
            for n in range(5000):
                pub.send(n, {"n": n}, 1.0)
            pub.send(5000, {"last": True}, 1.0)
            listed = wait_until(
                lambda: [c for c in other.listResults() if c["results"] + c["dropped"] == 5001],
                10,
                "every result stored or dropped",
                other.listResults,
            )
            assert listed[0]["dropped"] > 0, listed
            newest = sub.read(timeout=5.0)
            assert newest.captureSeq <= 5000
            assert sub.stats["skippedResults"] > 0
            assert other.enumerateDevices()
