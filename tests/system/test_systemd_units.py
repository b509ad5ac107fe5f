"""The files under systemd/: checked by systemd's own tools (systemd-analyze
verify, systemd-sysusers, systemd-tmpfiles) and read back with configparser
so the settings the daemon relies on cannot drift away unnoticed.

systemd's tools come with the Debian package ``systemd``. Without them the
tool-driven tests skip on a developer machine, but fail when ``CI=true``:
a CI run that silently verified nothing would look green for no reason.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

SYSTEMD_DIR = Path(__file__).resolve().parents[2] / "systemd"
SYSTEM_UNIT = SYSTEMD_DIR / "mediabroker.service"
USER_UNIT = SYSTEMD_DIR / "mediabroker-user.service"
SYSUSERS = SYSTEMD_DIR / "sysusers.d" / "mediabroker.conf"
TMPFILES = SYSTEMD_DIR / "tmpfiles.d" / "mediabroker.conf"
TOOL_TIMEOUT_S = 60.0
# systemd-analyze security's "OK" ends at 2.5 (the bar for the system
# unit). The user unit's bar is what it reaches: the offline analysis takes
# a unit without User= for root and counts capabilities a user manager's
# services never hold (see the unit's comment).
SYSTEM_UNIT_MAX_EXPOSURE = 2.5
USER_UNIT_MAX_EXPOSURE = 5.5

Unit = dict[str, dict[str, list[str]]]


def _tool(name: str) -> str:
    """The path of one of systemd's tools; skip without it, fail in CI."""
    path = shutil.which(name)
    if path is not None:
        return path
    reason = (
        f"{name} is not installed; it ships in the Debian package `systemd` "
        "(apt-get install -y --no-install-recommends systemd)"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


class _Repeated(dict[str, list[str]]):
    """configparser section storage that keeps every value of a repeated key
    (DeviceAllow= twice) instead of the last one: while reading, configparser
    stores each value as a one-item list, so repeats are appended."""

    def __setitem__(self, key: str, value: list[str]) -> None:
        if key in self and isinstance(value, list):
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def _parse_unit(path: Path) -> Unit:
    """Section -> key -> every value assigned, in order, as systemd reads
    them (case-sensitive keys, no %-interpolation)."""
    parser = configparser.ConfigParser(
        strict=False, interpolation=None, dict_type=_Repeated  # type: ignore[arg-type]
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path, encoding="utf-8")
    return {
        name: {key: value.splitlines() for key, value in parser[name].items()}
        for name in parser.sections()
    }


def _one(unit: Unit, section: str, key: str) -> str:
    values = unit[section].get(key)
    assert values is not None, f"{key}= missing from [{section}]"
    assert len(values) == 1, f"{key}= set {len(values)} times: {values}"
    return values[0]


def _stub_binary(tmp_path: Path) -> Path:
    stub = tmp_path / "bin" / "mediabroker"
    stub.parent.mkdir()
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    return stub


def _verifiable_copy(unit: Path, dest: Path, stub: Path) -> Path:
    """A copy of ``unit`` that systemd-analyze can verify on any machine.

    verify fails on an Exec*= whose program does not exist here. The
    mediabroker binary is usually not installed where tests run, and /bin/kill
    (Debian's procps) is not in slim images; neither says anything about the
    unit's syntax, so each missing program becomes ``stub`` and the
    arguments stay as written.
    """
    lines = []
    for line in unit.read_text().splitlines():
        match = re.match(r"(Exec\w+=)([-@:+!]*)(\S+)(.*)", line)
        if match and (
            match[1] == "ExecStart=" or not os.access(match[3], os.X_OK)
        ):
            line = f"{match[1]}{match[2]}{stub}{match[4]}"
        lines.append(line)
    dest.mkdir(exist_ok=True)
    copy = dest / unit.name  # the file name is the unit name
    copy.write_text("\n".join(lines) + "\n")
    return copy


def _verify(unit: Path, *, user: bool, tmp_path: Path) -> list[str]:
    """Run systemd-analyze verify; return the lines it printed about
    ``unit`` (it may also print about the host's own units)."""
    env = dict(os.environ)
    args = [_tool("systemd-analyze"), "verify", "--man=no"]
    if user:
        # A user manager is not needed, only somewhere to resolve
        # RuntimeDirectory= and the user's unit paths against.
        runtime = tmp_path / "xdg-runtime"
        runtime.mkdir(mode=0o700)
        env.update(XDG_RUNTIME_DIR=str(runtime), HOME=str(tmp_path))
        args.append("--user")
    result = subprocess.run(
        [*args, str(unit)],
        capture_output=True,
        text=True,
        env=env,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"systemd-analyze verify {unit.name}:\n{output}"
    return [line for line in output.splitlines() if unit.name in line]


@pytest.mark.parametrize(
    ("unit", "user"), [(SYSTEM_UNIT, False), (USER_UNIT, True)], ids=["system", "user"]
)
def test_systemd_analyze_verify(unit: Path, user: bool, tmp_path: Path) -> None:
    copy = _verifiable_copy(unit, tmp_path / "units", _stub_binary(tmp_path))
    assert _verify(copy, user=user, tmp_path=tmp_path) == []


def test_systemd_analyze_reports_what_it_finds(tmp_path: Path) -> None:
    """The check above is only worth something if verify speaks up: an
    unknown key is a warning with exit status 0, caught by the line filter."""
    copy = _verifiable_copy(SYSTEM_UNIT, tmp_path / "units", _stub_binary(tmp_path))
    copy.write_text(copy.read_text().replace("[Service]\n", "[Service]\nWatchDogSec=10\n"))
    reported = _verify(copy, user=False, tmp_path=tmp_path)
    assert any("WatchDogSec" in line for line in reported), reported


def test_system_unit_settings() -> None:
    unit = _parse_unit(SYSTEM_UNIT)
    service = unit["Service"]
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "WatchdogSec": "10",
        "Restart": "on-failure",
        "RestartSec": "1",
        "ExecStart": "/opt/mediabroker/bin/mediabroker serve",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "KillSignal": "SIGTERM",
        "TimeoutStopSec": "15",
        "User": "mediabroker",
        "Group": "mediabroker",
        "RuntimeDirectory": "mediabroker",
        "RuntimeDirectoryMode": "0750",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "DevicePolicy": "closed",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictRealtime": "no",
        "LockPersonality": "yes",
        "SystemCallArchitectures": "native",
        "ProtectKernelLogs": "yes",
        "ProtectClock": "yes",
        "ProtectHostname": "yes",
        "PrivateMounts": "yes",
        "RestrictNamespaces": "yes",
        "RestrictSUIDSGID": "yes",
        "SystemCallErrorNumber": "EPERM",
    }
    assert {key: _one(unit, "Service", key) for key in expected} == expected
    assert {"video", "audio"} <= set(_one(unit, "Service", "SupplementaryGroups").split())
    assert set(service["DeviceAllow"]) == {"char-video4linux rw", "char-alsa rw"}
    assert set(_one(unit, "Service", "RestrictAddressFamilies").split()) == {
        "AF_UNIX",
        "AF_NETLINK",
    }
    # Group members connect to the ZeroMQ sockets, which needs group write.
    umask = int(_one(unit, "Service", "UMask"), 8)
    assert umask & 0o070 == 0 and umask & 0o007 == 0o007
    assert _one(unit, "Install", "WantedBy") == "multi-user.target"
    # Set and empty: no capabilities at all (configparser reads no lines).
    assert service["CapabilityBoundingSet"] == service["AmbientCapabilities"] == []
    # fchown (the [rings] group) stays allowed; @resources (RLIMIT_NOFILE,
    # nice, SCHED_FIFO) is never taken away.
    assert service["SystemCallFilter"] == ["@system-service", "~@privileged", "@chown"]


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("PrivateDevices", "hides /dev/video* and /dev/snd"),
        ("PrivateNetwork", "cuts AF_NETLINK off from udev hot-plug events"),
        ("MemoryDenyWriteExecute", "breaks cffi callbacks (sounddevice streams)"),
        ("PrivateUsers", "maps every client's SO_PEERCRED uid to nobody"),
        ("ProcSubset", "hides /proc/stat, which psutil reads"),
        ("RemoveIPC", "deletes clients' hold tables of group mediabroker"),
    ],
)
def test_system_unit_leaves_out_breaking_hardening(key: str, why: str) -> None:
    values = _parse_unit(SYSTEM_UNIT)["Service"].get(key, [])
    assert values in ([], ["no"]), f"{key}= {why}"


def test_user_unit_settings() -> None:
    unit = _parse_unit(USER_UNIT)
    assert _one(unit, "Service", "Type") == "notify"
    assert _one(unit, "Service", "ExecStart") == "/usr/bin/env mediabroker serve"
    assert _one(unit, "Service", "RuntimeDirectory") == "mediabroker"
    assert _one(unit, "Service", "Restart") == "on-failure"
    assert _one(unit, "Service", "WatchdogSec") == "10"
    assert _one(unit, "Install", "WantedBy") == "default.target"
    # A user manager cannot switch users; the session's own rights apply.
    assert "User" not in unit["Service"] and "Group" not in unit["Service"]


# In a user manager these need privileges it lacks: the first four drop
# capabilities (the unit fails with 218/CAPABILITIES where unprivileged user
# namespaces are denied, as on Ubuntu 24.04), the next three need BPF or a
# group change, PrivateUsers= fails the unit where user namespaces are off.
NOT_FOR_USER_UNITS = (
    "CapabilityBoundingSet",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectClock",
    "DeviceAllow",
    "IPAddressDeny",
    "SupplementaryGroups",
    "PrivateUsers",
)


def test_user_unit_is_hardened_like_the_system_unit_where_a_user_manager_can() -> None:
    system = _parse_unit(SYSTEM_UNIT)["Service"]
    user = _parse_unit(USER_UNIT)["Service"]
    assert not [key for key in NOT_FOR_USER_UNITS if key in user]
    same = [
        "NoNewPrivileges",
        "ProtectSystem",
        "PrivateTmp",
        "PrivateMounts",
        "ProtectKernelTunables",
        "ProtectControlGroups",
        "RestrictAddressFamilies",
        "RestrictNamespaces",
        "RestrictSUIDSGID",
        "RestrictRealtime",
        "LockPersonality",
        "SystemCallArchitectures",
        "SystemCallFilter",
        "SystemCallErrorNumber",
    ]
    assert {key: user.get(key) for key in same} == {key: system[key] for key in same}
    # Read-only: a user's video files to serve as cameras live in $HOME.
    assert user["ProtectHome"] == ["read-only"]
    assert "MemoryDenyWriteExecute" not in user, "breaks cffi callbacks"


def exposure(unit: Path, tmp_path: Path, *, user: bool = False, root: Path | None = None) -> float:
    """systemd-analyze security's overall exposure for ``unit`` (a path, or
    a unit name inside ``root``), offline: no running systemd needed."""
    args = [_tool("systemd-analyze"), "security", "--offline=yes", "--no-pager"]
    env = dict(os.environ)
    if user:  # as for verify: somewhere to resolve RuntimeDirectory= against
        runtime = tmp_path / "xdg-runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        env.update(XDG_RUNTIME_DIR=str(runtime), HOME=str(tmp_path))
        args.append("--user")
    if root is not None:
        args.append(f"--root={root}")
    result = subprocess.run(
        [*args, str(unit)],
        capture_output=True,
        text=True,
        env=env,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?) ", output)
    assert result.returncode == 0 and match, f"systemd-analyze security {unit}:\n{output}"
    return float(match[1])


@pytest.mark.parametrize(
    ("unit", "user", "limit"),
    [(SYSTEM_UNIT, False, SYSTEM_UNIT_MAX_EXPOSURE), (USER_UNIT, True, USER_UNIT_MAX_EXPOSURE)],
    ids=["system", "user"],
)
def test_systemd_analyze_security_rates_the_unit_within_its_bar(
    unit: Path, user: bool, limit: float, tmp_path: Path
) -> None:
    copy = _verifiable_copy(unit, tmp_path / "units", _stub_binary(tmp_path))
    assert exposure(copy, tmp_path, user=user) <= limit


def test_the_security_check_sees_hardening_go(tmp_path: Path) -> None:
    """The score above is parsed from real output: without its hardening
    section the system unit rates far above the bar."""
    text = SYSTEM_UNIT.read_text()
    bare = tmp_path / "bare" / SYSTEM_UNIT.name
    bare.parent.mkdir()
    bare.write_text(text[: text.index("# --- Hardening")] + text[text.index("[Install]") :])
    copy = _verifiable_copy(bare, tmp_path / "units", _stub_binary(tmp_path))
    assert exposure(copy, tmp_path) > 8.0


def test_sysusers_creates_the_user_in_video_and_audio(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    result = subprocess.run(
        [_tool("systemd-sysusers"), f"--root={root}", str(SYSUSERS)],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    passwd = {
        line.split(":")[0]: line.split(":")
        for line in (root / "etc" / "passwd").read_text().splitlines()
    }
    groups = {
        line.split(":")[0]: line.split(":")
        for line in (root / "etc" / "group").read_text().splitlines()
    }
    user = passwd["mediabroker"]
    assert user[3] == groups["mediabroker"][2], "primary group is mediabroker"
    assert user[6] == "/usr/sbin/nologin"
    assert int(user[2]) < 1000, "a system user"
    for group in ("video", "audio"):
        assert "mediabroker" in groups[group][3].split(","), group


def test_tmpfiles_creates_the_run_dir_like_the_unit(tmp_path: Path) -> None:
    """1. Create the user in a scratch root, 2. apply the tmpfiles.d line
    there, 3. compare with the unit's RuntimeDirectory settings. Without
    root the chown fails, so only syntax errors count then."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "run").mkdir()
    subprocess.run(
        [_tool("systemd-sysusers"), f"--root={root}", str(SYSUSERS)],
        capture_output=True,
        timeout=TOOL_TIMEOUT_S,
        check=True,
    )
    result = subprocess.run(
        [_tool("systemd-tmpfiles"), f"--root={root}", "--create", str(TMPFILES)],
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    syntax = [line for line in result.stderr.splitlines() if str(TMPFILES) in line]
    assert syntax == [], result.stderr
    run_dir = root / "run" / "mediabroker"
    unit = _parse_unit(SYSTEM_UNIT)
    assert run_dir.name == _one(unit, "Service", "RuntimeDirectory")
    assert f"{run_dir.stat().st_mode & 0o7777:04o}" == _one(
        unit, "Service", "RuntimeDirectoryMode"
    )
    if os.geteuid() == 0:
        assert result.returncode == 0, result.stderr
        uid = next(
            line.split(":")[2]
            for line in (root / "etc" / "passwd").read_text().splitlines()
            if line.startswith("mediabroker:")
        )
        assert run_dir.stat().st_uid == int(uid)


def test_the_system_unit_gives_the_connection_caps_their_descriptors() -> None:
    """LimitNOFILE covers limits.connections plus the daemon's headroom: the
    caps, not the fd limit, must be what refuses connections (libzmq once
    aborted the daemon when fds ran out)."""
    from mediabroker.config import BrokerConfig
    from mediabroker.daemon.broker import FD_HEADROOM

    limit = int(_one(_parse_unit(SYSTEM_UNIT), "Service", "LimitNOFILE"))
    assert limit >= BrokerConfig().max_connections + FD_HEADROOM, limit
