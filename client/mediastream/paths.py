"""Where the daemon's sockets and segments live; both sides resolve it alike.

The daemon binds its sockets as files in its run dir, under the names below;
clients and the daemon build every ``ipc://`` endpoint with `endpoint` and
turn one back into its file with `socket_path`.
"""

from __future__ import annotations

import grp
import os
from pathlib import Path

__all__ = [
    "CAPTURE_STATUS",
    "CONTROL",
    "DAEMON_SOCKETS",
    "DEFAULT_SHM_PREFIX",
    "control_endpoint",
    "endpoint",
    "group_to_join",
    "resolve_run_dir",
    "resolve_shm_prefix",
    "socket_path",
]

SYSTEM_RUN_DIR = Path("/run/mediabroker")
DEFAULT_SHM_PREFIX = "mediabroker."

CONTROL = "control"  # ZMTP, clients' DEALERs: requests, replies, notices, heartbeats
CAPTURE_STATUS = "capture-status"  # PULL: the capture processes' reports
DAEMON_SOCKETS = (CONTROL, CAPTURE_STATUS)  # what the daemon binds in its run dir
IPC = "ipc://"


def resolve_run_dir() -> Path:
    """``$MEDIABROKER_RUNDIR``, else /run/mediabroker if it exists (the system
    service), else ``$XDG_RUNTIME_DIR/mediabroker`` (a user's own daemon),
    else /run/mediabroker for root and /run/user/<uid>/mediabroker for others."""
    explicit = os.environ.get("MEDIABROKER_RUNDIR")
    if explicit:
        return Path(explicit)
    if SYSTEM_RUN_DIR.is_dir():
        return SYSTEM_RUN_DIR
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return Path(runtime) / "mediabroker"
    uid = os.getuid()
    return SYSTEM_RUN_DIR if uid == 0 else Path(f"/run/user/{uid}/mediabroker")


def resolve_shm_prefix() -> str:
    return os.environ.get("MEDIABROKER_SHM_PREFIX") or DEFAULT_SHM_PREFIX


def endpoint(run_dir: Path, name: str) -> str:
    """The ``ipc://`` endpoint of the socket file ``name`` in ``run_dir``."""
    return f"{IPC}{run_dir / name}"


def socket_path(endpoint: str) -> Path:
    """The socket file of an ``ipc://`` endpoint; raises `ValueError` for
    any other transport."""
    if not endpoint.startswith(IPC):
        raise ValueError(f"{endpoint!r} is not an {IPC} endpoint")
    return Path(endpoint.removeprefix(IPC))


def control_endpoint(run_dir: Path) -> str:
    return endpoint(run_dir, CONTROL)


def group_to_join(path: Path) -> str:
    """What a user refused access to ``path`` (the run dir, a ring) should
    ask for: "the group <its group> (the daemon's access.group setting)"."""
    try:
        gid = path.stat().st_gid
    except OSError:
        return "the daemon's group (its access.group setting)"
    try:
        name = grp.getgrgid(gid).gr_name
    except KeyError:
        name = str(gid)
    return f"the group {name} (the daemon's access.group setting)"
