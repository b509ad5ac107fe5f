"""File modes and groups of what the daemon creates in its run dir.

The outer gate of access (see `mediabroker.daemon.access`): the run dir
gets the search bits of whoever may use the sockets, the sockets the
configured mode and group, and the capture processes' status socket 0600
so that no client can report a source as failed. Capture processes bind
no socket: readers wait on their ring's doorbell.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from mediabroker.config import BrokerConfig
from mediastream.paths import CAPTURE_STATUS, CONTROL

__all__ = [
    "PRIVATE_SOCKETS",
    "PUBLIC_SOCKETS",
    "run_dir_mode",
    "secure_path",
    "secure_sockets",
]

log = logging.getLogger(__name__)

PUBLIC_SOCKETS = (CONTROL,)  # clients connect to these
PRIVATE_SOCKETS = (CAPTURE_STATUS,)  # only the daemon's own capture processes


def run_dir_mode(socket_mode: int) -> int:
    """The run dir's mode for a socket mode: whoever may use the sockets may
    search and list the directory (0660 -> 0750, 0666 -> 0755)."""
    mode = 0o700
    if socket_mode & 0o060:
        mode |= 0o050
    if socket_mode & 0o006:
        mode |= 0o005
    return mode


def secure_path(path: Path, mode: int, gid: int | None) -> None:
    """chmod ``path`` to ``mode`` and give it group ``gid`` (None: keep).
    Raises OSError (PermissionError when we may not use that group)."""
    if gid is not None and os.stat(path).st_gid != gid:
        os.chown(path, -1, gid)
    os.chmod(path, mode)


def secure_sockets(config: BrokerConfig, names: Iterable[str] = PUBLIC_SOCKETS) -> None:
    """Give freshly bound sockets in the run dir their mode and group (libzmq
    creates them with the umask's mode and our primary group), and make the
    capture processes' status socket private: a client must not be able to
    report a source as failed. A failure is logged: the daemon still serves
    its own user."""
    targets = [(name, config.socket_mode, config.socket_group) for name in names]
    targets += [(name, 0o600, None) for name in PRIVATE_SOCKETS]
    for name, mode, gid in targets:
        path = config.run_dir / name
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                secure_path(path, mode, gid)
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot set mode %#o and group on %s: %s", mode, path, exc)
