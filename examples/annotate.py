"""Annotate and republish: read a camera, draw on each frame, publish the
result as a camera of its own that any process can open.

The worker reads the camera at ``--width`` x ``--height``, draws into the
generator's next slot in place (``with gen.frame() as view``: no private
copy of the output), here a frame counter, the capture id and a box in the
middle, and publishes the generator as a device labelled
``"Annotated camera (from annotate.py, alice)"``. Any process can then
``getUserMedia({"video": {"deviceId": ...}})`` it, at any smaller size,
lower rate or other pixel format, or record it::

    $ python examples/annotate.py [--camera LABEL] [--width 640] [--height 480] [--frames N]
    {"deviceId": "3f2c...", "label": "Annotated camera (from annotate.py, alice)"}
    $ mediabroker record "Annotated camera" -o annotated.mp4 --duration 10

It writes ``--frames`` frames (0: until stopped), and stops on Ctrl-C or
SIGTERM (exit status 0). Publishing needs the daemon's permission
(``[access] publish_users``); without it, ``--no-publish`` keeps the
annotated track to this process.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

import cv2
import numpy as np

from mediastream import MediaDevices, MediaStreamError, ReadTimeoutError, VideoTrack

GREEN = (0, 255, 0)


def annotate(src: np.ndarray, out: np.ndarray, caption: str) -> None:
    """``src`` with a caption and a centred box, drawn into ``out`` (same shape)."""
    np.copyto(out, src)
    height, width = out.shape[:2]
    cv2.rectangle(out, (width // 4, height // 4), (3 * width // 4, 3 * height // 4), GREEN, 2)
    cv2.putText(out, caption, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, GREEN, 2)


def open_camera(md: MediaDevices, label: str | None, width: int, height: int) -> VideoTrack:
    video: dict[str, object] = {"width": {"exact": width}, "height": {"exact": height}}
    if label:
        matches = [d for d in md.enumerateDevices() if d.kind == "videoinput" and label in d.label]
        if not matches:
            raise SystemExit(f"no camera's label contains {label!r}")
        video["deviceId"] = {"exact": matches[0].deviceId}
    return md.getUserMedia({"video": video}).getVideoTracks()[0]


def run(args: argparse.Namespace, stop: threading.Event) -> int:
    with MediaDevices(name="annotate.py") as md:
        camera = open_camera(md, args.camera, args.width, args.height)
        rate = float(camera.getSettings()["frameRate"])
        init = {"width": args.width, "height": args.height, "frameRate": rate}
        init["label"] = "Annotated camera"
        with md.createVideoTrackGenerator(init, publish=not args.no_publish) as gen:
            gen.track.stop()  # we only write; readers are other processes
            found = {"deviceId": gen.deviceId, "label": gen.track.label}
            print(json.dumps(found), flush=True)
            written = 0
            while not stop.is_set() and (args.frames == 0 or written < args.frames):
                try:
                    frame = camera.read(timeout=1.0)
                except ReadTimeoutError:
                    continue
                with gen.frame(timestamp=frame.timestamp) as view:
                    annotate(frame.data, view, f"#{written} capture {frame.captureSeq}")
                written += 1
            if args.linger:
                stop.wait()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camera", help="part of the camera's label (default: the first)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=0, help="frames to write (0: until stopped)")
    parser.add_argument("--no-publish", action="store_true", help="do not publish as a device")
    parser.add_argument("--linger", action="store_true", help="after --frames, wait to be stopped")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        return run(args, stop)
    except MediaStreamError as exc:
        print(f"annotate: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
