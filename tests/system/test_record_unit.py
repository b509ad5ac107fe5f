"""systemd/mediabroker-record@.service, the recorder as a service: verified by
systemd-analyze on an instance, its hardening scored, and its command line
parsed by the real parser so an option the recorder lost would show here.

systemd-analyze comes with the Debian package ``systemd``: without it these
skip on a developer machine and fail when ``CI=true``.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from mediabroker.cli.main import build_parser

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "mediabroker-record@.service"
INSTANCE = "mediabroker-record@camera.service"
TOOL_TIMEOUT_S = 60.0
MAX_EXPOSURE = 2.5  # systemd-analyze security's "OK" and better


def _analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is not None:
        return path
    reason = "systemd-analyze is not installed (the Debian package `systemd`)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def _instance(tmp_path: Path, program: str = "/bin/true") -> Path:
    """The template as the instance ``camera``, its ExecStart program
    replaced by one that exists here (verify checks that it does)."""
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={program}", UNIT.read_text(), flags=re.M)
    copy = tmp_path / INSTANCE  # the file name is the unit name
    copy.write_text(text)
    return copy


def _settings() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def test_systemd_analyze_verifies_an_instance(tmp_path: Path) -> None:
    result = subprocess.run(
        [_analyze(), "verify", "--man=no", str(_instance(tmp_path))],
        capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert [line for line in output.splitlines() if INSTANCE in line] == [], output


def test_verify_speaks_up_about_a_mistake(tmp_path: Path) -> None:
    """The check above is worth something only if verify reports: an unknown
    key is a warning (status 0) naming the unit."""
    copy = _instance(tmp_path)
    copy.write_text(copy.read_text().replace("[Service]\n", "[Service]\nKillSignl=SIGTERM\n"))
    result = subprocess.run(
        [_analyze(), "verify", "--man=no", str(copy)],
        capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert "KillSignl" in result.stdout + result.stderr


def test_the_unit_is_hardened(tmp_path: Path) -> None:
    result = subprocess.run(
        [_analyze(), "security", "--offline=yes", "--no-pager", str(_instance(tmp_path))],
        capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, check=False,
    )  # fmt: skip
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= MAX_EXPOSURE, result.stdout


def test_the_defaults_are_a_command_the_recorder_takes() -> None:
    """DEVICE, OUTPUT and RECORD_OPTIONS as the unit sets them for the
    instance ``camera``, substituted as systemd does, parse as a record
    command: segmented into the state directory, stopped by SIGTERM."""
    settings = _settings()
    env = {}
    for line in settings["Environment"]:
        key, _, value = (
            line.strip('"').replace("%I", "camera").replace("%i", "camera").partition("=")
        )
        env[key] = value
    (exec_start,) = settings["ExecStart"]
    words = shlex.split(exec_start)
    assert words[:2] == ["/usr/local/bin/mediabroker", "record"]
    argv = []
    for word in words[1:]:
        if word == "$RECORD_OPTIONS":
            argv += env["RECORD_OPTIONS"].split()
        else:
            argv.append(re.sub(r"\$\{(\w+)\}", lambda m: env[m[1]], word))
    args = build_parser().parse_args(argv)
    assert (args.device, str(args.output)) == (
        "camera",
        "/var/lib/mediabroker-record/camera/camera.mp4",
    )
    assert (args.segment, args.keep, args.duration) == (600.0, 144, None)
    assert settings["StateDirectory"] == ["mediabroker-record/%i"]
    assert settings["EnvironmentFile"] == ["-/etc/mediabroker/record-%i.env"]
    assert settings["KillSignal"] == ["SIGTERM"] and settings["RestartPreventExitStatus"] == ["2"]
    assert settings["SupplementaryGroups"] == ["mediabroker"]  # who may reach the daemon
