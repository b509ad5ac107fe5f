"""A face detector on a shared camera: the ML worker the README describes.

The model is scikit-image's LBP frontal-face cascade, whose file ships in the
scikit-image wheel (``pip install -e '.[examples]'``); the OpenCV 5 wheels
have neither OpenCV's cascade files nor ``cv2.CascadeClassifier``. The worker
asks the daemon for the model's input (letterboxed float RGB at ``--size``),
holds each frame while the model runs, and prints one JSON line per frame
with the faces ``[x, y, width, height]`` in camera pixels::

    $ python examples/face_detector.py [--camera LABEL] [--size 320] [--frames N]
    {"captureSeq": 14, "boxes": [[644.0, 96.0, 136.0, 136.0]], "inferenceMs": 104.3}

It stops after ``--frames`` frames, or on Ctrl-C or SIGTERM (exit status 0).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from typing import Any

import numpy as np
from skimage import data, feature

from mediastream import MediaDevices, MediaStreamError, NotFoundError, ReadTimeoutError, VideoTrack

Box = tuple[float, float, float, float]  # x, y, width, height
LUMA = np.array([0.2125, 0.7154, 0.0721], np.float32)  # skimage.color.rgb2gray's weights


class FaceDetector:
    """scikit-image's LBP frontal-face cascade on float RGB frames. Slow: about
    0.1 s per 320x320 frame on a small VM, in this process."""

    def __init__(self, smallest: float = 0.08) -> None:
        self._cascade = feature.Cascade(data.lbp_frontal_face_cascade_filename())
        self._smallest = smallest  # faces narrower than this fraction of the frame are skipped

    def __call__(self, rgb: np.ndarray) -> list[Box]:
        """Faces in ``rgb`` (H x W x 3 float32 in [0, 1]), in its pixels."""
        gray = rgb @ LUMA  # one pass over the frame into the one array the cascade needs
        side = min(gray.shape)
        least = max(24, int(side * self._smallest))  # 24: the cascade's window
        found = self._cascade.detect_multi_scale(
            img=gray, scale_factor=1.2, step_ratio=1, min_size=(least, least), max_size=(side, side)
        )
        return [(d["c"], d["r"], d["width"], d["height"]) for d in found]


def to_camera(box: Box, settings: dict[str, Any]) -> Box:
    """``box`` in a delivered frame, in camera pixels (the README's two lines)."""
    crop, content = settings["cropRect"], settings["contentRect"]
    sx, sy = crop["width"] / content["width"], crop["height"] / content["height"]
    x, y, w, h = box
    return crop["x"] + (x - content["x"]) * sx, crop["y"] + (y - content["y"]) * sy, w * sx, h * sy


def open_camera(devices: MediaDevices, label: str, size: int) -> VideoTrack:
    """A letterboxed float RGB track at ``size`` x ``size`` on the first camera
    whose label contains ``label``. Raises `NotFoundError` if none does."""
    cameras = [d for d in devices.enumerateDevices() if d.kind == "videoinput"]
    chosen = next((d for d in cameras if label in d.label), None)
    if chosen is None:
        raise NotFoundError(f"no camera label contains {label!r}: {[d.label for d in cameras]}")
    video = {
        "deviceId": {"exact": chosen.deviceId},
        "width": {"exact": size},
        "height": {"exact": size},
        "resizeMode": "letterbox",  # the whole picture, padded black: no face cropped away
        "pixelFormat": "rgbf32",
    }
    return devices.getUserMedia({"video": video}).getVideoTracks()[0]


def detect(track: VideoTrack, detector: FaceDetector, frames: int, stop: threading.Event) -> None:
    """Print one JSON line per frame until ``frames`` (0: no limit) or ``stop``."""
    done = 0
    while not stop.is_set() and (frames == 0 or done < frames):
        try:
            frame = track.read(timeout=1.0, hold=True)
        except ReadTimeoutError:
            continue  # no frame this second: look at ``stop`` again
        with frame:  # the writer skips this slot until the block ends: no copy, no tearing
            started = time.perf_counter()
            boxes = detector(frame.data)
            elapsed_ms = (time.perf_counter() - started) * 1000
            # Still held here: cut the faces out of frame.data, or find the
            # full-size frame with this captureSeq on a native track.
            settings = track.getSettings()
            line = {
                "captureSeq": frame.captureSeq,
                "boxes": [[round(v, 1) for v in to_camera(box, settings)] for box in boxes],
                "inferenceMs": round(elapsed_ms, 1),
            }
        print(json.dumps(line), flush=True)
        done += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camera", default="", help="part of the camera's label (default: first)")
    parser.add_argument("--size", type=int, default=320, help="model input side, pixels")
    parser.add_argument("--frames", type=int, default=0, help="stop after N frames (0: never)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    # The handlers only record; the loop stops between frames.
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        detector = FaceDetector()
        with MediaDevices(name="face-detector") as devices:
            track = open_camera(devices, args.camera, args.size)
            detect(track, detector, args.frames, stop)
            track.stop()
    except MediaStreamError as exc:  # no daemon, no such camera, the camera went away...
        print(f"face_detector: {exc.name}: {exc}", file=sys.stderr)
        return 1
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
