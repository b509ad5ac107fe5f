"""Access control: the allow rules, file modes and groups, and another real user.

The end-to-end tests run a client as ``nobody`` against a real daemon (the
probe drops to nobody itself, as ``setpriv`` would, once its imports are
done; see tests/support/access_probe.py) and check what the kernel and the daemon
let it do.
"""

from __future__ import annotations

import grp
import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import assert_nothing_left
from mediabroker.config import BrokerConfig
from mediabroker.daemon.access import check_peer
from mediabroker.daemon.zmtp import PeerCredentials
from mediabroker.filemodes import run_dir_mode, secure_path
from mediastream import MediaDevices, NotAllowedError
from mediastream.ring import SHM_DIR
from support import REPO, Daemon, child_env, segments
from support.users import needs_root, shared_dir

NOBODY, NOGROUP = 65534, 65534
GONE_PID = 2**22 + 1  # above the default pid_max: never a live process


def config(**fields: object) -> BrokerConfig:
    return BrokerConfig(run_dir=Path("/nonexistent"), **fields)  # type: ignore[arg-type]


# -- the rules -----------------------------------------------------------------


def test_without_rules_anyone_who_reaches_the_socket_may_connect() -> None:
    check_peer(config(), PeerCredentials(NOBODY, NOGROUP, GONE_PID, frozenset({NOGROUP})))


@pytest.mark.parametrize(
    "rules",
    [{"allow_users": (NOBODY,)}, {"allow_groups": (NOGROUP,)}, {"allow_groups": (1, NOGROUP)}],
)
def test_a_user_or_its_group_on_the_list_is_allowed(rules: dict[str, object]) -> None:
    check_peer(config(**rules), PeerCredentials(NOBODY, NOGROUP, GONE_PID, frozenset({NOGROUP})))


def test_root_and_the_daemons_own_user_always_pass() -> None:
    rules = config(allow_users=(12345,))
    check_peer(rules, PeerCredentials(0, 0, GONE_PID, frozenset({0})))
    check_peer(rules, PeerCredentials(os.getuid(), os.getgid(), GONE_PID))


def test_a_refusal_names_the_rule_the_user_and_the_file() -> None:
    rules = config(allow_users=(0,), allow_groups=(0,), config_path=Path("/etc/mb.toml"))
    with pytest.raises(NotAllowedError) as caught:
        check_peer(rules, PeerCredentials(NOBODY, NOGROUP, GONE_PID, frozenset({NOGROUP})))
    message = str(caught.value)
    assert "access.allow_users = [root]" in message
    assert "access.allow_groups = [root]" in message
    assert "65534 (nobody)" in message and "/etc/mb.toml" in message


def test_supplementary_groups_are_the_ones_recorded_at_connect() -> None:
    """The groups of the peer's credentials count, not the user database."""
    rules = config(allow_groups=(4242,))
    check_peer(rules, PeerCredentials(NOBODY, NOGROUP, GONE_PID, frozenset({NOGROUP, 4242})))
    with pytest.raises(NotAllowedError):
        check_peer(rules, PeerCredentials(NOBODY, NOGROUP, GONE_PID, frozenset({NOGROUP})))


# -- modes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("socket_mode", "dir_mode"), [(0o600, 0o700), (0o660, 0o750), (0o666, 0o755)]
)
def test_the_run_dir_lets_in_whoever_may_use_the_sockets(socket_mode: int, dir_mode: int) -> None:
    assert run_dir_mode(socket_mode) == dir_mode


def test_secure_path_sets_mode_whatever_the_umask(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.touch(mode=0o600)
    secure_path(path, 0o660, os.getgid())
    assert stat.S_IMODE(path.stat().st_mode) == 0o660
    assert path.stat().st_gid == os.getgid()


# -- another user, for real --------------------------------------------------------


@pytest.fixture
def open_base() -> Iterator[Path]:
    """A directory every user may traverse (pytest's tmp_path is 0700)."""
    with shared_dir("mbaccess-", 0o755) as base:
        yield base


def probe(run_dir: Path, segment: str, *groups: str) -> dict[str, object]:
    """tests/support/access_probe.py as nobody, primary group nogroup, plus ``groups``."""
    command = [
        sys.executable,
        str(REPO / "tests" / "support" / "access_probe.py"),
        "nobody",
        ",".join(["nogroup", *groups]),
        str(run_dir),
        segment,
    ]
    result = subprocess.run(
        command, env=child_env(), cwd="/", capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    answer: dict[str, object] = json.loads(result.stdout)
    expected = sorted(grp.getgrnam(g).gr_gid for g in groups)
    assert (answer["uid"], answer["gid"], answer["groups"]) == (NOBODY, NOGROUP, expected)
    return answer


def mode_and_gid(path: Path) -> tuple[int, int]:
    st = path.stat()
    return stat.S_IMODE(st.st_mode), st.st_gid


@needs_root
def test_a_user_outside_the_rules_is_refused_and_cannot_map_a_ring(open_base: Path) -> None:
    """1. A daemon whose sockets any local user may open (0666) but whose rule
       allows only root; root holds a camera track.
    2. nobody connects: NotAllowedError naming the rule and the file.
    3. nobody cannot map the camera's ring (0640, group root): NotAllowedError
       naming the group to join.
    4. The daemon logs the refusal and serves on; nothing is left behind."""
    rules = '[access]\ngroup = "root"\nsocket_mode = 0o666\nallow_users = ["root"]\n'
    daemon = Daemon(open_base / "run", config=rules)
    try:
        daemon.wait_ready()
        assert mode_and_gid(daemon.run_dir) == (0o755, 0)
        with MediaDevices(daemon.run_dir) as devices:
            devices.getUserMedia({"video": True}).getVideoTracks()[0].read(timeout=5)
            [segment] = segments(daemon.prefix)
            assert mode_and_gid(SHM_DIR / segment) == (0o640, 0)
            seen = probe(daemon.run_dir, segment)
            assert seen["connect"] == "NotAllowedError", seen
            message = str(seen["message"])
            assert "access.allow_users = [root]" in message
            assert str(daemon.config_path) in message and "65534 (nobody)" in message
            assert seen["ring"] == "NotAllowedError", seen  # the kernel's EACCES, said plainly
            assert "the group root (the daemon's access.group" in str(seen["ring_message"])
            assert "refused access for pid" in daemon.log()
            assert len(devices.enumerateDevices()) == 2
        assert daemon.terminate() == 0
        assert_nothing_left(daemon)
        assert "Traceback" not in daemon.log()
    finally:
        daemon.close()


@needs_root
def test_the_group_gates_sockets_and_rings_and_members_read_frames(open_base: Path) -> None:
    """1. A daemon with access.group = audio and allow_groups = [audio]: its run
       dir is 0750, its sockets 0660 and its rings 0640, all of group audio;
       the capture status socket is the daemon's alone (0600).
    2. nobody with audio as a supplementary group connects and reads intact
       frames (the daemon took the group from the live process).
    3. nobody without it cannot reach the daemon nor map the ring."""
    audio = grp.getgrnam("audio").gr_gid
    rules = '[access]\ngroup = "audio"\nallow_groups = ["audio"]\n'
    daemon = Daemon(open_base / "run", config=rules)
    try:
        daemon.wait_ready()
        with MediaDevices(daemon.run_dir) as devices:
            devices.getUserMedia({"video": True}).getVideoTracks()[0].read(timeout=5)
            [segment] = segments(daemon.prefix)
            run = daemon.run_dir
            assert mode_and_gid(run) == (0o750, audio)
            assert mode_and_gid(run / "control") == (0o660, audio)
            assert mode_and_gid(run / "capture-status")[0] == 0o600
            assert mode_and_gid(SHM_DIR / segment) == (0o640, audio)

            member = probe(run, segment, "audio")
            assert member["connect"] == "ok" and member["intact"] is True, member
            assert member["fake_device"] == "NotAllowedError", member  # issue 3
            assert member["ring"] == "ok", member

            outsider = probe(run, segment)
            # The run dir (0750) keeps it from the sockets: the kernel refuses,
            # and the client says so as the spec's NotAllowedError.
            assert outsider["connect"] == "NotAllowedError", outsider
            assert "the group audio (the daemon's access.group" in str(outsider["message"])
            assert outsider["ring"] == "NotAllowedError", outsider
            assert "the group audio" in str(outsider["ring_message"]), outsider
        assert daemon.terminate() == 0
        assert_nothing_left(daemon)
    finally:
        daemon.close()


def regroup(run_dir: Path, at_connect: str, at_hello: str) -> dict[str, object]:
    command = [
        sys.executable,
        str(REPO / "tests" / "support" / "regroup_probe.py"),
        str(run_dir),
        at_connect,
        at_hello,
    ]
    result = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    seen: dict[str, object] = json.loads(result.stdout)
    return seen


@needs_root
@pytest.mark.parametrize(
    ("at_connect", "at_hello", "outcome"),
    [("audio", "", "ok"), ("", "audio", "NotAllowedError")],
    ids=["dropped-after-connect", "gained-after-connect"],
)
def test_groups_are_judged_as_they_were_at_connect(
    open_base: Path, at_connect: str, at_hello: str, outcome: str
) -> None:
    """allow_groups = ["audio"]. 1. A process of nobody connects holding
    audio, drops it, then says hello: allowed. 2. One connects without audio,
    gains it (CAP_SETGID kept for the test), then says hello: refused. The
    kernel's record of the connection decides, not the process as it is at
    hello (which a reused pid, or a process that changed, could fake)."""
    rules = '[access]\nsocket_mode = 0o666\nallow_groups = ["audio"]\n'
    daemon = Daemon(open_base / "run", config=rules)
    try:
        daemon.wait_ready()
        seen = regroup(daemon.run_dir, at_connect, at_hello)
        assert seen["before_hello"] == "InvalidStateError", seen
        assert seen["hello"] == outcome, seen
        audio = grp.getgrnam("audio").gr_gid
        assert (audio in seen["groups_at_hello"]) == (at_hello == "audio"), seen  # type: ignore[operator]
        assert daemon.terminate() == 0
        assert_nothing_left(daemon)
    finally:
        daemon.close()
