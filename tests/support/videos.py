"""Real video files for tests, written with OpenCV.

MJPG in AVI works in the headless OpenCV wheel. Only the test process loads
OpenCV for this: a daemon reading the file probes and decodes it in its own
children.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np


def write_video(path: Path, width: int, height: int, frames: int = 10, fps: float = 25.0) -> Path:
    """An MJPG AVI of ``frames`` frames (a gradient with a moving bar, so that
    frames differ), written beside ``path`` and renamed onto it: a daemon
    that scans ``path`` meanwhile sees the old file or the new one, never half
    of one. Returns ``path``."""
    partial = path.with_name(f".{path.name}.partial{path.suffix}")
    writer = cv2.VideoWriter(str(partial), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write MJPG here"
    y, x = np.mgrid[:height, :width]
    for index in range(frames):
        image = np.zeros((height, width, 3), np.uint8)
        image[..., 0] = (x * 255 // width).astype(np.uint8)
        image[..., 1] = (y * 255 // height).astype(np.uint8)
        bar = index * width // frames
        image[:, bar : bar + max(1, width // frames), 2] = 255
        writer.write(image)
    writer.release()
    os.replace(partial, path)
    return path
