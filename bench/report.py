"""The run's report: a markdown table with ratios side by side, and JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import zmq

from .derive import DeriveCost
from .floors import CopyFloor
from .specs import DAEMON_PATHS, MEDIABROKER_PATHS, PATH_LABELS, PEER_PATHS, Cell, CellResult
from .targets import Results, Target

__all__ = ["load_json", "machine_info", "render_markdown", "write_json"]

LATENCY_FROM = {
    "daemon": "capture",  # the ring's slot timestamp: before the frame is rendered
    "daemon-async": "capture",
    "daemon-pair": "capture",
    "ring": "commit",
    "notify": "send",
    "futex": "send",
    "queue": "send",
    "pyzmq": "send",
    "imagezmq": "send",
}


def machine_info() -> dict[str, str]:
    cpu = _cpu_model()
    memory_gib = psutil.virtual_memory().total / 2**30
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "memory": f"{memory_gib:.1f} GiB",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyzmq": f"{zmq.pyzmq_version()} (libzmq {zmq.zmq_version()})",
        "imagezmq": _version("imagezmq"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


# -- formatting ----------------------------------------------------------------


def _us(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.1f}" if value < 10 else f"{value:,.0f}"


def _times(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return "-"
    return f"{value:.2f}x" if value < 10 else f"{value:,.0f}x"


def _ratio(a: float, b: float) -> float:
    return a / b if b and not (math.isnan(a) or math.isnan(b)) else math.nan


def _table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _figures(r: CellResult, results: Results) -> list[str]:
    return [
        f"{r.fps_per_reader:,.0f}",
        f"{r.dropped_pct:.1f}%",
        _us(r.p50_us),
        _us(r.p99_us),
        _us(r.reader_us),
        _us(r.producer_us),
        _us(r.total_us),
        _marginal(results, r.cell),
    ]


def _marginal(results: Results, cell: Cell) -> str:
    found = results.marginal(cell.path, cell.size, cell.readers, cell.fps)
    if found is None:
        return "-"
    fewer, cost = found
    return f"{cost:,.0f} ({fewer}→{cell.readers})" if abs(cost) >= 10 else f"{cost:.1f}"


FIGURE_HEADER = [
    "fps/reader",
    "dropped",
    "p50 µs",
    "p99 µs",
    "reader µs/f",
    "producer µs/f",
    "total µs/f",
    "marginal µs/f",
]


# -- the tables ----------------------------------------------------------------


def _ours_rows(results: Results) -> Iterable[list[str]]:
    for r in results.cells:
        c = r.cell
        if c.path not in MEDIABROKER_PATHS or r.errors:
            continue
        floor = results.floors.get(c.size)
        notify = results.get("notify", "-", c.readers, c.fps)
        copy = floor.copy_for(c.fps) if floor else math.nan
        row = [c.path, c.size, str(c.readers), c.mode, *_figures(r, results)]
        row.append(_times(_ratio(r.producer_us, copy)))
        p50, p99, mark = r.p50_us, r.p99_us, ""
        if c.path in DAEMON_PATHS:  # from capture: take the frame's render out, roughly
            p50, p99 = commit_latency_estimate(r, floor)
            mark = "≈"
        futex = results.get("futex", "-", c.readers, c.fps)
        against = [
            (p50, notify.p50_us if notify else math.nan),
            (p99, notify.p99_us if notify else math.nan),
            (p50, futex.p50_us if futex else math.nan),
        ]
        for value, floor_value in against:
            if math.isnan(floor_value):
                row.append("-")
            elif value <= 0:  # the render estimate exceeds the latency: no estimate
                row.append("≈?")
            else:
                row.append(mark + _times(_ratio(value, floor_value)))
        for peer in PEER_PATHS:
            theirs = results.get(peer, c.size, c.readers, c.fps)
            row.append(_peer_ratio(r, theirs))
        yield row


def commit_latency_estimate(result: CellResult, floor: CopyFloor | None) -> tuple[float, float]:
    """A daemon row's (p50, p99) from commit rather than capture: less the
    median time the fake camera takes to render a frame at 30 fps."""
    render = floor.paced_render_us if floor else math.nan
    return result.p50_us - render, result.p99_us - render


def _peer_ratio(ours: CellResult, theirs: CellResult | None) -> str:
    if theirs is None:
        return "-"
    cpu = _ratio(theirs.total_us, ours.total_us)
    latency = _ratio(theirs.p50_us, ours.p50_us)
    return f"{_times(cpu)} · {_times(latency)}"


def _baseline_rows(results: Results) -> Iterable[list[str]]:
    for r in results.cells:
        c = r.cell
        if c.path in MEDIABROKER_PATHS:
            continue
        if r.errors:
            yield [PATH_LABELS[c.path], c.size, str(c.readers), c.mode, "failed: " + r.errors[0]]
            continue
        yield [PATH_LABELS[c.path], c.size, str(c.readers), c.mode, *_figures(r, results)]


def _floor_rows(floors: list[CopyFloor]) -> Iterable[list[str]]:
    for f in floors:
        yield [
            f.size,
            _us(f.copy_us),
            _us(f.paced_copy_us),
            _us(f.render_us),
            _us(f.paced_render_us),
            f"{f.gbytes_per_s:.1f}",
        ]


def _failures(results: Results) -> list[str]:
    failed = [r for r in results.cells if r.errors and r.cell.path in MEDIABROKER_PATHS]
    return [f"- {r.cell.label}: {'; '.join(r.errors)}" for r in failed]


def _target_lines(targets: list[Target]) -> list[str]:
    marks = {True: "holds", False: "MISSES", None: "not measured"}
    return [f"- **{marks[t.holds]}**: {t.name}: {t.detail}" for t in targets]


def _derive_section(costs: list[DeriveCost]) -> list[str]:
    if not costs:
        return []
    rows = [
        [c.source_size, c.size, c.pixel_format, c.resize_mode, "yes" if c.normalize else "no",
         _us(c.us)]
        for c in costs
    ]  # fmt: skip
    return [
        "## Derive: one camera frame into a derived slot (`FrameConverter`)",
        "",
        "Median wall time per frame, back to back, into an 8-slot pre-faulted ring.",
        "",
        *_table(["camera", "size", "pixelFormat", "resizeMode", "normalize", "µs"], rows),
        "",
    ]


def render_markdown(
    results: Results, targets: list[Target], machine: dict[str, str], settings: dict[str, Any]
) -> str:
    ours_header = ["path", "size", "readers", "rate", *FIGURE_HEADER]
    ours_header += ["producer ÷ copy", "p50 ÷ notify", "p99 ÷ notify", "p50 ÷ futex"]
    ours_header += [f"{PATH_LABELS[p]} ÷ this (CPU · p50)" for p in PEER_PATHS]
    lines = [
        "# mediabroker benchmark",
        "",
        "Machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()),
        "",
        f"Command: `{settings['command']}` ({settings['date']}, {settings['elapsed_s']:g} s); "
        f"window per cell: {settings['paced_s']:g} s at 30 fps, {settings['flat_s']:g} s flat out; "
        f"1-minute load average before the run {settings['load_before']:g} (other processes "
        f"competing for the same cores), after it {settings['load_after']:g}.",
        "",
        "## mediabroker",
        "",
        "`daemon` rows: a `mediabroker serve --fake-devices` daemon, readers use "
        "`getUserMedia` + `track.read()` (`daemon-async`: `asyncio.run`, "
        "`await track.aread()`); latency from the slot's capture timestamp "
        "(includes rendering the frame; the ≈ ratios against the notification take the "
        "median render time at 30 fps out). `ring` rows: the capture loop's code on a ring "
        "the bench writes itself (the fake camera stops at 1920x1080, and runs only paced); "
        "readers use `SourceReader`, the object behind `track.read()`; latency from commit.",
        "",
        *_table(ours_header, _ours_rows(results)),
        "",
        "marginal µs/f: what one more consumer costs, (total(N) - total(n)) / (N - n) with n "
        "the next smaller reader count measured (daemon and every reader included).",
        *(["", "Failed cells:", *_failures(results)] if _failures(results) else []),
        "",
        "## Baselines: the floor and what people use today",
        "",
        "Latency from the moment the producer holds the complete frame (sends) to the "
        "moment the reader holds the numpy array.",
        "",
        *_table(["baseline", "size", "readers", "rate", *FIGURE_HEADER], _baseline_rows(results)),
        "",
        "## Floor: one frame into pre-faulted shared memory (8-slot ring)",
        "",
        *_table(
            ["size", "copy µs", "copy at 30 fps µs", "render µs", "render at 30 fps µs", "GB/s"],
            _floor_rows(list(results.floors.values())),
        ),
        "",
        *_derive_section(results.derive),
        "## Targets (measured, not asserted)",
        "",
        *_target_lines(targets),
        "",
    ]
    return "\n".join(lines)


def _cell_json(result: CellResult, results: Results) -> dict[str, Any]:
    data = dataclasses.asdict(result)
    cell = data.pop("cell")
    data.update(cell)
    data["size"] = result.cell.size
    data["latency_from"] = LATENCY_FROM[result.cell.path]
    c = result.cell
    found = results.marginal(c.path, c.size, c.readers, c.fps)
    if found is not None:
        data["marginal_from_readers"], data["marginal_us"] = found
    if result.cell.path in DAEMON_PATHS:
        floor = results.floors.get(result.cell.size)
        p50, p99 = commit_latency_estimate(result, floor)
        data["p50_from_commit_estimate_us"], data["p99_from_commit_estimate_us"] = p50, p99
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in data.items()}


def write_json(
    path: Path,
    results: Results,
    targets: list[Target],
    machine: dict[str, str],
    settings: dict[str, Any],
    extra: dict[str, Any] | None = None,
) -> None:
    document = {
        "machine": machine,
        "settings": settings,
        "floors": [dataclasses.asdict(f) for f in results.floors.values()],
        "cells": [_cell_json(r, results) for r in results.cells],
        "derive": [dataclasses.asdict(c) for c in results.derive],
        "targets": [dataclasses.asdict(t) for t in targets],
        **(extra or {}),
    }
    path.write_text(json.dumps(document, indent=1) + "\n")


def load_json(path: Path) -> tuple[Results, dict[str, str], dict[str, Any]]:
    """A run's results back from its JSON, to render the report again."""
    document = json.loads(path.read_text())
    cell_fields = {f.name for f in dataclasses.fields(Cell)}
    result_fields = {f.name for f in dataclasses.fields(CellResult)} - {"cell"}
    cells = []
    for data in document["cells"]:
        cell = Cell(**{k: v for k, v in data.items() if k in cell_fields})
        figures: dict[str, Any] = {
            k: math.nan if v is None else v for k, v in data.items() if k in result_fields
        }
        cells.append(CellResult(cell, **figures))
    floors = [CopyFloor(**floor) for floor in document["floors"]]
    derive = [DeriveCost(**cost) for cost in document.get("derive", [])]
    return Results(cells, floors, derive), document["machine"], document["settings"]
