"""Who may use the daemon.

Design note. Access has two gates. The outer one is the file system: the run
dir is 0750 and the sockets 0660 with the configured group (segments 0640
with the same group), so a user outside the group cannot connect to the
daemon nor map a ring. The inner one is `check_peer`, run on every
``hello``: the kernel's credentials of the connecting process (SO_PEERCRED
and SO_PEERGROUPS, read when it connected; see `zmtp`) against ``access.allow_users`` and
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
    from mediabroker.daemon.zmtp import PeerCredentials

__all__ = [
    "check_peer",
    "describe_gid",
    "describe_uid",
    "log_refusal",
    "over_limit",
]

log = logging.getLogger(__name__)

REFUSAL_LOG_EVERY_S = 60.0
MAX_REFUSALS_REMEMBERED = 4096
_refusals_logged: dict[tuple[int, int, str], float] = {}  # (uid, pid, kind) -> when logged


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


def check_peer(config: BrokerConfig, peer: PeerCredentials) -> None:
    """Raise `NotAllowedError` naming the rule unless ``peer`` may use the daemon.
    The groups are those the kernel recorded when the peer connected."""
    if not config.allow_users and not config.allow_groups:
        return  # no rule: the socket's group and mode are the only gate
    if peer.uid in (0, os.getuid()) or peer.uid in config.allow_users:
        return
    if peer.groups & set(config.allow_groups):
        return
    users = ", ".join(_name_of_uid(u) for u in config.allow_users)
    allowed = ", ".join(_name_of_gid(g) for g in config.allow_groups)
    source = config.config_path or "the daemon's settings"
    held = ", ".join(_name_of_gid(g) for g in sorted(peer.groups))
    join = f"; or join the group {allowed.split(', ')[0]}" if config.allow_groups else ""
    log_refusal(peer, "access", "not in allow_users or allow_groups")
    raise NotAllowedError(
        f"user {describe_uid(peer.uid)} (groups {held}) is not allowed by the rule "
        f"{KEY_OF_FIELD['allow_users']} = [{users}], {KEY_OF_FIELD['allow_groups']} = "
        f"[{allowed}] in {source}; ask the administrator to add the user to "
        f"{KEY_OF_FIELD['allow_users']}{join}"
    )


def log_refusal(peer: PeerCredentials, kind: str, why: str) -> None:
    """Warn about a refusal once per peer and kind a minute: a refused client
    retrying in a loop must not flood the journal, and the operator must
    still see who was refused and why."""
    now = time.monotonic()
    key = (peer.uid, peer.pid, kind)
    if now - _refusals_logged.get(key, -math.inf) < REFUSAL_LOG_EVERY_S:
        return
    if len(_refusals_logged) >= MAX_REFUSALS_REMEMBERED:
        _refusals_logged.clear()  # many peers at once: at worst, some are logged again
    _refusals_logged[key] = now
    log.warning(
        "refused %s for pid %d (%s), uid %s: %s (logged once a minute per peer)",
        kind,
        peer.pid,
        _process_name(peer.pid),
        describe_uid(peer.uid),
        why,
    )


def over_limit(
    config: BrokerConfig, peer: PeerCredentials, kind: str, field: str, shown: object, what: str
) -> str:
    """Log a refusal for a ``[limits]`` key (``field``, a BrokerConfig field)
    and return the sentence that names it, its value ``shown`` and the file,
    to end with what the client can do."""
    key = KEY_OF_FIELD[field]
    log_refusal(peer, kind, f"{what} ({key})")
    return f"{what} ({key} = {shown} in {config.config_path or 'the defaults'})"


def _process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "exited"
