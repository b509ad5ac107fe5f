"""mediastream: the W3C Media Capture and Streams API over a local mediabroker daemon.

from mediastream import MediaDevices
with MediaDevices() as md:
    stream = md.getUserMedia({"video": {"width": 640, "height": 480}})
    frame = stream.getVideoTracks()[0].read(timeout=1.0)   # numpy view, no copy

Typed (py.typed): ``getVideoTracks()`` gives `VideoTrack`s, whose reads are
`VideoFrame`s, and ``getAudioTracks()`` `AudioTrack`s reading `AudioData`;
both are `MediaStreamTrack` (``MediaStreamTrack[VideoFrame]`` and
``MediaStreamTrack[AudioData]``), which is the class to use with ``isinstance``.
"""

from __future__ import annotations

import logging

from .devices import DeviceChangeEvent, InputDeviceInfo, MediaDeviceInfo, MediaDevices
from .errors import (
    AbortError,
    ConstraintTypeError,
    FrameOverwrittenError,
    HoldLimitError,
    InvalidStateError,
    MediaStreamError,
    NotAllowedError,
    NotFoundError,
    NotReadableError,
    OverconstrainedError,
    ProtocolError,
    ReadTimeoutError,
)
from .events import Event, MediaStreamTrackEvent
from .frames import AudioData, VideoFrame
from .generator import VideoTrackGenerator
from .result_channels import Result, ResultPublisher, ResultSubscription
from .stream import MediaStream
from .track import AudioTrack, MediaStreamTrack, VideoTrack

__all__ = [
    "AbortError",
    "AudioData",
    "AudioTrack",
    "ConstraintTypeError",
    "DeviceChangeEvent",
    "Event",
    "FrameOverwrittenError",
    "HoldLimitError",
    "InputDeviceInfo",
    "InvalidStateError",
    "MediaDeviceInfo",
    "MediaDevices",
    "MediaStream",
    "MediaStreamError",
    "MediaStreamTrack",
    "MediaStreamTrackEvent",
    "NotAllowedError",
    "NotFoundError",
    "NotReadableError",
    "OverconstrainedError",
    "ProtocolError",
    "ReadTimeoutError",
    "Result",
    "ResultPublisher",
    "ResultSubscription",
    "VideoFrame",
    "VideoTrack",
    "VideoTrackGenerator",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
