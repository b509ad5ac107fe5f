"""What a read returns: `VideoFrame` (a zero-copy view) and `AudioData`."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .errors import FrameOverwrittenError
from .fences import fence

__all__ = ["AudioData", "VideoFrame", "black_frame"]

NS_PER_S = 1_000_000_000
# Slot header words (uint64): the seqlock pair, then the two timestamps.
SLOT_BEGIN, SLOT_END, SLOT_MONOTONIC_NS, SLOT_WALL_NS = range(4)


@dataclass(frozen=True, eq=False, slots=True)
class VideoFrame:
    """One video frame.

    ``data`` is a read-only numpy view into the ring's slot: no copy was made.
    It stays intact for at least (slots - 1) frame intervals; after that the
    writer may reuse the slot. ``valid`` tells whether it is still intact and
    ``copy()`` gives a private copy that was verified intact.
    """

    data: np.ndarray
    seq: int
    timestamp: float
    """Capture time, CLOCK_MONOTONIC seconds (`time.monotonic()` in any process)."""
    wall_time: float
    """Capture time, seconds since the epoch."""
    format: str
    slot_header: np.ndarray | None = None
    """The slot's uint64 header words; None for frames that own their data."""

    @property
    def valid(self) -> bool:
        """True while the writer has not started to reuse this frame's slot.

        The writer stores the slot's begin number before it touches a pixel,
        so an unchanged begin number means the pixels are the ones captured
        (the fence orders the caller's reads of the pixels before this one).
        """
        if self.slot_header is None:
            return True
        fence()
        return int(self.slot_header[SLOT_BEGIN]) == self.seq

    def copy(self) -> VideoFrame:
        """A private, writable copy, checked intact after copying.

        Raises `FrameOverwrittenError` when the writer reused the slot before
        the copy was complete: read a newer frame instead.
        """
        data = self.data.copy()
        if not self.valid:
            raise FrameOverwrittenError(
                f"frame {self.seq} was overwritten while it was copied; "
                "copy sooner or give the ring more slots"
            )
        return VideoFrame(data, self.seq, self.timestamp, self.wall_time, self.format)

    def __repr__(self) -> str:
        shape = "x".join(str(n) for n in self.data.shape)
        return f"<VideoFrame seq={self.seq} {shape} {self.format} t={self.timestamp:.6f}>"


@dataclass(frozen=True, eq=False, slots=True)
class AudioData:
    """A block of audio samples: ``data`` is (frames, channels) float32, owned."""

    data: np.ndarray
    sampleRate: int
    timestamp: float
    """Capture time of the first sample, CLOCK_MONOTONIC seconds."""
    position: int
    """Index of the first sample since the source started (per channel)."""

    @property
    def numberOfFrames(self) -> int:
        return int(self.data.shape[0])

    @property
    def numberOfChannels(self) -> int:
        return int(self.data.shape[1])

    @property
    def duration(self) -> float:
        """Seconds of audio in this block."""
        return self.numberOfFrames / self.sampleRate

    def __repr__(self) -> str:
        return (
            f"<AudioData {self.numberOfFrames}x{self.numberOfChannels} "
            f"{self.sampleRate} Hz t={self.timestamp:.6f}>"
        )


@lru_cache(maxsize=8)
def _zeros(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    array = np.zeros(shape, dtype)
    array.flags.writeable = False
    return array


def black_frame(frame: VideoFrame) -> VideoFrame:
    """The spec's zero-information content for a disabled track: all zeros.

    One shared read-only array per shape, so a disabled track costs no copy.
    """
    data = _zeros(frame.data.shape, frame.data.dtype.str)
    return VideoFrame(data, frame.seq, frame.timestamp, frame.wall_time, frame.format)
