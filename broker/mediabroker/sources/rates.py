"""What a source's writer did, measured by the daemon on the ring itself.

Design note. Every `SAMPLE_S` the daemon maps each ring and reads its
newest frame (seq and CLOCK_MONOTONIC ns; `RateBook.run`, one of the
daemon's loops), and each source's `FrameMeter` keeps the samples of the
last `RATE_WINDOW_S`. So the figures are the daemon's own, the same for
every observer, and cost nothing per frame (tens of microseconds a source
per sample). The book, not the source, holds the meters: a source knows
nothing of being measured.

Rate: the frames written between the window's first and last samples over
the time between those frames' own timestamps, so neither the daemon's
scheduling nor when somebody asks enters it. A newest frame older than
one frame interval (or `QUIET_GRACE_S`, whichever is longer) adds its
excess age: a ring that went quiet a second ago reads slower at once, one
quiet for a whole window reads 0. Three seconds smooth a camera's jitter
and still show a slowdown within seconds. Audio counts sample frames.

Drops: frames missing from the nominal rate's timeline while the source
is live. Between two live samples, the frames the span of their timestamps
holds at the nominal rate (rounded: jitter under half a period counts
nothing) less the frames written. A capture loop that falls a tick behind
skips it (`Clock`), a camera that cannot deliver in time leaves a gap, a
derived source that cannot keep up skips its parent's frames: each
counts. A camera that slows down by itself (auto exposure in low light)
counts as well, as the daemon cannot tell it apart. Restarts and
suspensions are not live, so their gaps do not count. Sources a producer
paces (generators) and audio have no timeline: what their backends count
as lost (a relay's torn staging frames, PortAudio's dropped blocks, in
sample frames) adds up instead, carried across capture processes so that
a restart does not lower the total (what a process counted after its last
sample before it died is lost).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mediastream.errors import NotReadableError
from mediastream.ring import Ring, VideoFormat, VideoReader

if TYPE_CHECKING:
    from mediabroker.sources.source import Source

__all__ = [
    "QUIET_GRACE_S",
    "RATE_WINDOW_S",
    "SAMPLE_S",
    "FrameMeter",
    "RateBook",
    "backend_dropped",
    "newest_frame",
]

RATE_WINDOW_S = 3.0
SAMPLE_S = 0.5  # six samples a window; drops are counted between two
QUIET_GRACE_S = 0.25  # a newest frame this old is no silence (audio blocks, slow rates)
NS_PER_S = 1_000_000_000


@dataclass(frozen=True, slots=True)
class _Sample:
    at_ns: int  # CLOCK_MONOTONIC when the daemon looked
    seq: int  # the ring's newest frame (audio: its cursor, in sample frames)
    ns: int  # that frame's CLOCK_MONOTONIC ns
    live: bool


def newest_frame(name: str, shm_dir: Path) -> tuple[int, int] | None:
    """Ring ``name``'s newest frame (audio: cursor) and its CLOCK_MONOTONIC ns,
    a consistent pair; None before the first frame, while the writer is
    mid-commit, or with no ring (not made yet, or gone)."""
    try:
        with Ring.open(name, shm_dir=shm_dir) as ring:
            return _newest(ring)
    except (OSError, NotReadableError):
        return None


def _newest(ring: Ring) -> tuple[int, int] | None:
    # The header stores the time, then the seq: read together they may not
    # match. A video frame's time comes from its slot (seqlocked), the audio
    # cursor's from the cursor's seqlock twin.
    if isinstance(ring.format, VideoFormat):
        frame = VideoReader(ring).newest()
        return (frame.seq, round(frame.timestamp * NS_PER_S)) if frame is not None else None
    header = ring.header
    cursor, cursor_ns = int(header["newest"]), int(header["newest_ns"])
    return (cursor, cursor_ns) if cursor_ns and int(header["newest_begin"]) == cursor else None


def backend_dropped(counters: Mapping[str, float]) -> int:
    """Frames a capture backend says it lost: a relay's ``dropped`` staging
    frames, PortAudio's ``droppedBlocks`` (times ``blockSize``: sample frames)."""
    blocks = counters.get("droppedBlocks", 0) * counters.get("blockSize", 0)
    return int(counters.get("dropped", 0) + blocks)


class FrameMeter:
    """One source's measured rate and drops (see the module's note). Not
    thread-safe: the daemon's loop feeds and reads it."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.timeline_drops = 0
        self._window_ns = int(window_s * NS_PER_S)
        self._samples: collections.deque[_Sample] = collections.deque()
        self._pid: int | None = None  # the capture process counting now
        self._stale: object = None  # the counters heard before it started
        self._backend_now = 0  # what the current capture process counted
        self._backend_before = 0  # what earlier ones counted, as last heard

    @property
    def dropped(self) -> int:
        return self.timeline_drops + self._backend_before + self._backend_now

    def sample(self, at_ns: int, seq: int, ns: int, *, live: bool, nominal_rate: float) -> None:
        """The ring's newest frame ``seq`` at ``ns``, seen at ``at_ns``;
        ``nominal_rate`` 0: no timeline, no drops counted here."""
        new = _Sample(at_ns, seq, ns, live)
        if self._samples and nominal_rate > 0:
            self.timeline_drops += _missing(self._samples[-1], new, nominal_rate)
        self._samples.append(new)
        while len(self._samples) > 2 and self._samples[1].at_ns <= at_ns - self._window_ns:
            self._samples.popleft()  # keep one sample at or before the window's start

    def backend_report(self, pid: int | None, counters: Mapping[str, float]) -> None:
        """The source's capture process and the counters it last heard. After
        a restart those are the old process's until the new one reports (each
        report is a new mapping)."""
        if pid != self._pid:
            self._backend_before += self._backend_now
            self._pid, self._stale, self._backend_now = pid, counters, 0
        elif counters is not self._stale:
            self._backend_now = max(self._backend_now, backend_dropped(counters))

    @property
    def rate(self) -> float | None:
        """Frames a second over the window; None before two samples."""
        if len(self._samples) < 2:
            return None
        first, last = self._samples[0], self._samples[-1]
        frames = last.seq - first.seq
        if frames <= 0:
            return 0.0
        framed_ns = last.ns - first.ns
        grace_ns = max(framed_ns / frames, QUIET_GRACE_S * NS_PER_S)
        span_ns = framed_ns + max(0.0, last.at_ns - last.ns - grace_ns)  # a quiet tail counts
        return frames * NS_PER_S / span_ns if span_ns > 0 else None


def _missing(old: _Sample, new: _Sample, nominal_rate: float) -> int:
    """Frames the nominal timeline holds between two live samples and the ring lacks."""
    if not (old.live and new.live) or new.seq <= old.seq or new.ns <= old.ns:
        return 0
    expected = round((new.ns - old.ns) * nominal_rate / NS_PER_S)
    return max(0, expected - (new.seq - old.seq))


class RateBook:
    """Every source's `FrameMeter`, by source id: `run` feeds them, the
    daemon's ``stats`` reads them."""

    def __init__(self, shm_dir: Path) -> None:
        self._shm_dir = shm_dir
        self._meters: dict[str, FrameMeter] = {}

    def meter(self, source_id: str) -> FrameMeter | None:
        """None: not sampled yet."""
        return self._meters.get(source_id)

    async def run(self, sources: Iterable[Source]) -> None:
        """Sample every source in ``sources`` every `SAMPLE_S` (runs until cancelled)."""
        while True:
            await asyncio.sleep(SAMPLE_S)  # a sampling period: no event marks the time to look
            self.sample(sources, time.monotonic_ns())

    def sample(self, sources: Iterable[Source], now_ns: int) -> None:
        """One look at each source; the meters of sources gone go too."""
        meters = {}
        for source in sources:
            meter = meters[source.id] = self._meters.get(source.id) or FrameMeter()
            if not source.state.finished:
                self._look(source, meter, now_ns)
        self._meters = meters

    def _look(self, source: Source, meter: FrameMeter, now_ns: int) -> None:
        # Live: neither muted nor finished. A producer's pace is no timeline, nor is audio's.
        meter.backend_report(source.pid, source.counters)
        newest = newest_frame(source.ring_name, self._shm_dir)
        if newest is None:
            return
        parent = source.parent
        produced = source.plan.produced or (parent is not None and parent.plan.produced)
        video = isinstance(source.format, VideoFormat)
        timeline = source.frame_rate if video and not produced else 0.0
        meter.sample(now_ns, *newest, live=not source.muted, nominal_rate=timeline)
