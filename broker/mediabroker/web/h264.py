"""H.264 for WebRTC through PyAV's libx264: what one shared encoder runs.

Design note. Settings for a live picture on two CPUs, not for a file:
``ultrafast`` + ``zerolatency`` (no lookahead, no B-frames: a frame leaves
the encoder as soon as it went in) costs 5 ms a 640x480 frame here, where
aiortc's own encoder leaves x264 at its default preset (20 ms; see
DESIGN-NEXT A2b). Constrained Baseline, which every browser and OBS decode
(``profile-level-id=42e01f`` in their offers). ``forced-idr`` makes a
requested keyframe an IDR with SPS/PPS in front, which a viewer that just
joined can start from; a GOP of `GOP_SECONDS` is the safety net for a lost
keyframe request.
"""

from __future__ import annotations

import fractions
import time
from typing import Any, TypeAlias

import av
import av.video.frame
import cv2
import numpy as np

__all__ = ["RTP_CLOCK_HZ", "EncodedPacket", "H264Encoder", "bitrate_for", "to_i420"]

EncodedPacket: TypeAlias = "av.Packet[Any]"  # from an encoder: no stream of a container
RTP_CLOCK_HZ = 90_000  # video RTP timestamps (RFC 6184)
GOP_SECONDS = 2.0
BITS_PER_PIXEL = 0.1  # at 30 fps: 1 Mbit/s for 640x480, 2.8 for 1280x720
MIN_BITRATE, MAX_BITRATE = 300_000, 6_000_000


def bitrate_for(width: int, height: int, frame_rate: float) -> int:
    """Bits per second for a picture of this size and rate."""
    wanted = width * height * max(frame_rate, 1.0) * BITS_PER_PIXEL
    return int(min(max(wanted, MIN_BITRATE), MAX_BITRATE))


def to_i420(bgr: np.ndarray) -> np.ndarray:
    """A bgr24 (or gray8) picture as I420 (yuv420p) planes, cropped to even
    sides (4:2:0 halves both). A new array: the ring's slot may be
    overwritten after this returns."""
    height, width = bgr.shape[0] & ~1, bgr.shape[1] & ~1
    picture = bgr[:height, :width]
    if picture.ndim == 2 or picture.shape[2] == 1:
        picture = cv2.cvtColor(picture, cv2.COLOR_GRAY2BGR)
    i420: np.ndarray = cv2.cvtColor(picture, cv2.COLOR_BGR2YUV_I420)
    return i420


def _level(width: int, height: int) -> str:
    return "31" if width * height <= 1280 * 720 else "40"  # 3.1: 720p30, 4.0: 1080p30


class H264Encoder:
    """One libx264 context; made again when the picture's size changes."""

    def __init__(self, frame_rate: float) -> None:
        self.frame_rate = frame_rate
        self._context: av.VideoCodecContext | None = None
        self._fresh = True  # a new context starts with a keyframe
        self.frames = 0
        self.keyframes = 0
        self.seconds = 0.0  # wall time spent encoding (x264 runs threads of its own)

    def encode(self, i420: np.ndarray, pts: int, keyframe: bool) -> list[EncodedPacket]:
        """Packets for one I420 picture (height*3/2 x width) with ``pts`` in
        1/90000 s; ``keyframe`` forces an IDR."""
        started = time.perf_counter()
        width, height = i420.shape[1], i420.shape[0] * 2 // 3
        context = self._context_for(width, height)
        frame = av.VideoFrame.from_ndarray(i420, format="yuv420p")
        frame.pts = pts
        frame.time_base = fractions.Fraction(1, RTP_CLOCK_HZ)
        if keyframe or self._fresh:
            self._fresh = False
            frame.pict_type = av.video.frame.PictureType.I
        packets = list(context.encode(frame))
        self.frames += 1
        self.keyframes += sum(1 for p in packets if p.is_keyframe)
        self.seconds += time.perf_counter() - started
        return packets

    def _context_for(self, width: int, height: int) -> av.VideoCodecContext:
        context = self._context
        if context is not None and (context.width, context.height) == (width, height):
            return context
        self.close()
        context = av.CodecContext.create("libx264", "w")
        assert isinstance(context, av.VideoCodecContext)
        context.width, context.height = width, height
        context.pix_fmt = "yuv420p"
        context.time_base = fractions.Fraction(1, RTP_CLOCK_HZ)
        context.framerate = fractions.Fraction(round(self.frame_rate * 1000), 1000)
        context.bit_rate = bitrate_for(width, height, self.frame_rate)
        context.gop_size = max(1, round(GOP_SECONDS * self.frame_rate))
        context.profile = "Baseline"
        context.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "level": _level(width, height),
            "forced-idr": "1",
        }
        self._context = context
        self._fresh = True
        return context

    def close(self) -> None:
        self._context = None  # PyAV frees the codec with the object

    def __repr__(self) -> str:
        return f"<H264Encoder frames={self.frames} keyframes={self.keyframes}>"
