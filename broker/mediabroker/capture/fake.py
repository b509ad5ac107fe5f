"""Fake devices, like browsers' fake media flags: a test-pattern camera and a
sine-tone microphone. The demo, the tests and the benchmarks run on them.

Each fake camera frame is ``(x + 2y + 3c + seq) mod 256`` with the frame's
sequence number and a checksum stamped into its first 16 bytes, so any reader
can tell which frame it holds and whether it is torn (`verify_pattern`).

With ``clock_code`` (opt-in: ``[devices] fake_clock_code``), the top half
of each frame also carries its capture wall-clock time as a barcode
(`paint_clock_code`), so a viewer on the same machine measures
capture-to-display latency from the pixels alone: through H.264, a resize
or a browser (tests/support/clockcode.js decodes the same layout). Such
frames fail `verify_pattern`; `pattern_seq` still works.
"""

from __future__ import annotations

import functools
import math
import struct
import time

import numpy as np

from mediabroker.capture.backend import Clock
from mediastream.ring import AudioFormat, VideoFormat

__all__ = [
    "FAKE_CAMERA_MAX",
    "FakeCamera",
    "FakeMicrophone",
    "clock_code_age_ms",
    "paint_clock_code",
    "pattern_seq",
    "read_clock_code",
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

    def __init__(
        self,
        fmt: VideoFormat,
        frame_rate: float,
        clock: Clock | None = None,
        *,
        clock_code: bool = False,
    ) -> None:
        self.format = fmt
        self.frame_rate = frame_rate
        self.clock_code = clock_code
        # The code is painted on height x width (x channels): planes moved last.
        self._planar = fmt.pixel_format.endswith("planar")
        self._base = _base_pattern(fmt.shape)
        self._clock = clock or Clock(frame_rate)

    def read_into(self, view: np.ndarray, seq: int) -> int:
        """Wait for the next frame time, render frame ``seq`` into ``view``;
        returns the capture time (CLOCK_MONOTONIC ns)."""
        captured_ns = self._clock.wait_next()
        np.add(self._base, seq & 0xFF, out=view, casting="unsafe")
        if self.clock_code:
            image = np.moveaxis(view, 0, -1) if self._planar else view
            paint_clock_code(image, time.time_ns() // 1_000_000)
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


# -- the clock code -------------------------------------------------------------
#
# A grid of CODE_COLS x CODE_ROWS cells over the top CODE_BAND of the frame,
# each cell's edges a fraction of the frame's size, so any scaled copy has
# the same grid. Cells are black (0) or white (255) in every channel; a
# reader averages the middle half of each cell (what survives blur, chroma
# subsampling and block artefacts) and thresholds it against four reference
# cells. 32 bits of CLOCK_REALTIME in ms (wraps every 49.7 days: a reader
# unwraps it against its own clock, `clock_code_age_ms`) plus one parity
# bit per byte, so a half-updated or misread cell gives None, not a lie.

CODE_COLS, CODE_ROWS = 8, 5
CODE_BAND = 0.5  # of the frame's height, from the top
CODE_BITS = 32
_WHITE_CELLS = (0, CODE_COLS * CODE_ROWS - 1)  # top left, bottom right
_BLACK_CELLS = (CODE_COLS - 1, CODE_COLS * (CODE_ROWS - 1))  # top right, bottom left
_REFERENCE_CELLS = frozenset(_WHITE_CELLS + _BLACK_CELLS)
_DATA_CELLS = tuple(i for i in range(CODE_COLS * CODE_ROWS) if i not in _REFERENCE_CELLS)
MIN_CONTRAST = 96  # white minus black reference, of 255: less is no code at all
_MARGIN = 0.25  # of the contrast: a cell nearer the threshold than this is unreadable


def _code_bits(value: int) -> list[int]:
    """The 36 data cells: 32 bits, most significant first, then each byte's odd parity."""
    value &= (1 << CODE_BITS) - 1
    bits = [(value >> (CODE_BITS - 1 - i)) & 1 for i in range(CODE_BITS)]
    parity = [1 - sum(bits[b * 8 : b * 8 + 8]) % 2 for b in range(CODE_BITS // 8)]
    return bits + parity


def _cell_box(index: int, width: int, height: int, inner: bool) -> tuple[slice, slice]:
    """Rows and columns of cell ``index``; ``inner``: its middle half only."""
    row, col = divmod(index, CODE_COLS)
    band = height * CODE_BAND
    y0, y1 = band * row / CODE_ROWS, band * (row + 1) / CODE_ROWS
    x0, x1 = width * col / CODE_COLS, width * (col + 1) / CODE_COLS
    if inner:
        dy, dx = (y1 - y0) / 4, (x1 - x0) / 4
        y0, y1, x0, x1 = y0 + dy, y1 - dy, x0 + dx, x1 - dx
    rows = slice(round(y0), max(round(y1), round(y0) + 1))
    return rows, slice(round(x0), max(round(x1), round(x0) + 1))


def paint_clock_code(image: np.ndarray, wall_ms: int) -> None:
    """Paint ``wall_ms`` (its low 32 bits) as the clock code into ``image``
    (height x width, or height x width x channels), in place."""
    height, width = image.shape[:2]
    cells = dict(zip(_DATA_CELLS, _code_bits(wall_ms), strict=True))
    cells.update({i: 1 for i in _WHITE_CELLS} | {i: 0 for i in _BLACK_CELLS})
    for index, bit in cells.items():
        image[_cell_box(index, width, height, inner=False)] = 255 if bit else 0


def read_clock_code(image: np.ndarray) -> int | None:
    """The 32-bit clock code in ``image`` (any scaled copy of a painted
    frame, grey or with channels), or None when there is none or a cell or
    a parity bit is unreadable."""
    height, width = image.shape[:2]
    cells = range(CODE_COLS * CODE_ROWS)
    level = [float(image[_cell_box(i, width, height, inner=True)].mean()) for i in cells]
    white = min(level[i] for i in _WHITE_CELLS)
    black = max(level[i] for i in _BLACK_CELLS)
    if white - black < MIN_CONTRAST:
        return None
    threshold, margin = (white + black) / 2, (white - black) * _MARGIN
    if any(abs(level[i] - threshold) < margin for i in _DATA_CELLS):
        return None
    bits = [int(level[i] > threshold) for i in _DATA_CELLS]
    value = int("".join(map(str, bits[:CODE_BITS])), 2)
    return value if _code_bits(value) == bits else None


def clock_code_age_ms(code: int, now_ms: int | None = None) -> int:
    """How long ago (ms, negative if ahead) the clock code ``code`` was
    painted, against ``now_ms`` (CLOCK_REALTIME ms; default: now)."""
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    age = (now - code) % (1 << CODE_BITS)
    return age - (1 << CODE_BITS) if age >= 1 << (CODE_BITS - 1) else age


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
