"""Who may use the daemon, and with which file modes.

Design note. Access has two gates. The outer one is the file system: the run
dir is 0750 and the sockets 0660 with the configured group (segments 0640
with the same group), so a user outside the group cannot connect to the
daemon nor map a ring. The inner one is `check_peer`, run on every
``hello``: the kernel's credentials of the connecting process (SO_PEERCRED,
via libzmq's ``Peer-Address``) against ``access.allow_users`` and
``access.allow_groups``; a refusal is a `NotAllowedError` naming the rule.
Every later request of that client is tied to the session ``hello`` opened,
so nothing gets past the check. The daemon's own user and root always pass:
they can read the rings anyway.

Which devices are offered (``devices.allow``, ``devices.deny``) is
`mediabroker.devices.filters`.
"""

from __future__ import annotations

import grp
import logging
import math
import os
import pwd
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from mediabroker.config import KEY_OF_FIELD, BrokerConfig
from mediastream.errors import NotAllowedError
from mediastream.paths import CAPTURE_STATUS, CONTROL, EVENTS, socket_path

if TYPE_CHECKING:
    from mediabroker.daemon.sessions import PeerCredentials

__all__ = [
    "PRIVATE_SOCKETS",
    "PUBLIC_SOCKETS",
    "check_peer",
    "describe_gid",
    "describe_uid",
    "peer_groups",
    "run_dir_mode",
    "secure_endpoint",
    "secure_path",
    "secure_sockets",
]

log = logging.getLogger(__name__)

PUBLIC_SOCKETS = (CONTROL, EVENTS)  # clients connect to these
PRIVATE_SOCKETS = (CAPTURE_STATUS,)  # only the daemon's own capture processes
REFUSAL_LOG_EVERY_S = 60.0
_refusals_logged: dict[int, float] = {}  # uid -> when its last refusal was logged


def describe_uid(uid: int) -> str:
    try:
        return f"{uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return str(uid)


def describe_gid(gid: int) -> str:
    try:
        return f"{gid} ({grp.getgrgid(gid).gr_name})"
    except KeyError:
        return str(gid)


def _name_of_uid(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _name_of_gid(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


# -- clients ---------------------------------------------------------------


def peer_groups(peer: PeerCredentials) -> set[int]:
    """The peer's primary gid and the supplementary groups its process holds
    now (from /proc, as the kernel sees them; only the primary gid if the
    process is already gone)."""
    groups = {peer.gid}
    try:
        status = Path(f"/proc/{peer.pid}/status").read_text()
    except OSError:
        return groups
    for line in status.splitlines():
        if line.startswith("Groups:"):
            groups.update(int(g) for g in line.split()[1:])
    return groups


def check_peer(config: BrokerConfig, peer: PeerCredentials) -> None:
    """Raise `NotAllowedError` naming the rule unless ``peer`` may use the daemon."""
    if not config.allow_users and not config.allow_groups:
        return  # no rule: the socket's group and mode are the only gate
    if peer.uid in (0, os.getuid()) or peer.uid in config.allow_users:
        return
    groups = peer_groups(peer)
    if groups & set(config.allow_groups):
        return
    users = ", ".join(_name_of_uid(u) for u in config.allow_users)
    allowed = ", ".join(_name_of_gid(g) for g in config.allow_groups)
    source = config.config_path or "the daemon's settings"
    held = ", ".join(_name_of_gid(g) for g in sorted(groups))
    _log_refusal(peer)
    raise NotAllowedError(
        f"user {describe_uid(peer.uid)} (groups {held}) is not allowed by the rule "
        f"{KEY_OF_FIELD['allow_users']} = [{users}], {KEY_OF_FIELD['allow_groups']} = "
        f"[{allowed}] in {source}; ask the administrator to add the user or one of its groups"
    )


def _log_refusal(peer: PeerCredentials) -> None:
    """One warning per user a minute: a refused client retrying in a loop must
    not flood the journal."""
    now = time.monotonic()
    if now - _refusals_logged.get(peer.uid, -math.inf) < REFUSAL_LOG_EVERY_S:
        return
    _refusals_logged[peer.uid] = now
    log.warning(
        "refused pid %d, uid %s: not in allow_users or allow_groups (logged once a minute)",
        peer.pid,
        describe_uid(peer.uid),
    )


# -- file modes ------------------------------------------------------------


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


def secure_endpoint(config: BrokerConfig, endpoint: str) -> None:
    """`secure_sockets` for one ``ipc://`` socket a capture process bound
    (a source's frame notifications); a failure is logged."""
    path = socket_path(endpoint)
    try:
        secure_path(path, config.socket_mode, config.socket_group)
    except OSError as exc:
        log.warning("cannot set mode %#o and group on %s: %s", config.socket_mode, path, exc)
