"""Opens the backend a `BackendSpec` names, in a capture process.

Each driver is imported only when a capture process opens it: the daemon
imports this module (through `mediabroker.capture.main`, the capture
process's entry point) and must not load OpenCV or PortAudio by doing so.
The drivers import the seam (`mediabroker.capture.backend`), never this
module, so the lazy imports make no cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mediabroker.capture.backend import RELAY_DRIVER, AudioBackend, BackendSpec, VideoBackend
from mediabroker.errors import CaptureError
from mediastream.ring import AudioFormat, VideoFormat

if TYPE_CHECKING:
    from mediabroker.capture.readers import ReaderChannel

__all__ = ["open_audio_backend", "open_video_backend"]


def open_video_backend(
    spec: BackendSpec, fmt: VideoFormat, frame_rate: float, readers: ReaderChannel | None = None
) -> VideoBackend:
    """The video backend ``spec`` names, open. ``readers`` is the capture
    process's reader channel (a relay takes its staging ring from it).
    Raises `CaptureError`."""
    if spec.driver == "fake-camera":
        from mediabroker.capture.fake import FakeCamera

        return FakeCamera(fmt, frame_rate, clock_code=bool(spec.params.get("clock_code")))
    if spec.driver == "file":
        from mediabroker.capture.files import FileCamera

        return FileCamera(fmt, frame_rate, spec.params["path"], loop=bool(spec.params["loop"]))
    if spec.driver == "network":
        from mediabroker.capture.network import NetworkCamera

        return NetworkCamera(fmt, frame_rate, str(spec.params["url"]))
    if spec.driver == "v4l2":
        from mediabroker.capture.v4l2 import V4L2Camera
        from mediabroker.devices.v4l2 import Mode

        return V4L2Camera(
            fmt,
            frame_rate,
            spec.params["node"],
            label=str(spec.params["label"]),
            identity=tuple(spec.params["identity"]),
            modes=[Mode.from_list(m) for m in spec.params["modes"]],
        )
    if spec.driver == "derived":
        from mediabroker.capture.derived import DerivedCamera

        return DerivedCamera(fmt, frame_rate, spec.params)
    if spec.driver == RELAY_DRIVER:
        from mediabroker.capture.readers import ReaderChannel
        from mediabroker.capture.relay import RelayCamera

        return RelayCamera(fmt, frame_rate, spec.params, readers or ReaderChannel(None))
    raise CaptureError(f"unknown video driver {spec.driver!r}")


def open_audio_backend(spec: BackendSpec, fmt: AudioFormat) -> AudioBackend:
    """The audio backend ``spec`` names, open. Raises `CaptureError`."""
    if spec.driver == "fake-microphone":
        from mediabroker.capture.fake import FakeMicrophone

        return FakeMicrophone(fmt)
    if spec.driver == "portaudio":
        from mediabroker.capture.portaudio import PortAudioMicrophone

        return PortAudioMicrophone(fmt, spec.params["name"], spec.params["hostapi"])
    raise CaptureError(f"unknown audio driver {spec.driver!r}")
