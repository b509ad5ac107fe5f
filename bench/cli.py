"""``python -m bench``: run the plan, print and write the report."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import REPO
from .cells import CellError, bench_env, run_cell
from .derive import DeriveCost, measure_derive_costs
from .floors import CopyFloor, measure_copy_floor
from .plan import Plan, full_plan, quick_plan
from .specs import Cell, CellResult

__all__ = ["main"]

RESULTS_DIR = REPO / "bench" / "results"
ALL_PATHS = (
    "daemon", "daemon-async", "daemon-pair", "ring",
    "notify", "futex", "queue", "pyzmq", "imagezmq", "derive",
)  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="mediabroker against the physical floor and against what people use today.",
    )
    parser.add_argument("--quick", action="store_true", help="a subset that runs in under a minute")
    parser.add_argument(
        "--soak", type=float, metavar="SECONDS", help="soak: RSS and open fds at start and end"
    )
    parser.add_argument("--soak-readers", type=int, default=4, metavar="N")
    parser.add_argument(
        "--profile", action="store_true", help="profile the hot paths (py-spy) instead"
    )
    parser.add_argument(
        "--paths",
        default=",".join(ALL_PATHS),
        help=f"comma-separated subset of {','.join(ALL_PATHS)}",
    )
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="where results go")
    parser.add_argument(
        "--rerender",
        type=Path,
        metavar="JSON",
        help="write the report and chart again from a run's JSON, measuring nothing",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        if args.soak:
            from .soak import run_soak

            return run_soak(args.soak, args.soak_readers, args.out, command.strip())
        if args.rerender:
            return _rerender(args.rerender)
        if args.profile:
            from .profiling import run_profiles

            return run_profiles(args.out)
        return _run_benchmark(args, command.strip())
    except CellError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1


def _select(plan: Plan, paths: set[str]) -> Plan:
    return Plan(
        [c for c in plan.daemon_cells if c.path in paths],
        [c for c in plan.other_cells if c.path in paths],
        plan.paced_s,
        plan.flat_s,
        plan.floor_repeats,
        plan.floor_paced_repeats,
    )


def _run_benchmark(args: argparse.Namespace, command: str) -> int:
    from .chart import write_chart
    from .report import machine_info, render_markdown, write_json
    from .targets import Results, evaluate_targets

    plan = _select(quick_plan() if args.quick else full_plan(), set(args.paths.split(",")))
    started, load_before = time.monotonic(), os.getloadavg()[0]
    cells, floors, derive = run_plan(plan, derive="derive" in args.paths.split(","))
    settings: dict[str, Any] = {
        "command": command,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "paced_s": plan.paced_s,
        "flat_s": plan.flat_s,
        "elapsed_s": round(time.monotonic() - started, 1),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
    }
    results = Results(cells, floors, derive)
    targets = evaluate_targets(results)
    machine = machine_info()
    markdown = render_markdown(results, targets, machine, settings)
    stem = args.out / ("bench-quick" if args.quick else "bench")
    stem.with_suffix(".md").write_text(markdown)
    write_json(stem.with_suffix(".json"), results, targets, machine, settings)
    write_chart(stem.with_suffix(".png"), results)
    print(markdown)
    print(f"written: {stem}.md, .json, .png ({settings['elapsed_s']:g} s)", file=sys.stderr)
    return 0


def _rerender(path: Path) -> int:
    from .chart import write_chart
    from .report import load_json, render_markdown, write_json
    from .targets import evaluate_targets

    results, machine, settings = load_json(path)
    targets = evaluate_targets(results)
    markdown = render_markdown(results, targets, machine, settings)
    path.with_suffix(".md").write_text(markdown)
    write_json(path, results, targets, machine, settings)
    write_chart(path.with_suffix(".png"), results)
    print(markdown)
    return 0


def run_plan(
    plan: Plan, derive: bool = True
) -> tuple[list[CellResult], list[CopyFloor], list[DeriveCost]]:
    """Every cell of the plan, then the copy floors and (with ``derive``) the
    derive costs; progress goes to stderr."""
    results: list[CellResult] = []
    total = len(plan.cells)
    if plan.daemon_cells:
        with bench_env(with_daemon=True) as env:
            for cell in plan.daemon_cells:
                results.append(_progress(run_cell(env, cell), len(results) + 1, total))
    with bench_env(with_daemon=False) as env:
        for cell in plan.other_cells:
            results.append(_progress(run_cell(env, cell), len(results) + 1, total))
        floors = [
            measure_copy_floor(w, h, env.prefix, plan.floor_repeats, plan.floor_paced_repeats)
            for w, h in _frame_sizes(plan.cells)
        ]
        costs = measure_derive_costs(env.prefix, plan.floor_repeats) if derive else []
    return results, floors, costs


def _frame_sizes(cells: list[Cell]) -> list[tuple[int, int]]:
    return sorted({(c.width, c.height) for c in cells if c.width}, key=lambda s: s[0] * s[1])


def _progress(result: CellResult, done: int, total: int) -> CellResult:
    figures = (
        f"p50 {result.p50_us:,.0f} µs, p99 {result.p99_us:,.0f} µs, "
        f"reader {result.reader_us:,.0f} µs/f, producer {result.producer_us:,.0f} µs/f, "
        f"{result.fps_per_reader:,.0f} fps/reader, {result.dropped_pct:.0f}% dropped"
    )
    outcome = "FAILED: " + "; ".join(result.errors) if result.errors else figures
    print(f"[{done}/{total}] {result.cell.label}: {outcome}", file=sys.stderr, flush=True)
    return result
