"""Where the daemon's sockets and segments live; both sides resolve it alike."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "DEFAULT_SHM_PREFIX",
    "control_endpoint",
    "events_endpoint",
    "resolve_run_dir",
    "resolve_shm_prefix",
    "source_endpoint",
]

SYSTEM_RUN_DIR = Path("/run/mediabroker")
DEFAULT_SHM_PREFIX = "mediabroker."


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


def control_endpoint(run_dir: Path) -> str:
    return f"ipc://{run_dir / 'control'}"


def events_endpoint(run_dir: Path) -> str:
    return f"ipc://{run_dir / 'events'}"


def source_endpoint(run_dir: Path, source_id: str) -> str:
    """The PUB socket on which a source announces each new frame."""
    return f"ipc://{run_dir / ('source-' + source_id)}"
