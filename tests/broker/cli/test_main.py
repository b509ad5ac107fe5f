"""The ``mediabroker`` command line as a whole: help, exit statuses, and how a
client command reports a failure."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from support import run_mediabroker

COMMANDS = (
    "serve",
    "fake-device",
    "devices",
    "stats",
    "snapshot",
    "record",
    "demo",
    "install-service",
)

mediabroker = run_mediabroker


def test_help_lists_the_commands() -> None:
    result = mediabroker("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout and "demo" in result.stdout


def test_help_lists_every_command_with_a_summary() -> None:
    result = mediabroker("--help")
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"\n    {command} " in result.stdout, command
    assert "exit status: 0 done, 1 failed, 2 usage or configuration error" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_its_own_help(command: str) -> None:
    result = mediabroker(command, "--help")
    assert result.returncode == 0 and f"usage: mediabroker {command}" in result.stdout


def test_an_unknown_option_is_a_usage_error() -> None:
    result = mediabroker("devices", "--no-such-option")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


def test_without_a_daemon_a_client_command_says_so_in_one_line(tmp_path: Path) -> None:
    result = mediabroker("devices", "--run-dir", str(tmp_path / "none"))
    assert result.returncode == 1
    assert result.stderr.startswith("mediabroker: NotReadableError: no mediabroker daemon at")
    assert len(result.stderr.splitlines()) == 1


def client_error(*args: str) -> subprocess.CompletedProcess[str]:
    """A client command that must fail before it looks for a daemon."""
    result = mediabroker(*args)
    assert "Traceback" not in result.stderr, result.stderr
    assert "NotReadableError" not in result.stderr, "it asked the daemon first"
    return result


def test_a_usage_mistake_found_by_a_command_is_status_2_in_one_line(tmp_path: Path) -> None:
    """Found by the command, not by argparse: the same ``mediabroker: error:``
    line and status 2 for each, before any daemon is asked."""
    run_dir = str(tmp_path / "none")
    for args, says in [
        (("fake-device", "add"), "say what to add: camera or microphone"),
        (("record", "camera", "-o", "clip.mov"), "cannot record to .mov files: use .mp4"),
    ]:
        result = client_error(*args, "--run-dir", run_dir)
        assert result.returncode == 2, (args, result.stderr)
        assert result.stderr.startswith(f"mediabroker: error: {says}"), result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
