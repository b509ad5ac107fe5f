"""Who may use the daemon.

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

The file modes of the outer gate are set by `mediabroker.filemodes`; which
devices are offered (``devices.allow``, ``devices.deny``) is
`mediabroker.devices.filters`.
"""

from __future__ import annotations

import grp
import logging
import math
import os
import pwd
import time
from pathlib import Path
from typing import TYPE_CHECKING

from mediabroker.config import KEY_OF_FIELD, BrokerConfig
from mediastream.errors import NotAllowedError

if TYPE_CHECKING:
    from mediabroker.daemon.sessions import PeerCredentials

__all__ = [
    "check_peer",
    "describe_gid",
    "describe_uid",
    "peer_groups",
]

log = logging.getLogger(__name__)

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
