"""The file's clock: frames placed on a constant-rate time grid.

A video file plays at one rate, but frames do not arrive on a grid: a
camera runs a little slow or fast, a busy recorder misses frames (the
track gives the newest one), a scheduler delays one. Each frame is placed
by its capture timestamp at slot ``round((timestamp - first) * fps)``:
slots no frame reached are filled with the frame before (counted as
*repeated*), and a frame whose slot is already filled is left out (counted
as *dropped*, with the frames the recorder never read, seen as gaps in
``seq``). So the file keeps real time and the counts say what it cost.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Placement", "Timeline"]


class Placement(NamedTuple):
    """What to write for one frame: ``repeats`` copies of the previous frame
    (filling the slots no frame reached), then this frame when ``write``."""

    repeats: int
    write: bool


class Timeline:
    """Slots of a ``fps`` file, at most ``limit`` of them (None: no end).

    ``slots`` is the number of frames in the file so far, ``repeated`` how
    many of them repeat the frame before, ``dropped`` how many frames of the
    source are not in it.
    """

    def __init__(self, fps: float, limit: int | None = None) -> None:
        self.fps = fps
        self.limit = limit
        self.slots = self.repeated = self.dropped = 0
        self._start: float | None = None
        self._last_seq: int | None = None

    def __repr__(self) -> str:
        return (
            f"<Timeline {self.fps:g} fps slots={self.slots} repeated={self.repeated} "
            f"dropped={self.dropped}>"
        )

    @property
    def full(self) -> bool:
        """True once ``limit`` slots are filled."""
        return self.limit is not None and self.slots >= self.limit

    @property
    def seconds(self) -> float:
        """The file's duration so far."""
        return self.slots / self.fps

    def place(self, timestamp: float, seq: int) -> Placement:
        """Place the frame captured at ``timestamp`` (seconds) with ring
        number ``seq``; counts the frames the reader skipped before it."""
        self._count_missed(seq)
        if self._start is None:
            self._start = timestamp
        slot = round((timestamp - self._start) * self.fps)
        if slot < self.slots:
            self.dropped += 1  # its slot already holds a frame
            return Placement(0, False)
        repeats = slot - self.slots
        if self.limit is not None:
            repeats = min(repeats, self.limit - self.slots)
        self.slots += repeats
        self.repeated += repeats
        if self.full:
            return Placement(repeats, False)
        self.slots += 1
        return Placement(repeats, True)

    def _count_missed(self, seq: int) -> None:
        # seq numbers one ring; it restarts when the track moves to another
        # source (applyConstraints, a re-opened camera), which misses nothing.
        if self._last_seq is not None and seq > self._last_seq:
            self.dropped += seq - self._last_seq - 1
        self._last_seq = seq
