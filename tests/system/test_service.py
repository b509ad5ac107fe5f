"""The daemon as a service: one per run dir, stale files cleared, modes, signals,
exit statuses, journald-ready logs and the shared-memory budget."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_nothing_left
from mediabroker.daemon.rundir import PID_FILE
from mediastream import MediaDevices, NotReadableError
from mediastream.ring import SHM_DIR
from support import Daemon, child_env, segments, wait_until


def serve(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mediabroker", "serve", "--fake-devices", *args],
        env=child_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def names(run_dir: Path) -> set[str]:
    return {p.name for p in run_dir.iterdir()}


def test_a_second_daemon_on_the_same_run_dir_is_refused_naming_the_pid(
    daemon: Daemon, tmp_path: Path
) -> None:
    """Exit status 1, one log line with the holder's pid, no traceback; the first
    daemon keeps its sockets and its clients."""
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    with MediaDevices(daemon.run_dir) as devices:
        track = devices.getUserMedia({"video": True}).getVideoTracks()[0]
        second = serve("--config", str(empty), "--run-dir", str(daemon.run_dir))
        assert second.returncode == 1, second.stderr
        assert f"another mediabroker (pid {daemon.pid}) is serving {daemon.run_dir}" in (
            second.stderr
        )
        assert "Traceback" not in second.stderr
        assert track.read(timeout=5) and len(devices.enumerateDevices()) == 2
    assert (daemon.run_dir / PID_FILE).read_text().strip() == str(daemon.pid)


def test_the_run_dir_and_its_sockets_get_their_modes(daemon: Daemon) -> None:
    """0750 dir, 0660 control socket, 0600 for the capture status socket,
    0640 segments: nothing is open to other users. A running source adds no
    socket: readers wait on its ring's doorbell."""
    with MediaDevices(daemon.run_dir) as devices:
        devices.getUserMedia({"video": True}).getVideoTracks()[0].read(timeout=5)
        modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in daemon.run_dir.iterdir()}
        assert stat.S_IMODE(daemon.run_dir.stat().st_mode) == 0o750
        assert modes == {"control": 0o660, "capture-status": 0o600, PID_FILE: 0o644}
        [segment] = segments(daemon.prefix)
        assert stat.S_IMODE((SHM_DIR / segment).stat().st_mode) == 0o640


def test_a_killed_daemons_sockets_and_pid_file_are_cleared_by_the_next(tmp_path: Path) -> None:
    """1. A daemon serving a camera is killed (SIGKILL): its sockets (one a
       capture process's) and its pid file stay in the run dir.
    2. A new daemon on that run dir starts (the lock died with the first),
       removes them, writes its own pid and serves; on SIGTERM it exits 0 and
       leaves nothing."""
    first = Daemon(tmp_path / "run")
    try:
        first.wait_ready()
        devices = MediaDevices(first.run_dir)
        devices.getUserMedia({"video": True}).getVideoTracks()[0].read(timeout=5)
        first.kill()
        devices.close()
        stale = names(first.run_dir)
        assert {"control", PID_FILE} <= stale, stale
        wait_until(lambda: not first.living_children(), 10, "orphans to exit")
    finally:
        first.close()
    second = Daemon(tmp_path / "run", prefix=first.prefix)
    try:
        second.wait_ready()
        assert names(second.run_dir) == {"control", "capture-status", PID_FILE}
        assert (second.run_dir / PID_FILE).read_text().strip() == str(second.pid)
        assert "stale socket(s)" in second.log()
        with MediaDevices(second.run_dir) as devices:
            assert devices.getUserMedia({"video": True}).getVideoTracks()[0].read(timeout=5)
        assert second.terminate() == 0
        assert_nothing_left(second)
    finally:
        second.close()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_end_tracks_and_exit_0_without_tracebacks(
    tmp_path: Path, signum: signal.Signals
) -> None:
    daemon = Daemon(tmp_path / "run")
    try:
        daemon.wait_ready()
        with MediaDevices(daemon.run_dir) as devices:
            stream = devices.getUserMedia({"video": True, "audio": True})
            ended: list[str] = []
            for track in stream.getTracks():
                track.addEventListener("ended", lambda ev: ended.append(ev.type))
            daemon.note_children()
            daemon.process.send_signal(signum)
            assert daemon.process.wait(15) == 0
            wait_until(lambda: len(ended) == 2, 5, "both tracks to end", lambda: ended)
            with pytest.raises(NotReadableError):
                stream.getVideoTracks()[0].read(timeout=1)
        assert_nothing_left(daemon)
        log = daemon.log()
        assert "Traceback" not in log and "stopped" in log
    finally:
        daemon.close()


def test_logs_carry_syslog_priorities_for_journald(tmp_path: Path) -> None:
    """With stderr connected to the journal ($JOURNAL_STREAM names it), each line
    starts with <N>, which journald turns into the entry's priority."""
    log_path = tmp_path / "stderr"
    config = tmp_path / "bad.toml"
    config.write_text("[rings]\nslots = 0\n")
    with open(log_path, "w") as stderr:
        st = os.fstat(stderr.fileno())
        status = subprocess.run(
            [sys.executable, "-m", "mediabroker", "serve", "--config", str(config)],
            env=child_env(JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}"),
            stderr=stderr,
            timeout=60,
        ).returncode
    assert status == 2
    lines = log_path.read_text().splitlines()
    assert lines[-1].startswith(f"<3>ERROR mediabroker: {config}: rings.slots: "), lines
    assert all(line[:1] == "<" for line in lines), lines


def test_the_shm_budget_refuses_a_ring_saying_needed_and_left(tmp_path: Path) -> None:
    """rings.shm_budget_mib = 1: a 640x480 camera ring (7 MiB) is refused with
    NotReadableError saying what it needs and what the budget is; the
    microphone's ring (0.4 MiB) fits; the daemon serves on. (The user's own
    share is set above the budget, so the budget decides: by default the
    share is half the budget, see test_quotas.)"""
    config = "[rings]\nshm_budget_mib = 1\n[limits]\nshm_per_user_mib = 100\n"
    daemon = Daemon(tmp_path / "run", config=config)
    try:
        daemon.wait_ready()
        with MediaDevices(daemon.run_dir) as devices:
            with pytest.raises(NotReadableError) as refused:
                devices.getUserMedia({"video": {"width": 640, "height": 480}})
            message = str(refused.value)
            assert "needs 7.0 MiB" in message and "budget" in message
            assert "is 1.0 MiB, of which 0.0 MiB is in use" in message
            assert "rings.shm_budget_mib" in message and str(daemon.config_path) in message
            assert not segments(daemon.prefix)
            audio = devices.getUserMedia({"audio": True}).getAudioTracks()[0]
            assert audio.read(timeout=5)
            with pytest.raises(NotReadableError, match=r"0\.4 MiB is in use"):
                devices.getUserMedia({"video": {"width": 320, "height": 240}})
        assert daemon.terminate() == 0
        assert_nothing_left(daemon)
    finally:
        daemon.close()
