"""A run dir in a place another local user can write (a shared /tmp, a
misconfigured --run-dir): ``nobody`` plants things before the daemon, which
runs as root here, starts. Before the daemon checked what it found, it
followed a planted pid-file symlink (truncating a root-owned file) and
chmodded the target of a run-dir symlink. Now each is refused at start with
exit status 1 and a message, and the planted target is untouched."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import child_env
from support.users import as_nobody, needs_root, shared_dir

EXIT_FAILED = 1


def serve(run_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mediabroker",
            "serve",
            "--fake-devices",
            "--no-hardware",
            "--run-dir",
            str(run_dir),
        ],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def writable_base() -> Iterator[Path]:
    """A directory any user may write in, as /tmp is (but not sticky)."""
    with shared_dir("mbrundir-", 0o777) as base:
        yield base


@pytest.fixture
def precious(tmp_path: Path) -> Path:
    """A root-owned file the attacker wants the daemon to damage."""
    path = tmp_path / "precious"
    path.write_text("root's data\n")
    path.chmod(0o644)
    return path


@needs_root
def test_a_planted_pid_file_symlink_is_refused_and_its_target_untouched(
    writable_base: Path, precious: Path
) -> None:
    run_dir = writable_base / "run"
    run_dir.mkdir(mode=0o777)
    run_dir.chmod(0o777)  # root's, but writable by all: as a careless --run-dir might be
    as_nobody(f"ln -s {precious} {run_dir}/mediabroker.pid")
    result = serve(run_dir)
    assert result.returncode == EXIT_FAILED, result.stderr
    assert "mediabroker.pid" in result.stderr and "remove it" in result.stderr, result.stderr
    assert precious.read_text() == "root's data\n"
    assert oct(precious.stat().st_mode & 0o777) == oct(0o644)


@needs_root
def test_a_run_dir_symlink_is_refused_and_its_target_keeps_its_mode(
    writable_base: Path, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    as_nobody(f"ln -s {target} {writable_base}/run")
    result = serve(writable_base / "run")
    assert result.returncode == EXIT_FAILED, result.stderr
    assert "is a symlink" in result.stderr, result.stderr
    assert oct(target.stat().st_mode & 0o777) == oct(0o700)
    assert list(target.iterdir()) == []


@needs_root
def test_another_users_run_dir_is_refused(writable_base: Path) -> None:
    as_nobody(f"mkdir -m 0777 {writable_base}/run")
    result = serve(writable_base / "run")
    assert result.returncode == EXIT_FAILED, result.stderr
    assert "belongs to uid 65534" in result.stderr, result.stderr
    assert list((writable_base / "run").iterdir()) == []


UNSHARE = ["unshare", "--mount", "--propagation", "private", "--"]


def serve_on_full_tmpfs(base: Path, options: str, fill: bool) -> subprocess.CompletedProcess[str]:
    """``serve`` in a mount namespace of its own whose ``base`` is a tiny
    tmpfs (``options``), filled up first when ``fill``."""
    fill_command = f"dd if=/dev/zero of={base}/fill bs=4k 2>/dev/null || true; " if fill else ""
    script = f"mount -t tmpfs -o {options} tmpfs {base} && {fill_command}exec \"$@\""
    command = [sys.executable, "-m", "mediabroker", "serve", "--fake-devices", "--no-hardware"]
    return subprocess.run(
        [*UNSHARE, "sh", "-c", script, "sh", *command, "--run-dir", str(base / "run")],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@needs_root
@pytest.mark.parametrize(
    ("options", "fill", "said"),
    [
        ("size=64k", True, "cannot write"),  # no block for the pid file's contents
        ("nr_inodes=3", False, "cannot create the daemon's sockets"),  # no inode for a socket
    ],
    ids=["no-space", "no-inodes"],
)
def test_a_full_run_dir_is_a_message_not_a_traceback(
    tmp_path: Path, options: str, fill: bool, said: str
) -> None:
    """The run dir's file system is full (no space for the pid, or no inode
    for a socket): the daemon exits with status 1 and one line saying what it
    could not create and that the file system may be full."""
    result = serve_on_full_tmpfs(tmp_path, options, fill)
    assert result.returncode == EXIT_FAILED, result.stderr
    assert said in result.stderr and "full" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
