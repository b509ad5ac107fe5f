"""The daemon's own errors: what the daemon, its capture processes and the
command line raise among themselves. What a client sees is in
`mediastream.errors` (the spec's DOMException names); these never cross
the wire as themselves.

    Exception
    ├── ValueError
    │   └── ConfigError         a setting the daemon cannot start with (exit 2)
    ├── RuntimeError
    │   └── StartError          the run dir is busy or cannot be prepared (exit 1)
    ├── CaptureError            a device failed; the message says how
    │   └── PortAudioMissing    libportaudio2 is not installed
    ├── EndOfStream             a source has no more frames
    └── CommandError            a client command failed; ``status`` is its exit status
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "CaptureError",
    "CommandError",
    "ConfigError",
    "EndOfStream",
    "PortAudioMissing",
    "StartError",
]


class ConfigError(ValueError):
    """A setting the daemon cannot start with. The message names the file and
    the key, and says what would be accepted."""

    def __init__(self, message: str, *, path: Path | None = None, key: str | None = None) -> None:
        self.path, self.key, self.reason = path, key, message
        where = [str(path) if path is not None else "configuration"]
        if key:
            where.append(key)
        super().__init__(f"{': '.join(where)}: {message}")


class StartError(RuntimeError):
    """The daemon cannot start here; the message says why and what to do."""


class CaptureError(Exception):
    """The device failed; the message says how, for the log and the client."""


class PortAudioMissing(CaptureError):
    """``import sounddevice`` failed: libportaudio2 is not installed."""


class EndOfStream(Exception):
    """The source has no more frames (a file that does not loop, a removed device)."""


class CommandError(Exception):
    """A command failed; ``status`` is its exit status (2: a usage mistake)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status
