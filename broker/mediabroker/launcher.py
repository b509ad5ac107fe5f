"""Starting a daemon from another program (the demo, the benchmark, the tests)
and knowing when it serves, without polling.

The daemon already tells systemd ``READY=1`` over ``$NOTIFY_SOCKET`` once its
sockets are bound; `ReadyListener` is that socket for a parent that is not
systemd.
"""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from types import TracebackType

__all__ = ["ReadyListener", "serve_command"]


def serve_command(
    run_dir: Path,
    shm_prefix: str,
    *,
    log_level: str | None = "WARNING",
    extra: tuple[str, ...] = (),
) -> list[str]:
    """``python -m mediabroker serve`` on fake devices only, in ``run_dir``."""
    return [
        sys.executable,
        "-m",
        "mediabroker",
        *(["--log-level", log_level] if log_level else []),
        "serve",
        "--fake-devices",
        "--run-dir",
        str(run_dir),
        "--shm-prefix",
        shm_prefix,
        *extra,
    ]


class ReadyListener:
    """A datagram socket standing in for systemd's notify socket: start the
    daemon with ``env={**os.environ, **listener.env}``, then `wait_for`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))
        self.seen: list[str] = []

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self.path)}

    def wait_for(self, wanted: str = "READY=1", timeout: float = 15.0) -> str | None:
        """The first message holding the assignment ``wanted``, or None when
        none came within ``timeout`` seconds (``seen`` keeps what did)."""
        deadline = time.monotonic() + timeout
        while (remaining := deadline - time.monotonic()) > 0:
            self._socket.settimeout(remaining)
            try:
                message = self._socket.recv(4096).decode()
            except TimeoutError:
                return None
            self.seen.append(message)
            if wanted in message.split("\n"):
                return message
        return None

    def close(self) -> None:
        """Idempotent."""
        self._socket.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> ReadyListener:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
