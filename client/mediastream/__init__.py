"""mediastream: the W3C Media Capture and Streams API over a local mediabroker daemon."""

from __future__ import annotations

import logging

from .errors import (
    AbortError,
    FrameOverwrittenError,
    InvalidStateError,
    MediaStreamError,
    NotAllowedError,
    NotFoundError,
    NotReadableError,
    OverconstrainedError,
    ProtocolError,
    ReadTimeoutError,
)
from .frames import AudioData, VideoFrame

__all__ = [
    "AbortError",
    "AudioData",
    "FrameOverwrittenError",
    "InvalidStateError",
    "MediaStreamError",
    "NotAllowedError",
    "NotFoundError",
    "NotReadableError",
    "OverconstrainedError",
    "ProtocolError",
    "ReadTimeoutError",
    "VideoFrame",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
