"""Faults injected for real: signals to clients and capture processes, a full /dev/shm.

Covered elsewhere, not repeated here: a client killed while it holds tracks
is released within 2 s (test_sessions.py); the daemon killed with SIGKILL
ends every client's tracks within 2.5 s, read() raises NotReadableError and
a new daemon sweeps the stale segments and sockets (test_server.py,
test_service.py); a capture process killed once mutes and unmutes its
tracks (test_sources.py); the shm budget and a second daemon on one run dir
are refused (test_service.py); jackd killed under a live audio capture
(test_portaudio.py).

Here: a client killed *while reading* next to another reader, and while its
getUserMedia waits for the device; a capture process killed until the
supervisor gives up; /dev/shm really too small (a tmpfs of a few MiB
mounted over /dev/shm in a mount namespace of the daemon's own), and then
completely full under a running capture.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from conftest import assert_nothing_left
from mediabroker.capture.fake import verify_pattern
from mediabroker.sources.policy import RestartPolicy
from mediastream import (
    MediaDevices,
    MediaStreamError,
    MediaStreamTrack,
    NotReadableError,
    VideoFrame,
)
from support import ClientProcess, Daemon, add_figure, segments, wait_until

RELEASE_S = 2.0  # a dead client's session and tracks are gone within this
WINDOW_S = 1.5  # reading windows compared before and after a kill
SAME_PACE = 0.8  # the other reader's frame count after the kill, against before
MAX_CRASHES = RestartPolicy().max_crashes  # the daemon runs with the default policy
CRASH_WINDOW_S = RestartPolicy().window_s


def session_names(devices: MediaDevices) -> list[str]:
    return [s["name"] for s in devices.broker_stats()["sessions"]]


def live_sources(devices: MediaDevices) -> list[dict[str, object]]:
    return [s for s in devices.broker_stats()["sources"] if s["state"] == "live"]


class Reading:
    """A thread that reads a track flat out, noting (time, seq) of each frame
    and every error, until stopped; `reached(t)` is set once it read past ``t``."""

    def __init__(self, track: MediaStreamTrack) -> None:
        self.track = track
        self.frames: list[tuple[float, int]] = []
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._target = float("inf")
        self._reached = threading.Event()
        self._thread = threading.Thread(target=self._run, name="reading")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self.track.read(timeout=1.0)
            except MediaStreamError as exc:  # a timeout or an end: the test reports it
                self.errors.append(exc)
                return
            now = time.monotonic()
            self.frames.append((now, frame.seq))
            if now >= self._target:
                self._reached.set()

    def wait_past(self, moment: float, timeout: float) -> None:
        """Block until a frame was read after ``moment`` (monotonic seconds)."""
        self._reached.clear()
        self._target = moment
        if self.frames and self.frames[-1][0] >= moment:
            return
        assert self._reached.wait(timeout), (
            f"no frame read after {moment:.3f} within {timeout:g} s; errors {self.errors}"
        )

    def count(self, start: float, end: float) -> int:
        return sum(1 for t, _ in self.frames if start <= t < end)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def test_a_reader_killed_mid_read_disturbs_no_other_reader(daemon: Daemon) -> None:
    """1. A client process and this process read the same camera (one ring),
       each frame after frame.
    2. The client is killed with SIGKILL in the middle of its reading.
    3. Within 2 s the daemon has dropped its session; the source, its ring and
       its capture process are the same as before.
    4. This process read on without a timeout, with growing sequence numbers,
       and as many frames in the 1.5 s after the kill as in the 1.5 s before
       (at least 80 %)."""
    other = ClientProcess("read", daemon.run_dir, 320, 240, 10**9)
    try:
        assert other.next()["event"] == "ready"
        with MediaDevices(daemon.run_dir, name="survivor") as devices:
            track = devices.getUserMedia({"video": {"width": 320, "height": 240}}).getTracks()[0]
            [source] = live_sources(devices)
            reading = Reading(track)
            try:
                reading.wait_past(time.monotonic() + WINDOW_S, 10)
                for _ in range(5):  # the other client is mid-stream, reading intact frames
                    assert other.next()["intact"] is True
                killed_at = time.monotonic()
                other.kill()
                add_figure("faults injected", 1)
                wait_until(
                    lambda: "reader" not in session_names(devices),
                    RELEASE_S,
                    "the killed reader's session to be released",
                    lambda: session_names(devices),
                )
                reading.wait_past(killed_at + WINDOW_S, 10)
            finally:
                reading.stop()
            assert not reading.errors, reading.errors
            before = reading.count(killed_at - WINDOW_S, killed_at)
            after = reading.count(killed_at, killed_at + WINDOW_S)
            assert before >= 20, f"only {before} frames in {WINDOW_S} s before the kill"
            assert after >= SAME_PACE * before, f"{before} frames before the kill, {after} after"
            seqs = [seq for _, seq in reading.frames]
            assert all(a < b for a, b in itertools.pairwise(seqs)), "seq went back"
            [now] = live_sources(devices)
            assert (now["id"], now["pid"], now["ring"]) == (
                source["id"],
                source["pid"],
                source["ring"],
            )
            track.stop()
    finally:
        other.close()


def test_a_client_killed_while_its_getusermedia_waits_leaves_no_track(daemon: Daemon) -> None:
    """1. A client asks for a camera mode nobody runs; the daemon spawns its
       capture process, which is held (SIGSTOP) before its first frame, so the
       request is still waiting for the device.
    2. The client is killed with SIGKILL; the daemon drops its session.
    3. The capture process resumes (SIGCONT) and the source comes up.
    4. The track made for the dead client is released, not kept for nobody:
       the source closes after its grace period and its ring is unlinked."""
    asker = ClientProcess("ask", daemon.run_dir, 176, 144)
    try:
        assert asker.next()["event"] == "asking"
        started = wait_until(
            lambda: re.search(r"176x144\S*: capture process (\d+) started", daemon.log()),
            10,
            "the daemon to spawn the capture process",
        )
        capture = int(started.group(1))
        os.kill(capture, signal.SIGSTOP)
        try:
            asker.kill()
            with MediaDevices(daemon.run_dir, name="observer") as devices:
                wait_until(
                    lambda: "asker" not in session_names(devices),
                    RELEASE_S,
                    "the killed client's session to be released",
                    lambda: session_names(devices),
                )
                assert devices.broker_stats()["sources"][0]["state"] == "starting"
        finally:
            os.kill(capture, signal.SIGCONT)
        add_figure("faults injected", 2)
        wait_until(
            lambda: not segments(daemon.prefix),
            10,
            "the source nobody holds to close",
            lambda: (segments(daemon.prefix), daemon.log()[-2000:]),
        )
        wait_until(lambda: not psutil.pid_exists(capture), 10, f"capture process {capture} to exit")
    finally:
        asker.close()


def test_a_capture_process_killed_again_and_again_ends_its_tracks(daemon: Daemon) -> None:
    """1. A track reads a camera; its capture process is killed with SIGKILL
       each time the supervisor has restarted it.
    2. The first four crashes mute and unmute the track; the fifth within
       30 s ends it (``ended``), with the reason in the daemon's log and in
       the NotReadableError that read() raises.
    3. The daemon is unharmed: a new getUserMedia on the same camera gives a
       new source with intact frames."""
    with MediaDevices(daemon.run_dir) as devices:
        track = devices.getUserMedia({"video": {"width": 160, "height": 120}}).getTracks()[0]
        events: list[str] = []
        for kind in ("mute", "unmute", "ended"):
            track.addEventListener(kind, lambda ev: events.append(ev.type))
        assert track.read(timeout=5)
        killed: list[int] = []
        for crash in range(1, MAX_CRASHES + 1):
            [source] = wait_until(
                lambda: [s for s in live_sources(devices) if s["pid"] not in killed],
                10,
                f"a live capture process to kill (crash {crash})",
                lambda: devices.broker_stats()["sources"],
            )
            pid = int(source["pid"])
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            add_figure("faults injected", 1)
            if crash < MAX_CRASHES:
                wait_until(
                    lambda crash=crash: events.count("unmute") == crash,
                    10,
                    f"unmute after crash {crash}",
                    lambda: events,
                )
        wait_until(lambda: "ended" in events, 10, "the track to end", lambda: events)
        assert events == ["mute", "unmute"] * (MAX_CRASHES - 1) + ["ended"]
        reason = f"capture failed {MAX_CRASHES} times in {CRASH_WINDOW_S:g} s"
        assert f"{reason}; last: capture process exited with status -9" in daemon.log()
        with pytest.raises(NotReadableError, match=reason):
            track.read(timeout=1)

        again = devices.getUserMedia({"video": {"width": 160, "height": 120}}).getTracks()[0]
        frame = again.read(timeout=5)
        assert isinstance(frame, VideoFrame) and verify_pattern(frame.data)
        [source] = live_sources(devices)
        assert source["pid"] not in killed
        again.stop()


# -- /dev/shm without room -------------------------------------------------------

MIB = 1024 * 1024
SHM_MIB = 8  # the daemon's /dev/shm: one 640x480 ring (7.0 MiB) fits, 1280x720 (21.1) not
NO_ROOM = re.compile(
    r"/dev/shm has (?P<free>\d+\.\d) MiB free, the ring '(?P<ring>[^']+)' "
    r"needs (?P<needed>\d+\.\d) MiB"
)
UNSHARE = ["unshare", "--mount", "--propagation", "private", "--"]


def _small_shm_unavailable() -> str | None:
    """Why a daemon cannot get a small tmpfs as its /dev/shm here, or None."""
    missing = [tool for tool in ("unshare", "nsenter", "mount") if shutil.which(tool) is None]
    if missing:
        return f"needs {', '.join(missing)} (util-linux)"
    probe = subprocess.run(
        [*UNSHARE, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", "/dev/shm"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a mount namespace here: {probe.stderr.strip()}"
    return None


@pytest.fixture
def small_shm_daemon(tmp_path: Path) -> Iterator[Daemon]:
    """A daemon whose /dev/shm is a tmpfs of `SHM_MIB` MiB: it runs in a mount
    namespace of its own (the tmpfs goes with it). Its clients must join that
    namespace (`in_namespace`) to map its rings."""
    reason = _small_shm_unavailable()
    if reason is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the test {reason}")
        pytest.skip(reason)
    script = f'mount -t tmpfs -o size={SHM_MIB}m,mode=1777 tmpfs /dev/shm && exec "$@"'
    daemon = Daemon(tmp_path / "run", wrapper=[*UNSHARE, "sh", "-c", script, "sh"])
    try:
        daemon.wait_ready()
        yield daemon
    finally:
        daemon.close()


def in_namespace(daemon: Daemon) -> list[str]:
    return ["nsenter", f"--target={daemon.pid}", "--mount", "--"]


def namespace_shm(daemon: Daemon) -> Path:
    """The daemon's /dev/shm, seen from here."""
    return Path(f"/proc/{daemon.pid}/root/dev/shm")


def ns_segments(daemon: Daemon) -> list[str]:
    """The daemon's rings in its own /dev/shm."""
    return sorted(p.name for p in namespace_shm(daemon).glob(daemon.prefix + "*"))


def no_room(message: str) -> tuple[float, float]:
    match = NO_ROOM.search(message)
    assert match is not None, message
    return float(match["free"]), float(match["needed"])


def test_a_ring_that_does_not_fit_in_dev_shm_is_refused_not_a_sigbus(
    small_shm_daemon: Daemon,
) -> None:
    """1. /dev/shm is an 8 MiB tmpfs: a 1280x720 camera (a 21.1 MiB ring) is
       refused with NotReadableError saying what is free and what it needs.
    2. A 320x240 camera fits; a client reads it.
    3. /dev/shm is filled to the last byte under it: the capture process goes
       on writing (the ring was allocated up front: no SIGBUS, no restart), the
       reader gets intact frames, and a 160x120 stream (a new ring of 0.4 MiB)
       is refused with 0.0 MiB free.
    4. With the room back, the 160x120 stream works; the daemon stops cleanly
       with nothing left in its /dev/shm."""
    daemon = small_shm_daemon
    shm = namespace_shm(daemon)
    stat = os.statvfs(shm)
    assert stat.f_blocks * stat.f_frsize == SHM_MIB * MIB
    with MediaDevices(daemon.run_dir) as devices:
        with pytest.raises(NotReadableError) as refused:
            devices.getUserMedia({"video": {"width": 1280, "height": 720}})
        # Not quite 8.0 free: PortAudio's probe at start loads libjack, which
        # leaves its registry (jack_db-0) in the /dev/shm it sees.
        assert no_room(str(refused.value)) == (round(stat.f_bavail * stat.f_frsize / MIB, 1), 21.1)
        add_figure("faults injected", 1)

        frames = 75  # the reader's: it must outlast the checks below (2.5 s at 30 fps)
        reader = ClientProcess(
            "read", daemon.run_dir, 320, 240, frames, wrapper=in_namespace(daemon)
        )
        filler = shm / "filler"
        try:
            assert reader.next()["event"] == "ready"
            [source] = live_sources(devices)
            assert reader.next()["intact"] is True
            with open(filler, "wb") as fill:
                stat = os.statvfs(shm)
                os.posix_fallocate(fill.fileno(), 0, stat.f_bavail * stat.f_frsize)
            assert os.statvfs(shm).f_bavail == 0
            add_figure("faults injected", 1)

            with pytest.raises(NotReadableError) as refused:
                devices.getUserMedia({"video": {"width": 160, "height": 120}})
            assert no_room(str(refused.value)) == (0.0, 0.4)
            add_figure("faults injected", 1)

            lines = [reader.next() for _ in range(frames - 1)]
            assert all(line["intact"] and line["valid"] for line in lines), lines
            assert reader.wait() == 0
            [now] = live_sources(devices)
            assert now["pid"] == source["pid"], "the capture process was restarted"
        finally:
            filler.unlink(missing_ok=True)
            reader.close()

        wait_until(  # the 320x240 source closes: 160x120 is a camera mode, not derived
            lambda: not ns_segments(daemon),
            10,
            "the first ring to be unlinked",
            lambda: ns_segments(daemon),
        )
        small = ClientProcess("read", daemon.run_dir, 160, 120, 5, wrapper=in_namespace(daemon))
        try:
            assert small.next()["event"] == "ready"
            assert all(small.next()["intact"] for _ in range(5))
            assert small.wait() == 0
        finally:
            small.close()
        wait_until(
            lambda: not ns_segments(daemon),
            10,
            "the rings in the daemon's /dev/shm to be unlinked",
            lambda: ns_segments(daemon),
        )
    assert daemon.terminate() == 0, daemon.log()
    assert_nothing_left(daemon)
    log = daemon.log()
    assert "Traceback" not in log and "status -7" not in log  # -7: SIGBUS
