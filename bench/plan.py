"""Which cells a run measures: the full matrix, or the quick subset."""

from __future__ import annotations

from dataclasses import dataclass

from .futex import futex_available
from .specs import PACED_FPS, PEER_PATHS, Cell, TransportPath

__all__ = ["SIZES", "Plan", "full_plan", "quick_plan"]

SIZES = ((640, 480), (1280, 720), (1920, 1080), (3840, 2160))
READER_COUNTS = (1, 2, 4, 8)
PAIR_COUNTS = (2, 8)  # daemon-pair: half read(), half aread(), on the same frames
DAEMON_MAX_PIXELS = 1920 * 1080  # the fake camera's largest mode (FAKE_CAMERA_MAX)
FULL_HD = (1920, 1080)
FLOOR_PATHS: tuple[TransportPath, ...] = ("notify", "futex") if futex_available() else ("notify",)


@dataclass(frozen=True, slots=True)
class Plan:
    daemon_cells: list[Cell]
    other_cells: list[Cell]
    paced_s: float
    flat_s: float
    floor_repeats: int
    floor_paced_repeats: int

    @property
    def cells(self) -> list[Cell]:
        return self.daemon_cells + self.other_cells


def _cells(
    path: TransportPath,
    sizes: tuple[tuple[int, int], ...],
    readers: tuple[int, ...],
    rates: tuple[float, ...],
    paced_s: float,
    flat_s: float,
) -> list[Cell]:
    return [
        Cell(path, width, height, count, fps, paced_s if fps else flat_s)
        for fps in rates
        for width, height in sizes
        for count in readers
    ]


def full_plan(paced_s: float = 2.0, flat_s: float = 1.0) -> Plan:
    """Every size, reader count and rate; the daemon only where its camera goes
    (up to 1920x1080, paced)."""
    rates = (PACED_FPS, 0.0)
    daemon_sizes = tuple(s for s in SIZES if s[0] * s[1] <= DAEMON_MAX_PIXELS)
    daemon = [
        cell
        for path in ("daemon", "daemon-async")
        for cell in _cells(path, daemon_sizes, READER_COUNTS, (PACED_FPS,), paced_s, flat_s)
    ]
    daemon += _cells("daemon-pair", (FULL_HD,), PAIR_COUNTS, (PACED_FPS,), paced_s, flat_s)
    others = _cells("ring", SIZES, READER_COUNTS, rates, paced_s, flat_s)
    for floor in FLOOR_PATHS:
        others += _cells(floor, ((0, 0),), READER_COUNTS, rates, paced_s, flat_s)
    for peer in PEER_PATHS:
        others += _cells(peer, SIZES, READER_COUNTS, rates, paced_s, flat_s)
    return Plan(daemon, others, paced_s, flat_s, floor_repeats=40, floor_paced_repeats=20)


def quick_plan(window_s: float = 1.0) -> Plan:
    """1080p at 30 fps with 1, 4 and 8 readers (`read()` and `aread()` on the
    daemon, the ring, the floors; peers: 1 and 4, for the marginal cost of a
    consumer), and what the targets need besides: `read()` and `aread()`
    readers on the same frames (2 and 8), 640x480 and 4K rings, one flat-out
    ring."""
    paced = (PACED_FPS,)
    counts = (1, 4, 8)
    daemon = [
        cell
        for path in ("daemon", "daemon-async")
        for cell in _cells(path, (FULL_HD,), counts, paced, window_s, window_s)
    ]
    daemon += _cells("daemon-pair", (FULL_HD,), PAIR_COUNTS, paced, window_s, window_s)
    others = _cells("ring", ((640, 480), FULL_HD, (3840, 2160)), (1,), paced, window_s, window_s)
    others += _cells("ring", (FULL_HD,), (4, 8), paced, window_s, window_s)
    others += _cells("ring", (FULL_HD,), (1,), (0.0,), window_s, window_s)
    for floor in FLOOR_PATHS:
        others += _cells(floor, ((0, 0),), counts, paced, window_s, window_s)
    for peer in PEER_PATHS:
        others += _cells(peer, (FULL_HD,), (1, 4), paced, window_s, window_s)
    return Plan(daemon, others, window_s, window_s, floor_repeats=20, floor_paced_repeats=8)
