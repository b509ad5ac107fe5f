"""Held frames and capture ids against a real daemon: ``read(hold=True)``
keeps a zero-copy frame intact while the camera laps its ring, within the
track's and the ring's limits, across a capture restart, and never past its
holder's death; every frame names the camera frame it was made from."""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from mediabroker.capture.fake import pattern_seq, verify_pattern
from mediastream import HoldLimitError, MediaDevices, NotReadableError, VideoFrame, VideoTrack
from mediastream.holds import HOLD_TABLE_BYTES, HoldTable
from mediastream.ring import SHM_DIR, Ring, VideoReader
from support import ClientProcess, Daemon, wait_until

NATIVE = {"width": 640, "height": 480}  # a mode of the fake camera: frames carry its stamp
LAP = 8  # the ring's slots (the default)


def read_past(track: VideoTrack, count: int) -> list[VideoFrame]:
    """``count`` more frames of ``track``, copied (they outlive their slots)."""
    return [track.read(timeout=5).copy() for _ in range(count)]


def source_pid(devices: MediaDevices) -> int:
    (source,) = [s for s in devices.broker_stats()["sources"] if s["kind"] == "video"]
    return int(source["pid"])


@pytest.fixture
def devices(daemon: Daemon) -> Iterator[MediaDevices]:
    with MediaDevices(daemon.run_dir, name="holder") as md:
        yield md


def camera(devices: MediaDevices, size: dict[str, int] = NATIVE) -> VideoTrack:
    return devices.getUserMedia({"video": size}).getVideoTracks()[0]


def test_a_held_frame_stays_intact_while_the_camera_laps_its_ring(
    devices: MediaDevices,
) -> None:
    """1. A held frame keeps its pixels and stays valid for three laps of the
    ring. 2. A reader that does not hold misses no frame meanwhile.
    3. Released, its slot is reused within a lap."""
    track = camera(devices)
    assert track.getSettings()["resizeMode"] == "none"
    watcher = track.clone()
    watcher.read(timeout=5)
    held = track.read(timeout=5, hold=True)
    assert held.held and pattern_seq(held.data) == held.seq
    before = watcher.stats["discardedFrames"]
    seen = read_past(watcher, 3 * LAP)
    assert [f.seq for f in seen] == list(range(seen[0].seq, seen[0].seq + 3 * LAP))
    assert watcher.stats["discardedFrames"] == before
    assert held.valid and verify_pattern(held.data) and pattern_seq(held.data) == held.seq
    held.release()
    read_past(watcher, LAP)
    assert not held.valid


def test_with_releases_and_a_track_holds_at_most_its_limit(devices: MediaDevices) -> None:
    """Two held frames, then `HoldLimitError` naming the setting; the end of
    a ``with`` block gives one back."""
    track = camera(devices)
    first = track.read(timeout=5, hold=True)
    with track.read(timeout=5, hold=True) as second:
        assert second.held
        with pytest.raises(HoldLimitError, match=r"\[rings\] held_frames is 2"):
            track.read(timeout=5, hold=True)
    assert not second.held and first.held
    third = track.read(timeout=5, hold=True)
    assert third.held
    track.stop()
    assert not first.held and not third.held  # stopping releases


def test_a_ring_spares_all_but_three_slots(devices: MediaDevices) -> None:
    """Eight slots spare five held frames among all readers: two, two, one,
    then `HoldLimitError` naming the ring's slots; one released is one free."""
    tracks = [camera(devices)]
    tracks += [tracks[0].clone() for _ in range(3)]
    frames = []
    for track, count in zip(tracks[:3], (2, 2, 1), strict=True):
        frames += [track.read(timeout=5, hold=True) for _ in range(count)]
    assert len(frames) == 5
    with pytest.raises(HoldLimitError, match=r"raise \[rings\] slots"):
        tracks[3].read(timeout=5, hold=True)
    with pytest.raises(HoldLimitError, match="held_frames is 1"):
        tracks[2].read(timeout=5, hold=True)  # granted one: the ring had one left
    tracks[0].stop()
    assert tracks[3].read(timeout=5, hold=True).held


def test_the_limit_is_configurable(tmp_path: Path) -> None:
    process = Daemon(tmp_path / "run", config="[rings]\nheld_frames = 3\n")
    try:
        process.wait_ready()
        with MediaDevices(process.run_dir, name="holder") as md:
            track = camera(md)
            frames = [track.read(timeout=5, hold=True) for _ in range(3)]
            assert all(f.held for f in frames)
            with pytest.raises(HoldLimitError, match="held_frames is 3"):
                track.read(timeout=5, hold=True)
            track.stop()
        assert process.terminate() == 0
    finally:
        process.close()


def test_a_held_frame_survives_a_capture_restart(devices: MediaDevices) -> None:
    """The capture process is killed while a frame is held: the new process
    gets the hold table before its first frame, so the frame stays intact."""
    track = camera(devices)
    held = track.read(timeout=5, hold=True)
    old_pid = source_pid(devices)
    os.kill(old_pid, signal.SIGKILL)
    wait_until(lambda: source_pid(devices) != old_pid, 10, "a new capture process")
    watcher = track.clone()
    read_past(watcher, 3 * LAP)
    assert held.valid and verify_pattern(held.data) and pattern_seq(held.data) == held.seq
    held.release()


def test_the_frames_of_a_holder_that_dies_are_released(daemon: Daemon) -> None:
    """A client holding two frames is killed: the writer reuses their slots
    (before, they outlived three laps)."""
    holder = ClientProcess("hold-frames", daemon.run_dir, NATIVE["width"], NATIVE["height"])
    try:
        report = holder.next()
        seqs = [int(s) for s in report["seqs"]]  # type: ignore[union-attr]
        with Ring.open(str(report["ring"])) as ring:
            _watch_slots_freed(VideoReader(ring), seqs, holder)
    finally:
        holder.close()


def _watch_slots_freed(reader: VideoReader, seqs: list[int], holder: ClientProcess) -> None:
    first_seen = reader.newest_seq
    wait_until(lambda: reader.newest_seq > first_seen + 3 * LAP, 10, "three laps")
    assert all(reader.frame(seq) is not None for seq in seqs)
    holder.kill()
    wait_until(
        lambda: all(reader.frame(seq) is None for seq in seqs),
        10,
        f"the slots of frames {seqs} to be reused",
    )


def test_hold_tables_are_checked_before_the_writer_sees_them(
    devices: MediaDevices, tmp_path: Path
) -> None:
    """The daemon refuses a table that is not the asker's own regular file
    of the table's size, or not named for its ring: a symlink, a FIFO (which
    would block an open), another user's file, a wrong size."""
    track = camera(devices)
    ring = track._info["ring"]
    made: list[Path] = []

    def planted(kind: str) -> str:
        path = SHM_DIR / f"{ring}.hold.test-{kind}"
        made.append(path)
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "symlink":
            path.symlink_to(tmp_path / "elsewhere")
        else:
            path.write_bytes(b"\0" * (HOLD_TABLE_BYTES if kind != "size" else 7))
            if kind == "nobody":
                os.chown(path, 65534, 65534)
        return path.name

    try:
        for kind in ("fifo", "symlink", "nobody", "size"):
            with pytest.raises(NotReadableError, match="hold table"):
                devices._connection_request(
                    "holdFrames", {"trackId": track.id, "table": planted(kind)}
                )
        with pytest.raises(NotReadableError, match="is not a hold table name"):
            devices._connection_request("holdFrames", {"trackId": track.id, "table": "../etc"})
        assert stat.S_ISFIFO(made[0].lstat().st_mode)  # left as it was
        assert track.read(timeout=5).seq  # the camera runs on
    finally:
        for path in made:
            path.unlink(missing_ok=True)


def test_a_reader_truncating_its_table_hurts_nobody(devices: MediaDevices) -> None:
    """A holder truncates its registered table under the writer: the writer
    reads it short (no SIGBUS), the camera runs on for everyone."""
    track = camera(devices)
    track.read(timeout=5)
    pid = source_pid(devices)
    table = HoldTable.create(track._info["ring"], SHM_DIR)
    try:
        reply = devices._connection_request(
            "holdFrames", {"trackId": track.id, "table": table.name}
        )
        assert reply["limit"] == 2
        os.truncate(table.path, 0)
        watcher = track.clone()
        read_past(watcher, 3 * LAP)
        assert source_pid(devices) == pid
    finally:
        os.truncate(table.path, HOLD_TABLE_BYTES)  # our own mapping must not fault either
        table.close()


def test_every_track_of_a_camera_names_the_same_capture(devices: MediaDevices) -> None:
    """The camera's own track and a derived one (another size) carry the
    camera frame's seq and time: a derived frame names a camera frame that
    is in the camera's ring with that very time and stamp."""
    native = camera(devices)
    small = camera(devices, {"width": 320, "height": 240})
    assert small.getSettings()["resizeMode"] != "none"
    for _ in range(5):
        frame = native.read(timeout=5)
        assert frame.captureSeq == frame.seq == pattern_seq(frame.data)
        assert frame.captureTimestamp == frame.timestamp
    with Ring.open(native._info["ring"]) as ring:
        reader = VideoReader(ring)
        derived = [small.read(timeout=5) for _ in range(5)]
        for frame in derived:
            source = reader.frame(frame.captureSeq)
            assert source is not None, f"camera frame {frame.captureSeq} is gone"
            assert pattern_seq(source.data) == frame.captureSeq
            assert frame.captureTimestamp == source.timestamp == frame.timestamp
        del reader, source
    assert len({f.captureSeq for f in derived}) == 5


def test_capture_seq_goes_on_across_a_re_open(devices: MediaDevices) -> None:
    """A camera re-opened in a larger mode numbers its frames on from where
    the old mode stopped: a track that was there sees captureSeq rise, never
    start again, so results keyed by it stay unique."""
    small = camera(devices, {"width": 320, "height": 240})
    before = max(small.read(timeout=5).captureSeq for _ in range(45))  # 1.5 s of frames
    camera(devices, {"width": 1280, "height": 720})  # re-opens the camera
    later = [small.read(timeout=5).captureSeq for _ in range(10)]
    assert min(later) > before, (before, later)
    assert later == sorted(later)
