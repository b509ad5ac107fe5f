"""Video track generators with real processes: writers (tests/support/
generators.py), readers in other processes, the recorder, hostile writers.

Every test has a daemon of its own (own run dir and prefix); its teardown
checks that nothing is left in /dev/shm and no child lives on. A writer
fills each frame with one value (its number mod 250), so a torn frame shows
as two values at any derived size or pixel format.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from mediastream import (
    MediaDevices,
    NotReadableError,
    OverconstrainedError,
)
from support import ClientProcess, Daemon, child_env, wait_until
from support.hostile import reachable_daemon, serving
from support.users import needs_root

SILENCE_S = 0.6
CONFIG = f"[generators]\nsilence_s = {SILENCE_S}\n"
W, H = 320, 240


@pytest.fixture
def gdaemon(tmp_path: Path) -> Iterator[Daemon]:
    with serving(tmp_path, CONFIG) as daemon:
        yield daemon


@contextmanager
def processes() -> Iterator[list[ClientProcess]]:
    started: list[ClientProcess] = []
    try:
        yield started
    finally:
        for process in started:
            process.close()


def start(started: list[ClientProcess], daemon: Daemon, mode: str, *args: object) -> ClientProcess:
    process = ClientProcess(mode, daemon.run_dir, *args, script="generators.py")
    started.append(process)
    return process


def say(process: ClientProcess, line: str) -> None:
    assert process.process.stdin is not None
    process.process.stdin.write(line + "\n")
    process.process.stdin.flush()


def until(process: ClientProcess, **wanted: object) -> list[dict[str, object]]:
    """Lines up to the first that has ``wanted``'s fields; returns them all."""
    seen: list[dict[str, object]] = []
    while True:
        line = process.next()
        seen.append(line)
        if all(line.get(k) == v for k, v in wanted.items()):
            return seen


def frames_of(lines: list[dict[str, object]]) -> list[dict[str, object]]:
    return [line for line in lines if "valid" in line]


def source_rows(daemon: Daemon) -> list[dict[str, Any]]:
    with MediaDevices(daemon.run_dir, name="stats") as md:
        rows: list[dict[str, Any]] = md.broker_stats()["sources"]
        return rows


def relay_row(daemon: Daemon) -> dict[str, Any]:
    rows = [r for r in source_rows(daemon) if "Test generator" in r["label"] and r["width"] == W]
    assert len(rows) == 1, rows
    return rows[0]


def test_three_processes_read_a_generator_at_three_derived_formats(gdaemon: Daemon) -> None:
    """1. A writer publishes 320x240 bgr24 at 30 fps. 2. Three reader
    processes take it as 160x120 gray8, 256x144 rgb24 (crop) and 100x100
    bgr24 letterboxed. 3. Each gets frames of its shape, every one of one
    value (never torn), and the same captureSeq means the same frame in
    all three. 4. The writer closes: every reader's track ends."""
    formats = [
        (160, 120, "gray8", "-", [120, 160]),
        (256, 144, "rgb24", "-", [144, 256, 3]),
        (100, 100, "bgr24", "letterbox", [100, 100, 3]),
    ]
    with processes() as started:
        writer = start(started, gdaemon, "write", W, H, 30, "bgr24", "publish")
        device_id = writer.next()["deviceId"]
        readers = [start(started, gdaemon, "read", device_id, *f[:4]) for f in formats]
        for reader in readers:
            assert reader.next()["event"] == "ready"
        got = [frames_of([reader.next() for _ in range(12)]) for reader in readers]
        say(writer, "close")
        ends = [until(reader, event="ended") for reader in readers]
        by_capture: dict[object, set[int]] = {}
        for (*_, shape), frames, end in zip(formats, got, ends, strict=True):
            frames += frames_of(end)
            assert frames and all(f["valid"] for f in frames), frames
            assert all(f["shape"] == shape for f in frames), (shape, frames[:2])
            assert all(len(f["values"]) == 1 for f in frames), frames  # type: ignore[arg-type]
            for f in frames:
                by_capture.setdefault(f["captureSeq"], set()).add(f["values"][0])  # type: ignore[index]
        assert all(len(values) == 1 for values in by_capture.values()), by_capture
        assert end[-1]["state"] == "ended"


def test_the_recorder_records_a_published_generator(gdaemon: Daemon, tmp_path: Path) -> None:
    """`mediabroker record DEVICE` on a generated device at a derived size
    writes a playable file of that size, as for a camera."""
    output = tmp_path / "generated.avi"
    with processes() as started:
        writer = start(started, gdaemon, "write", W, H, 30, "bgr24", "publish")
        device_id = str(writer.next()["deviceId"])
        command = [sys.executable, "-m", "mediabroker", "record", "--run-dir", str(gdaemon.run_dir)]
        size = ["--width", "160", "--height", "120"]
        result = subprocess.run(
            [*command, device_id, "-o", str(output), "--duration", "1", *size],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        say(writer, "close")
        until(writer, done="close")
    capture = cv2.VideoCapture(str(output))
    try:
        frames = 0
        while True:
            ok, image = capture.read()
            if not ok:
                break
            assert image.shape == (120, 160, 3)
            frames += 1
    finally:
        capture.release()
    assert frames >= 20, (frames, result.stdout, result.stderr)


def test_a_writer_killed_mid_frame_tears_nothing_and_its_tracks_end(gdaemon: Daemon) -> None:
    """1. A hostile writer writes frames 1..10, then begins frame 11, fills
    half of it with 200 and SIGKILLs itself. 2. The reader's frames are
    all whole (one value, 1..10), 200 never shows, and its track ends."""
    with processes() as started:
        writer = start(started, gdaemon, "hostile", "kill-mid-frame", W, H, 30)
        device_id = writer.next()["deviceId"]
        reader = start(started, gdaemon, "read", device_id, W, H, "bgr24", "-")
        assert reader.next()["event"] == "ready"
        say(writer, "go")
        until(writer, event="wrote")
        say(writer, "kill")
        lines = until(reader, event="ended")
        frames = frames_of(lines)
        assert frames, lines
        for frame in frames:
            assert frame["valid"] and len(frame["values"]) == 1, frame  # type: ignore[arg-type]
            assert 1 <= frame["values"][0] <= 10, frame  # type: ignore[index]
        assert writer.wait() == -9


@pytest.mark.parametrize("attack", ["truncate", "regrow"])
def test_a_writer_that_breaks_its_staging_file_hurts_nobody(gdaemon: Daemon, attack: str) -> None:
    """1. A hostile writer writes 10 frames, then truncates its staging
    file to 4 KiB (or empties and regrows it with a nonsense header). 2.
    The relay, the daemon and the reader live on (no SIGBUS): frames stop,
    the silence mutes the reader's track, the relay's pid is unchanged. 3.
    The writer exits: the reader's track ends."""
    with processes() as started:
        writer = start(started, gdaemon, "hostile", attack, W, H, 30)
        device_id = writer.next()["deviceId"]
        reader = start(started, gdaemon, "read", device_id, W, H, "bgr24", "-")
        assert reader.next()["event"] == "ready"
        relay_pid = relay_row(gdaemon)["pid"]
        say(writer, "go")
        until(writer, event="wrote")
        say(writer, "attack")
        until(writer, event="attacked")
        lines = until(reader, event="mute")  # silence after the attack: frames stopped
        assert all(f["valid"] and len(f["values"]) == 1 for f in frames_of(lines))  # type: ignore[arg-type]
        row = relay_row(gdaemon)
        assert (row["pid"], row["state"]) == (relay_pid, "live"), row
        assert gdaemon.process.poll() is None and reader.process.poll() is None
        say(writer, "exit")
        until(reader, event="ended")
        assert "SIGBUS" not in gdaemon.log() and "exited with status" not in gdaemon.log()


@pytest.mark.parametrize("lie", ["size", "header"])
def test_a_writer_that_lies_about_its_format_is_refused(gdaemon: Daemon, lie: str) -> None:
    """A staging ring twice as wide as declared, or of the declared size
    with a header that says half the width: createGenerator is refused
    (NotReadableError), and no source is left."""
    with processes() as started:
        writer = start(started, gdaemon, "hostile", f"liar-{lie}", W, H, 30)
        line = writer.next()
        assert line["event"] == "refused" and line["error"] == "NotReadableError", line
        assert "staging ring" in str(line["message"])
        assert writer.wait() == 0
    assert not [r for r in source_rows(gdaemon) if "Test generator" in r["label"]]


def test_a_flooding_writer_wakes_readers_at_most_twice_its_rate(gdaemon: Daemon) -> None:
    """A writer declares 10 fps and writes flat out: a reader is woken for
    at most 2 x 10 frames a second (plus one of slack), and still at least
    the declared rate."""
    with processes() as started:
        writer = start(started, gdaemon, "write", W, H, "10/0", "bgr24", "publish")
        device_id = writer.next()["deviceId"]
        counter = start(started, gdaemon, "count", device_id, 2.0)
        assert counter.next()["event"] == "ready"
        result = counter.next()
        frames = int(result["frames"])  # type: ignore[call-overload]
        assert 10 * 2.0 <= frames <= 2 * 10 * 2.0 + 1, result
        say(writer, "close")


def test_mute_unmute_close_and_exit_reach_every_track(gdaemon: Daemon) -> None:
    """1. gen.muted = True: the writer's own track and another process's
    track see ``mute``; False: ``unmute``. 2. close(): both tracks end, the
    device disappears (devicechange). 3. A second writer exits without
    closing: its reader's track ends and its device disappears too."""
    with processes() as started, MediaDevices(gdaemon.run_dir, name="test") as md:
        changes: list[list[str]] = []
        md.addEventListener(
            "devicechange", lambda ev: changes.append([d.label for d in ev.devices])
        )
        writer = start(started, gdaemon, "write", W, H, 30, "bgr24", "publish")
        device_id = writer.next()["deviceId"]
        track = md.getUserMedia({"video": {"deviceId": {"exact": device_id}}}).getVideoTracks()[0]
        events: list[str] = []
        for kind in ("mute", "unmute", "ended"):
            track.addEventListener(kind, lambda ev, kind=kind: events.append(kind))
        track.read(timeout=5.0)
        say(writer, "mute")
        until(writer, event="track-mute")
        wait_until(lambda: events == ["mute"], 5, "the reader's mute", lambda: events)
        assert track.muted
        say(writer, "unmute")
        until(writer, event="track-unmute")
        wait_until(lambda: events == ["mute", "unmute"], 5, "the reader's unmute", lambda: events)
        say(writer, "close")
        until(writer, event="track-ended")
        wait_until(lambda: "ended" in events, 5, "the reader's track to end", lambda: events)
        wait_until(
            lambda: bool(changes) and not any("Test generator" in x for x in changes[-1]),
            5,
            "the device to disappear",
            lambda: changes,
        )
        second = start(started, gdaemon, "write", W, H, 30, "bgr24", "publish")
        device_id = second.next()["deviceId"]
        labels = [d.label for d in md.enumerateDevices()]
        assert any(re.fullmatch(r"Test generator \(from writer\.py, root\)", x) for x in labels)
        other = md.getUserMedia({"video": {"deviceId": {"exact": device_id}}}).getVideoTracks()[0]
        ended = threading.Event()
        other.addEventListener("ended", lambda ev: ended.set())
        say(second, "exit")
        assert ended.wait(5), other.readyState
        wait_until(
            lambda: device_id not in [d.deviceId for d in md.enumerateDevices()],
            5,
            "the dead writer's device to disappear",
        )


def test_the_generator_learns_when_nobody_watches(gdaemon: Daemon) -> None:
    """1. The writer stops its own track: ``unwatched``. 2. Another process
    takes a derived size of it: ``watched``. 3. It stops that track (the
    derived source lingers in its idle grace; nobody reads it):
    ``unwatched``."""
    with processes() as started, MediaDevices(gdaemon.run_dir, name="test") as md:
        writer = start(started, gdaemon, "write", W, H, 30, "bgr24", "publish")
        device_id = writer.next()["deviceId"]
        say(writer, "stop-track")
        assert until(writer, event="unwatched")[-1]["watched"] is False
        video = {"deviceId": {"exact": device_id}, "width": 160, "height": 120}
        track = md.getUserMedia({"video": video}).getVideoTracks()[0]
        assert until(writer, event="watched")[-1]["watched"] is True
        track.stop()
        until(writer, event="unwatched")
        say(writer, "close")


def test_a_silent_writer_is_muted_not_killed(gdaemon: Daemon) -> None:
    """A writer that stops writing is muted after [generators] silence_s;
    its next frame unmutes it; the relay was never restarted."""
    with processes() as started:
        writer = start(started, gdaemon, "write", W, H, 30, "bgr24", "publish")
        writer.next()
        relay_pid = relay_row(gdaemon)["pid"]
        say(writer, "pause")
        until(writer, event="track-mute")
        say(writer, "resume")
        until(writer, event="track-unmute")
        assert relay_row(gdaemon)["pid"] == relay_pid
        say(writer, "close")


def test_asking_more_than_a_generator_makes_is_overconstrained(gdaemon: Daemon) -> None:
    """A generator runs in one mode: a larger size, a higher rate are
    OverconstrainedError naming the property."""
    with MediaDevices(gdaemon.run_dir, name="test") as md:
        init = {"width": W, "height": H, "frameRate": 15, "label": "Test generator"}
        with md.createVideoTrackGenerator(init, publish=True) as gen:
            device = {"exact": gen.deviceId}
            for name, value in (("width", 640), ("frameRate", 30)):
                with pytest.raises(OverconstrainedError) as caught:
                    md.getUserMedia({"video": {"deviceId": device, name: {"min": value}}})
                assert caught.value.constraint == name


def test_generators_per_session_and_bad_inits(tmp_path: Path) -> None:
    """[generators] per_session = 1: a second generator is NotReadableError
    naming the key; a bad init is a TypeError before anything is made."""
    with serving(tmp_path, "[generators]\nper_session = 1\n") as daemon:
        with MediaDevices(daemon.run_dir, name="test") as md:
            init = {"width": 64, "height": 48, "frameRate": 10, "label": "one"}
            with md.createVideoTrackGenerator(init):
                with pytest.raises(NotReadableError, match=r"generators\.per_session"):
                    md.createVideoTrackGenerator(init)
            for bad in ({**init, "width": 0}, {**init, "pixelFormat": "rgbf32"}, {**init, "x": 1}):
                with pytest.raises(TypeError):
                    md.createVideoTrackGenerator(bad)


@needs_root
def test_publishing_needs_the_publish_rule() -> None:
    """nobody, on a daemon every user may use, may make a generator and read
    its own track, but publishing it is NotAllowedError naming
    access.publish_users."""
    config = "[access]\nsocket_mode = 0o666\ngroup = 65534\n" + CONFIG
    with reachable_daemon("gen", config) as daemon, processes() as started:
        nobody = start(started, daemon, "nobody")
        refused = nobody.next()
        assert refused["event"] == "refused" and refused["error"] == "NotAllowedError", refused
        assert "access.publish_users" in str(refused["message"])
        assert nobody.next() == {"event": "own", "values": [7]}
        again = nobody.next()
        assert again["error"] == "NotAllowedError", again
        assert nobody.wait() == 0, nobody.stderr()


def test_writes_are_checked_and_close_is_idempotent(gdaemon: Daemon) -> None:
    with MediaDevices(gdaemon.run_dir, name="test") as md:
        init = {"width": 64, "height": 48, "frameRate": 10, "pixelFormat": "gray8", "label": "g"}
        gen = md.createVideoTrackGenerator(init)
        assert gen.track.getSettings()["pixelFormat"] == "gray8"
        with pytest.raises(TypeError):
            gen.write(np.zeros((48, 64, 3), np.uint8))
        with gen.frame() as view:
            view[...] = 9
        frame = gen.track.read(timeout=5.0)
        assert frame.data.shape == (48, 64) and int(frame.data.max()) == 9
        assert frame.captureSeq == frame.seq
        gen.close()
        gen.close()
        wait_until(lambda: gen.track.readyState == "ended", 5, "gen.track to end")


def test_generators_count_against_the_users_sources(tmp_path: Path) -> None:
    """[limits] sources_per_user = 2: a generator is one source of its
    user's, read or not; with a camera size that is two, and a second
    generator is NotReadableError naming the key."""
    with serving(tmp_path, "[limits]\nsources_per_user = 2\n") as daemon:
        with MediaDevices(daemon.run_dir, name="test") as md:
            init = {"width": 64, "height": 48, "frameRate": 10, "label": "one"}
            with md.createVideoTrackGenerator(init) as gen:
                gen.track.stop()  # unread: still its owner's source
                camera = md.getUserMedia({"video": {"width": 320, "height": 240}})
                with pytest.raises(NotReadableError, match=r"limits\.sources_per_user"):
                    md.createVideoTrackGenerator(init)
                camera.getVideoTracks()[0].stop()


def test_writer_timestamps_are_clamped_and_held_frames_work(gdaemon: Daemon) -> None:
    """1. A timestamp within the last second is kept; one 10 s old or in the
    future becomes the relay's commit time. 2. gen.track can hold a frame
    while the writer is silent (the relay takes hold tables while it waits)."""
    with MediaDevices(gdaemon.run_dir, name="test") as md:
        init = {"width": 64, "height": 48, "frameRate": 30, "label": "clock"}
        with md.createVideoTrackGenerator(init) as gen:
            image = np.full(gen.format.shape, 5, np.uint8)
            recent = time.monotonic() - 0.05
            gen.write(image, timestamp=recent)
            assert gen.track.read(timeout=5.0).timestamp == pytest.approx(recent, abs=1e-6)
            for lie in (time.monotonic() - 10, time.monotonic() + 10):
                gen.write(image, timestamp=lie)
                before = time.monotonic()
                frame = gen.track.read(timeout=5.0)
                assert before - 1.0 < frame.timestamp <= time.monotonic(), (lie, frame.timestamp)
            gen.write(image)  # then silence: the relay waits on its futex
            with gen.track.read(timeout=5.0, hold=True) as held:
                assert held.valid and int(held.data.max()) == 5
