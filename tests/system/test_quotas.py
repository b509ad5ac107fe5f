"""Per-user quotas of what tracks make the daemon run, and the two leaks of
one user to another next to them: ring names another user could take first,
and what ``stats`` shows of other users.

``[limits]``: sources_per_user (distinct sources, each a capture process),
tracks_per_user, shm_per_user_mib (the rings a user's tracks hold; unset:
half of rings.shm_budget_mib, and a user's first ring always passes). They
apply to every uid, root included, so most checks run as root in this
process; those about another user run tests/support/attackers.py, which
becomes nobody, against a daemon open to every user. Every refusal is a
NotReadableError naming the key and the configuration file.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import pytest

from conftest import assert_nothing_left
from mediastream import MediaDevices, MediaStreamTrack, VideoFrame
from mediastream.errors import NotReadableError
from mediastream.ring import SHM_DIR, VideoFormat, ring_bytes
from support import Daemon, segments, unique_prefix, wait_until
from support.hostile import attacker, reachable_daemon, serving, stop
from support.users import as_nobody, needs_root, shared_dir

pytestmark = needs_root

NOBODY = 65534
# Every user may connect; rings are 0640 with access.group, so nogroup lets
# nobody (gid 65534, no other groups) map the rings of its own tracks.
OPEN_TO_ALL = "[access]\nsocket_mode = 0o666\ngroup = 65534\n"
SLOTS = 8  # rings.slots by default
TAG = re.compile(r"\.([0-9a-f]{12})$")  # what ends a ring's name


@contextmanager
def open_daemon(limits: str) -> Iterator[Daemon]:
    """A daemon every user may connect to, with the ``[limits]`` table ``limits``."""
    with reachable_daemon("quota", OPEN_TO_ALL + limits) as daemon:
        yield daemon


def video(devices: MediaDevices, width: int, height: int) -> MediaStreamTrack:
    stream = devices.getUserMedia({"video": {"width": width, "height": height}})
    return stream.getVideoTracks()[0]


def mib(width: int, height: int) -> float:
    return ring_bytes(VideoFormat(width, height), SLOTS) / 2**20


def sources_held_by(stats: dict[str, Any], uid: int) -> set[str]:
    """Ids of the sources that tracks of ``uid``'s sessions hold (as an
    operator sees it: every holder)."""
    holders = {f"track:{t}" for s in stats["sessions"] if s["uid"] == uid for t in s["tracks"]}
    return {s["id"] for s in stats["sources"] if holders & set(s["holders"])}


def source_of(stats: dict[str, Any], track: MediaStreamTrack) -> dict[str, Any]:
    rows: list[dict[str, Any]] = [
        s for s in stats["sources"] if f"track:{track.id}" in s["holders"]
    ]
    assert len(rows) == 1, (track.id, stats["sources"])
    return rows[0]


def refuses(key: str, daemon: Daemon) -> Any:
    """pytest.raises for a NotReadableError naming ``key`` and the daemon's
    configuration file."""
    return pytest.raises(
        NotReadableError, match=rf"{re.escape(key)}.*{re.escape(str(daemon.config_path))}"
    )


def test_sources_past_the_users_limit_are_refused_even_pipelined() -> None:
    """sources_per_user = 3. 1. nobody asks for 10 distinct sizes, all in
    flight at once on one connection: exactly 3 succeed, 7 get
    NotReadableError naming limits.sources_per_user, the file and the user.
    2. While it holds them the daemon runs 3 sources in all (the refused
    started nothing), all 3 held by nobody's tracks. 3. A root bystander
    opens a 4th distinct size and reads a frame (the limit is per uid);
    nobody still holds 3. 4. The refusals are logged once, for nobody's pid."""
    with open_daemon("[limits]\nsources_per_user = 3\n") as daemon:
        hog = attacker(daemon, "sizes", 10)
        try:
            seen = hog.next(timeout=30)
            assert seen["outcomes"] == {"ok": 3, "NotReadableError": 7}, seen
            message = str(seen["message"])
            assert "limits.sources_per_user = 3" in message, message
            assert str(daemon.config_path) in message and "65534 (nobody)" in message, message
            with MediaDevices(daemon.run_dir, name="bystander") as devices:
                stats = devices.broker_stats()
                assert len(stats["sources"]) == 3, stats["sources"]
                assert len(sources_held_by(stats, NOBODY)) == 3, stats
                track = video(devices, 200, 100)
                assert isinstance(track.read(timeout=5), VideoFrame)
                stats = devices.broker_stats()
                assert len(sources_held_by(stats, NOBODY)) == 3, stats
                assert len(sources_held_by(stats, 0)) == 1, stats
                assert not sources_held_by(stats, 0) & sources_held_by(stats, NOBODY)
                track.stop()
            log = daemon.log()
            assert log.count("refused a source for pid") == 1, log[-3000:]
            assert f"refused a source for pid {hog.process.pid} " in log, log[-3000:]
            hog.release()
            assert hog.wait() == 0, hog.stderr()
        finally:
            hog.close()


def test_a_size_the_user_already_holds_is_no_new_source(tmp_path: Path) -> None:
    """sources_per_user = 2, as root (quotas apply to root too). 1. Two sizes
    pass, a third is refused naming limits.sources_per_user. 2. At the limit,
    a size the user already holds still succeeds, from the same session and
    from another one of the same user, on the source already running; so
    does a clone. 3. The daemon runs 2 sources, and a new size is still
    refused, from either session."""
    with (
        serving(tmp_path, "[limits]\nsources_per_user = 2\n") as daemon,
        MediaDevices(daemon.run_dir, name="first") as first,
        MediaDevices(daemon.run_dir, name="second") as second,
    ):
        large, small = video(first, 320, 240), video(first, 160, 120)
        with refuses("limits.sources_per_user", daemon):
            video(first, 80, 60)
        same = video(first, 160, 120)
        other = video(second, 320, 240)
        clone = small.clone()
        assert isinstance(other.read(timeout=5), VideoFrame)
        stats = first.broker_stats()
        assert len(stats["sources"]) == 2, stats["sources"]
        assert source_of(stats, same)["id"] == source_of(stats, small)["id"]
        assert source_of(stats, other)["id"] == source_of(stats, large)["id"]
        assert source_of(stats, clone)["id"] == source_of(stats, small)["id"]
        with refuses("limits.sources_per_user", daemon):
            video(second, 80, 60)


def test_two_requests_in_flight_for_one_new_size_count_once(tmp_path: Path) -> None:
    """sources_per_user = 2, one size held: two getUserMedia for the same new
    size, in flight at once, both succeed on one new source (each reserved
    it before; they once counted as two and one was refused)."""
    with (
        serving(tmp_path, "[limits]\nsources_per_user = 2\n") as daemon,
        MediaDevices(daemon.run_dir) as devices,
    ):
        video(devices, 320, 240)
        results: list[object] = []

        def ask() -> None:
            try:
                results.append(video(devices, 160, 120))
            except NotReadableError as exc:
                results.append(exc)

        threads = [threading.Thread(target=ask) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert all(isinstance(r, MediaStreamTrack) for r in results), results
        assert len(devices.broker_stats()["sources"]) == 2


def test_sources_left_idle_still_count_for_who_opened_them(tmp_path: Path) -> None:
    """sources_per_user = 2, idle grace 30 s. The camera runs at 320x240 for
    a track; asking for a derived size and stopping it at once leaves its
    capture process running for the grace: it still counts, so the third
    size is refused and at most 2 sources run (once 9 ran at a limit of 2).
    (A camera nobody holds is instead re-opened for the next size, closing
    its idle sources: an idle mode binds no request.)"""
    config = "[limits]\nsources_per_user = 2\n[devices]\nidle_close_s = 30\n"
    with serving(tmp_path, config) as daemon, MediaDevices(daemon.run_dir) as devices:
        held = video(devices, 320, 240)
        video(devices, 160, 120).stop()
        with refuses("limits.sources_per_user", daemon):
            video(devices, 80, 60)
        assert len(devices.broker_stats()["sources"]) == 2
        video(devices, 160, 120).stop()  # a size it already runs: no new source
        held.stop()


def test_moving_a_track_at_the_limit_frees_its_old_source(tmp_path: Path) -> None:
    """sources_per_user = 2, two sizes held: applyConstraints moves one track
    to a third size, since its old source (nobody else's) is given up."""
    with (
        serving(tmp_path, "[limits]\nsources_per_user = 2\n") as daemon,
        MediaDevices(daemon.run_dir) as devices,
    ):
        video(devices, 320, 240)
        moving = video(devices, 160, 120)
        moving.applyConstraints({"width": 80, "height": 60})
        assert (moving.getSettings()["width"], moving.getSettings()["height"]) == (80, 60)


def test_a_ring_the_client_may_not_map_is_an_error_and_nothing_is_held() -> None:
    """A daemon whose rings nobody may map (socket 0666, rings 0640 root):
    nobody's getUserMedia raises NotAllowedError naming the group, not a raw
    PermissionError, and the daemon holds no track of nobody's afterwards."""
    with shared_dir("mbquota-", 0o755) as base:
        with serving(base, "[access]\nsocket_mode = 0o666\n") as daemon:
            asker = attacker(daemon, "sizes", 1)
            try:
                seen = asker.next(timeout=30)
                assert seen["outcomes"] == {"NotAllowedError": 1}, seen
                assert "access.group" in str(seen["message"]), seen
                with MediaDevices(daemon.run_dir) as root:
                    wait_until(
                        lambda: not sources_held_by(root.broker_stats(), NOBODY),
                        10,
                        "nobody's tracks to be released",
                        root.broker_stats,
                    )
                asker.release()
                assert asker.wait() == 0, asker.stderr()
            finally:
                asker.close()


def test_tracks_past_the_users_limit_are_refused(tmp_path: Path) -> None:
    """tracks_per_user = 4, as root. 1. Four tracks over two MediaDevices
    succeed. 2. A fifth getUserMedia and a clone are refused with
    NotReadableError naming limits.tracks_per_user and the file. 3. With 3
    held, an audio+video request (2 tracks) is refused whole: the user still
    holds 3. 4. After one track stops, a new one succeeds."""
    with (
        serving(tmp_path, "[limits]\ntracks_per_user = 4\n") as daemon,
        MediaDevices(daemon.run_dir, name="first") as first,
        MediaDevices(daemon.run_dir, name="second") as second,
    ):
        camera = first.getUserMedia({"video": True}).getVideoTracks()[0]
        microphone = first.getUserMedia({"audio": True}).getAudioTracks()[0]
        both = second.getUserMedia({"video": True, "audio": True}).getTracks()
        assert len(both) == 2
        with refuses("limits.tracks_per_user = 4", daemon):
            second.getUserMedia({"video": True})
        with refuses("limits.tracks_per_user = 4", daemon):
            camera.clone()
        microphone.stop()
        with refuses("limits.tracks_per_user = 4", daemon):
            first.getUserMedia({"video": True, "audio": True})
        held = [t for s in first.broker_stats()["sessions"] for t in s["tracks"]]
        assert len(held) == 3, held
        again = second.getUserMedia({"video": True}).getVideoTracks()[0]
        assert isinstance(again.read(timeout=5), VideoFrame)
        assert daemon.log().count("refused a track for pid") == 1


def test_rings_past_an_explicit_share_are_refused(tmp_path: Path) -> None:
    """shm_per_user_mib = 10, as root. 1. A 640x480 ring (about 7 MiB; stats'
    shmBytes is the size ring_bytes gives) passes. 2. A second size whose
    ring would take the user past 10 MiB (640x360) is refused naming
    limits.shm_per_user_mib and the file; 3. a smaller one (320x240) that
    fits still passes, and 640x360 is still refused."""
    assert mib(640, 480) < 10 < mib(640, 480) + mib(640, 360)
    assert mib(640, 480) + mib(320, 240) < 10
    with (
        serving(tmp_path, "[limits]\nshm_per_user_mib = 10\n") as daemon,
        MediaDevices(daemon.run_dir, name="rings") as devices,
    ):
        first = video(devices, 640, 480)
        row = source_of(devices.broker_stats(), first)
        assert row["shmBytes"] == ring_bytes(VideoFormat(640, 480), SLOTS), row
        with refuses("limits.shm_per_user_mib = 10.0", daemon):
            video(devices, 640, 360)
        assert isinstance(video(devices, 320, 240).read(timeout=5), VideoFrame)
        with refuses("limits.shm_per_user_mib", daemon):
            video(devices, 640, 360)
        assert "refused a ring for pid" in daemon.log()


def test_the_default_share_passes_a_first_ring_and_refuses_a_second(tmp_path: Path) -> None:
    """shm_per_user_mib unset, rings.shm_budget_mib = 12: the share is 6 MiB.
    1. A user's first ring (640x480, about 7 MiB) passes although it is over
    the share. 2. A second, small one (160x120, 0.4 MiB), which the budget
    would take, is refused by the share: NotReadableError naming
    limits.shm_per_user_mib = 6.0 and the file."""
    assert mib(640, 480) > 6 and mib(640, 480) + mib(160, 120) < 12
    with (
        serving(tmp_path, "[rings]\nshm_budget_mib = 12\n") as daemon,
        MediaDevices(daemon.run_dir, name="rings") as devices,
    ):
        assert isinstance(video(devices, 640, 480).read(timeout=5), VideoFrame)
        with refuses("limits.shm_per_user_mib = 6.0", daemon):
            video(devices, 160, 120)


def old_style_names(prefix: str) -> list[str]:
    """Names a ring had before it got a random tag: prefix, source id, mode."""
    modes = ["video-640x480-bgr24-30fps", "audio-48000hz-1ch"]
    return [f"{prefix}{n}-{mode}{end}" for n in range(1, 9) for mode in modes for end in ("", ".")]


def fingerprint(path: Path) -> tuple[int, ...]:
    info = os.lstat(path)
    return (info.st_ino, info.st_mode, info.st_uid, info.st_gid, info.st_size, info.st_mtime_ns)


def wait_gone(prefix: str, names: list[str]) -> None:
    wait_until(
        lambda: not set(names) & set(segments(prefix)),
        10,
        f"the rings {names} to go",
        lambda: segments(prefix),
    )


def test_ring_names_cannot_be_taken_first(tmp_path: Path) -> None:
    """1. nobody creates, before the daemon starts, a file in /dev/shm under
    the daemon's prefix at every name a ring had before names got a random
    tag (source ids 1 to 8, video 640x480 and audio, with and without a
    trailing dot). 2. The daemon starts, getUserMedia for video and audio
    works and frames arrive; the rings' names end in a 12-hex-digit tag.
    3. The files are left as they were (same inode, mode, owner, size,
    mtime) through the start sweep, the session, and shutdown, which removes
    the daemon's own rings. 4. A second run on the same prefix (its sweep
    meets them again) names the same sources with other tags. 5. Once the
    files are removed, nothing of either run is left."""
    prefix = unique_prefix()
    planted = [SHM_DIR / name for name in old_style_names(prefix)]
    as_nobody("touch " + " ".join(str(p) for p in planted))
    daemons: list[Daemon] = []
    try:
        before = {path: fingerprint(path) for path in planted}
        assert all(info[2] == NOBODY for info in before.values())
        rings = []
        for run in ("first", "second"):
            (tmp_path / run).mkdir()
            daemon = Daemon(tmp_path / run / "run", config="", prefix=prefix)
            daemons.append(daemon)
            try:
                daemon.wait_ready()
                with MediaDevices(daemon.run_dir, name="names") as devices:
                    stream = devices.getUserMedia({"video": True, "audio": True})
                    for track in stream.getTracks():
                        assert track.read(timeout=5) is not None
                    names = sorted(s["ring"] for s in devices.broker_stats()["sources"])
                assert len(names) == 2 and all(TAG.search(name) for name in names), names
                assert set(names) <= set(segments(prefix)), segments(prefix)
                rings.append(names)
                assert {path: fingerprint(path) for path in planted} == before
                assert daemon.terminate() == 0, daemon.log()[-3000:]
                wait_gone(prefix, names)
                assert {path: fingerprint(path) for path in planted} == before
            finally:
                stop(daemon)
        ids = [[TAG.sub("", name) for name in names] for names in rings]
        assert ids[0] == ids[1], rings  # the same source ids (1-..., 2-...)
        assert not set(rings[0]) & set(rings[1]), rings  # under other tags
    finally:
        for path in planted:
            path.unlink(missing_ok=True)
    for daemon in daemons:
        assert_nothing_left(daemon)


def test_stats_show_another_user_only_its_own(tmp_path: Path) -> None:
    """A root bystander holds a 640x480 track; nobody asks for the same size
    (one source, two holders) and reads stats. 1. nobody sees one session:
    its own (uid 65534, its pid). 2. Among the source's holders it sees only
    its own track, while holderCount counts both. 3. Nothing of root's
    session shows: not its track id, pid or name. 4. Root sees both
    sessions and both holders. 5. When nobody lets go, its session ends."""
    with (
        open_daemon("") as daemon,
        MediaDevices(daemon.run_dir, name="bystander-root") as devices,
    ):
        mine = video(devices, 640, 480)
        peeker = attacker(daemon, "stats", 640, 480)
        try:
            seen = peeker.next(timeout=15)
            theirs, stats = f"track:{seen['track']}", seen["stats"]
            assert isinstance(stats, dict)
            assert [(s["uid"], s["pid"]) for s in stats["sessions"]] == [
                (NOBODY, peeker.process.pid)
            ], stats["sessions"]
            (row,) = [s for s in stats["sources"] if s["holderCount"] > 0]
            assert row["holders"] == [theirs] and row["holderCount"] == 2, row
            shown = repr(stats)
            assert mine.id not in shown and "bystander-root" not in shown, shown
            assert f"'pid': {os.getpid()}," not in shown, shown
            root_view = devices.broker_stats()
            uids = sorted(s["uid"] for s in root_view["sessions"])
            assert uids == [0, NOBODY], root_view["sessions"]
            (row,) = [s for s in root_view["sources"] if s["holderCount"] > 0]
            assert sorted(row["holders"]) == sorted([theirs, f"track:{mine.id}"]), row
            peeker.release()
            assert peeker.wait() == 0, peeker.stderr()
        finally:
            peeker.close()
        wait_until(
            lambda: len(devices.broker_stats()["sessions"]) == 1,
            10,
            "nobody's session to end",
            lambda: devices.broker_stats()["sessions"],
        )


def test_a_users_sources_past_its_first_run_at_a_lower_priority(tmp_path: Path) -> None:
    """Three sizes opened by one user: the first source's capture process
    runs at nice 0, the next two at nice 19, so that under load another
    user's first stream is scheduled before them (test_load measures it)."""
    with serving(tmp_path, "") as daemon, MediaDevices(daemon.run_dir) as devices:
        for width in (320, 160, 80):
            video(devices, width, width * 3 // 4)
        sources = sorted(
            devices.broker_stats()["sources"], key=lambda s: int(s["id"].split("-")[0])
        )
        nice = [psutil.Process(s["pid"]).nice() for s in sources]
        assert nice == [0, 19, 19], (nice, [s["id"] for s in sources])
