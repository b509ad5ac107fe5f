"""mediastream.paths: the daemon's socket names and ipc:// endpoints, written once."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from mediastream.paths import (
    CAPTURE_STATUS,
    CONTROL,
    DAEMON_SOCKETS,
    control_endpoint,
    endpoint,
    socket_path,
)
from support import Daemon


def test_socket_names() -> None:
    assert (CONTROL, CAPTURE_STATUS) == ("control", "capture-status")
    assert DAEMON_SOCKETS == (CONTROL, CAPTURE_STATUS)


def test_endpoints_are_ipc_files_in_the_run_dir(tmp_path: Path) -> None:
    assert endpoint(tmp_path, CONTROL) == f"ipc://{tmp_path}/control"
    assert control_endpoint(tmp_path) == endpoint(tmp_path, CONTROL)


@pytest.mark.parametrize("name", DAEMON_SOCKETS)
def test_socket_path_undoes_endpoint(tmp_path: Path, name: str) -> None:
    assert socket_path(endpoint(tmp_path, name)) == tmp_path / name


@pytest.mark.parametrize("other", ["tcp://127.0.0.1:5555", "inproc://control", "/run/x/control"])
def test_socket_path_refuses_other_transports(other: str) -> None:
    with pytest.raises(ValueError, match="ipc://"):
        socket_path(other)


def test_the_daemon_binds_exactly_its_sockets_and_removes_them(daemon: Daemon) -> None:
    """1. A serving daemon's run dir holds DAEMON_SOCKETS as sockets, and no
    other (capture processes bind none). 2. Stopped, it leaves none of them."""
    sockets = {p.name for p in daemon.run_dir.iterdir() if stat.S_ISSOCK(p.lstat().st_mode)}
    assert sockets == set(DAEMON_SOCKETS)
    assert daemon.terminate() == 0
    assert not any((daemon.run_dir / name).exists() for name in DAEMON_SOCKETS)
