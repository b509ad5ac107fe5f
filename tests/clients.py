"""Client processes for the tests: ``python tests/clients.py MODE RUN_DIR [ARGS]``.

Each prints JSON lines on stdout, so a test can follow it step by step.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading

from mediastream import MediaDevices, VideoFrame


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def read_frames(run_dir: str, width: str, height: str, count: str) -> None:
    """Read ``count`` frames; emit each frame's seq and a digest of its pixels."""
    with MediaDevices(run_dir, name="reader") as devices:
        constraints = {"video": {"width": int(width), "height": int(height)}}
        track = devices.getUserMedia(constraints).getVideoTracks()[0]
        emit(event="ready", track=track.id)
        for _ in range(int(count)):
            frame = track.read(timeout=5.0)
            assert isinstance(frame, VideoFrame)
            digest = hashlib.sha1(frame.data).hexdigest()
            emit(seq=frame.seq, digest=digest, valid=frame.valid, owndata=frame.data.flags.owndata)
        track.stop()


def hold(run_dir: str) -> None:
    """Take a camera and a microphone track, then wait until killed."""
    devices = MediaDevices(run_dir, name="holder")
    stream = devices.getUserMedia({"video": True, "audio": True})
    emit(event="ready", tracks=[t.id for t in stream.getTracks()])
    threading.Event().wait()


def publish(run_dir: str, name: str) -> None:
    """Publish a camera stream under ``name``, then wait until killed."""
    devices = MediaDevices(run_dir, name="publisher")
    devices.publishStream(devices.getUserMedia({"video": True}), name)
    emit(event="published")
    threading.Event().wait()


if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    {"read": read_frames, "hold": hold, "publish": publish}[mode](*args)
