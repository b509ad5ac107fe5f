"""Fake devices, like browsers' fake media flags: a test-pattern camera and a
sine-tone microphone. The demo, the tests and the benchmarks run on them.

Each fake camera frame is ``(x + 2y + 3c + seq) mod 256`` with the frame's
sequence number and a checksum stamped into its first 16 bytes, so any reader
can tell which frame it holds and whether it is torn (`verify_pattern`).
"""

from __future__ import annotations

import functools
import math
import struct

import numpy as np

from mediabroker.capture.backend import Clock
from mediastream.ring import AudioFormat, VideoFormat

__all__ = [
    "FAKE_CAMERA_MAX",
    "FakeCamera",
    "FakeMicrophone",
    "pattern_seq",
    "verify_pattern",
]

FAKE_CAMERA_MAX = (1920, 1080, 30.0)  # width, height, frames per second
TONE_HZ = 440.0
TONE_AMPLITUDE = 0.25
_STAMP = struct.Struct("<QQ")  # seq, seq ^ checksum key
_STAMP_KEY = 0x5A5A_F00D_C0DE_BEEF


@functools.lru_cache(maxsize=8)
def _base_pattern(shape: tuple[int, ...]) -> np.ndarray:
    """Frame 0's pixels, read-only and cached: computing them costs 90 % of
    a `verify_pattern` (9 ms at 640x480), and every frame of a size needs them."""
    height, width = shape[0], shape[1]
    channels = shape[2] if len(shape) == 3 else 1
    y, x, c = np.ogrid[:height, :width, :channels]
    pattern: np.ndarray = ((x + 2 * y + 3 * c) % 256).astype(np.uint8).reshape(shape)
    pattern.flags.writeable = False
    return pattern


class FakeCamera:
    """Renders the test pattern for frame ``seq`` straight into a slot view."""

    def __init__(self, fmt: VideoFormat, frame_rate: float, clock: Clock | None = None) -> None:
        self.format = fmt
        self.frame_rate = frame_rate
        self._base = _base_pattern(fmt.shape)
        self._clock = clock or Clock(frame_rate)

    def read_into(self, view: np.ndarray, seq: int) -> int:
        """Wait for the next frame time, render frame ``seq`` into ``view``;
        returns the capture time (CLOCK_MONOTONIC ns)."""
        captured_ns = self._clock.wait_next()
        np.add(self._base, seq & 0xFF, out=view, casting="unsafe")
        if view.size >= _STAMP.size:  # a frame under 16 bytes carries the pattern only
            stamp = _STAMP.pack(seq, seq ^ _STAMP_KEY)
            view.reshape(-1)[: _STAMP.size] = np.frombuffer(stamp, np.uint8)
        return captured_ns

    def close(self) -> None:
        pass


def pattern_seq(data: np.ndarray) -> int | None:
    """The frame number stamped into a fake camera frame, or None if the stamp is bad."""
    if data.size < _STAMP.size:
        return None
    seq, check = _STAMP.unpack(data.reshape(-1)[: _STAMP.size].tobytes())
    return seq if check == seq ^ _STAMP_KEY else None


def verify_pattern(data: np.ndarray) -> bool:
    """True when every pixel is the pattern of the frame number stamped in it:
    a torn frame (two frames mixed) fails."""
    seq = pattern_seq(data)
    if seq is None:
        return False
    expected = _base_pattern(data.shape) + np.uint8(seq & 0xFF)
    flat, want = data.reshape(-1), expected.reshape(-1)
    return bool(np.array_equal(flat[_STAMP.size :], want[_STAMP.size :]))


class FakeMicrophone:
    """A continuous sine tone, delivered in real-time-paced blocks."""

    def __init__(self, fmt: AudioFormat, block_frames: int = 480) -> None:
        self.format = fmt
        self.block_frames = block_frames
        self._clock = Clock(fmt.sample_rate / block_frames)
        self._position = 0

    def counters(self) -> dict[str, float]:
        return {
            "latency": self.block_frames / self.format.sample_rate,
            "blockSize": self.block_frames,
        }

    def read_block(self) -> tuple[np.ndarray, int]:
        """Wait for the next block; returns (frames x channels float32, time of
        its first sample in CLOCK_MONOTONIC ns)."""
        captured_ns = self._clock.wait_next()
        n = np.arange(self._position, self._position + self.block_frames)
        self._position += self.block_frames
        tone = TONE_AMPLITUDE * np.sin(2 * math.pi * TONE_HZ / self.format.sample_rate * n)
        block = np.repeat(tone.astype(np.float32)[:, None], self.format.channels, axis=1)
        return block, captured_ns - self.block_frames * 1_000_000_000 // self.format.sample_rate

    def close(self) -> None:
        pass
