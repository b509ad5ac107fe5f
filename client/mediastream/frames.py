"""What a read returns: `VideoFrame` (a zero-copy view) and `AudioData`."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Protocol

import numpy as np

from .errors import FrameOverwrittenError
from .fences import fence

__all__ = ["AudioData", "VideoFrame", "black_frame"]

NS_PER_S = 1_000_000_000
# Slot header words (uint64): the seqlock pair, the two timestamps, then the
# camera frame this one was made from (its seq and monotonic ns).
SLOT_BEGIN, SLOT_END, SLOT_MONOTONIC_NS, SLOT_WALL_NS, SLOT_CAPTURE_SEQ, SLOT_CAPTURE_NS = range(6)
SLOT_WORDS = 6


class Hold(Protocol):
    """A reader's hold on one frame's slot (`mediastream.holds`)."""

    @property
    def active(self) -> bool: ...

    def release(self) -> None: ...


@dataclass(frozen=True, eq=False, slots=True)
class VideoFrame:
    """One video frame.

    ``data`` is a read-only numpy view into the ring's slot: no copy was made.
    It stays intact for a few frame intervals (the ring's unheld slots less
    one); after that the writer may reuse the slot. ``valid`` tells whether
    it is still intact and ``copy()`` gives a private copy that was verified
    intact. A frame read with ``hold=True`` stays intact until `release`
    (or the end of its ``with`` block).

    ``captureSeq`` and ``captureTimestamp`` name the camera frame this one
    was made from: the same on the camera's own track and on every size and
    format derived from it, so results on one line up with frames of another.
    """

    data: np.ndarray
    seq: int
    """This ring's frame number: consecutive on this track, not across tracks."""
    timestamp: float
    """Capture time, CLOCK_MONOTONIC seconds (`time.monotonic()` in any process)."""
    wall_time: float
    """Capture time, seconds since the epoch."""
    format: str
    captureSeq: int = 0
    """The camera frame's number, shared by every track of the camera."""
    captureTimestamp: float = 0.0
    """The camera frame's capture time, CLOCK_MONOTONIC seconds."""
    slot_header: np.ndarray | None = None
    """The slot's uint64 header words; None for frames that own their data."""
    hold: Hold | None = None
    """The hold keeping the slot intact (``read(hold=True)``), else None."""

    @property
    def held(self) -> bool:
        """True until a held frame is released."""
        return self.hold is not None and self.hold.active

    def release(self) -> None:
        """Let the writer reuse a held frame's slot. Idempotent; a no-op for
        frames that were not held. ``data`` may change after this."""
        if self.hold is not None:
            self.hold.release()

    def __enter__(self) -> VideoFrame:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def valid(self) -> bool:
        """True while the writer has not started to reuse this frame's slot.

        The writer stores the slot's begin number before it touches a pixel,
        so an unchanged begin number means the pixels are the ones captured
        (the fence orders the caller's reads of the pixels before this one).
        """
        if self.slot_header is None or self.held:
            return True  # a held slot's pixels are never written (mediastream.holds)
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
        return replace(self, data=data, slot_header=None, hold=None)

    def __repr__(self) -> str:
        shape = "x".join(str(n) for n in self.data.shape)
        held = " held" if self.held else ""
        return (
            f"<VideoFrame seq={self.seq} capture={self.captureSeq} {shape} {self.format}"
            f" t={self.timestamp:.6f}{held}>"
        )


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

    def release(self) -> None:
        """Nothing to release: audio blocks own their samples (so video and
        audio reads can be handled alike, ``with`` included)."""

    def __enter__(self) -> AudioData:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

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
    return replace(frame, data=data, slot_header=None, hold=None)
