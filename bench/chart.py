"""The run's chart: latency and CPU against reader count and frame size (PNG)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: a file only
import matplotlib.pyplot as plt

from .specs import PACED_FPS, PATH_LABELS, TransportPath
from .targets import Results

__all__ = ["write_chart"]

PATHS: tuple[TransportPath, ...] = (
    "daemon", "daemon-async", "ring", "notify", "futex", "queue", "pyzmq", "imagezmq",
)  # fmt: skip
STYLE = {
    "daemon": "o-",
    "daemon-async": "o--",
    "daemon-pair": "x",
    "ring": "s-",
    "notify": "k--",
    "futex": "k:",
    "queue": "^:",
    "pyzmq": "v:",
    "imagezmq": "d:",
}


def _pick(options: list[Any], preferred: Any) -> Any:
    return preferred if preferred in options else (options[-1] if options else None)


def _readers_for_sizes(results: Results) -> int:
    """The ring's reader count with the most frame sizes measured (4 on a tie)."""
    counts = results.readers("ring") or [1]
    sizes = results.sizes("ring")

    def coverage(count: int) -> tuple[int, bool]:
        return sum(1 for s in sizes if results.get("ring", s, count)), count == 4

    return max(counts, key=coverage)


def _plot(axes: Any, points: list[tuple[float, float]], path: TransportPath) -> None:
    points = [(x, y) for x, y in points if not math.isnan(y)]
    if points:
        xs, ys = zip(*points, strict=True)
        axes.plot(xs, ys, STYLE[path], label=PATH_LABELS[path])


def _by_readers(results: Results, size: str, metric: str, axes: Any) -> None:
    for path in PATHS:
        cells = [results.get(path, size, n) for n in results.readers(path)]
        _plot(axes, [(c.cell.readers, getattr(c, metric)) for c in cells if c], path)
    axes.set_xlabel("reader processes")
    axes.set_xscale("log", base=2)
    axes.set_xticks([1, 2, 4, 8], ["1", "2", "4", "8"])


def _by_size(results: Results, readers: int, metric: str, axes: Any) -> None:
    for path in PATHS:
        if path in ("notify", "futex"):
            continue  # no frame
        cells = [results.get(path, size, readers) for size in results.sizes(path)]
        points = [(c.cell.width * c.cell.height / 1e6, getattr(c, metric)) for c in cells if c]
        _plot(axes, points, path)
    axes.set_xlabel("frame size")
    axes.set_xscale("log")
    sizes = results.sizes("ring") or results.sizes("daemon")
    ticks = [_megapixels(size) for size in sizes]
    axes.set_xticks(ticks, sizes, fontsize=8)
    axes.minorticks_off()


def _megapixels(size: str) -> float:
    width, height = size.split("x")
    return int(width) * int(height) / 1e6


def write_chart(path: Path, results: Results) -> None:
    size = _pick(results.sizes("ring"), "1920x1080")
    readers = _readers_for_sizes(results)
    figure, grid = plt.subplots(2, 2, figsize=(13, 9.5))
    panels: list[tuple[Any, str, str]] = [
        (grid[0][0], "p50_us", f"latency p50 (µs), {size} at {PACED_FPS:g} fps"),
        (grid[0][1], "total_us", f"total CPU per frame (µs), {size} at {PACED_FPS:g} fps"),
        (grid[1][0], "p50_us", f"latency p50 (µs), {readers} readers at {PACED_FPS:g} fps"),
        (grid[1][1], "reader_us", f"reader CPU per frame (µs), {readers} readers"),
    ]
    for index, (axes, metric, title) in enumerate(panels):
        if index < 2:
            _by_readers(results, size, metric, axes)
        else:
            _by_size(results, readers, metric, axes)
        axes.set_yscale("log")
        axes.set_title(title)
        axes.grid(True, which="both", alpha=0.3)
    grid[0][0].legend(fontsize=8)
    figure.suptitle(
        "mediabroker against the floor and against what people use (log scales; daemon "
        "latency counts from capture, the others from commit or send)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
