"""``python -m bench --profile``: where the hot paths spend their time.

Each cell runs twice. First alone, for the CPU per frame of every thread of
each process (``/proc/PID/task/TID/schedstat``, which also sees ZeroMQ's
native I/O threads and the client's helper threads). Then under py-spy
(``--nonblocking``: it never stops its target, so idle threads stay idle
and the cell runs undisturbed) for the Python stacks that are on a CPU,
summed by function; time in C shows on the Python function that called it.
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .cells import BenchEnv, bench_env, run_cell
from .specs import PACED_FPS, Cell, CellResult

__all__ = ["run_profiles"]

SAMPLE_RATE_HZ = 250
PROFILE_S = 6.0
TOP = 14
_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")
_SKIP = ("<module>", "_bootstrap", "_bootstrap_inner", "run (threading.py)", "_main", "spawn_main")


def thread_cpu_s(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of ``pid``, by "name tid" (ZeroMQ names its threads)."""
    found = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            name = "main" if task.name == str(pid) else (task / "comm").read_text().strip()
            run_ns = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError):
            continue  # the thread exited
        found[f"{name} {task.name}"] = run_ns / 1e9
    return found


@dataclass
class _ThreadWatch:
    """Samples every thread's CPU time of the processes whose role matches."""

    roles: tuple[str, ...]
    threads: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

    def __call__(self, edge: str, pids: dict[str, int]) -> None:
        for role, pid in pids.items():
            if role in self.roles:
                try:
                    self.threads.setdefault(role, {})[edge] = thread_cpu_s(pid)
                except FileNotFoundError:
                    continue


@dataclass
class _SpyWatch:
    """Starts py-spy on the processes whose role matches, at the window's start."""

    roles: tuple[str, ...]
    out: Path
    tag: str
    spies: dict[str, tuple[subprocess.Popen[bytes], Path]] = field(default_factory=dict)

    def __call__(self, edge: str, pids: dict[str, int]) -> None:
        if edge != "start":
            return
        for role, pid in pids.items():
            if role in self.roles:
                self.spies[role] = self._spy(role, pid)

    def _spy(self, role: str, pid: int) -> tuple[subprocess.Popen[bytes], Path]:
        output = self.out / f"profile-{self.tag}-{role.replace(' ', '-')}.txt"
        command = ["py-spy", "record", "--pid", str(pid), "--duration", str(int(PROFILE_S - 1))]
        command += ["--rate", str(SAMPLE_RATE_HZ), "--format", "raw", "--nonblocking"]
        command += ["--output", str(output)]
        spy = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return spy, output

    def finish(self) -> dict[str, tuple[str, Path]]:
        """Wait for py-spy; (its complaint if any, the stacks file) per role."""
        outcome = {}
        for role, (spy, output) in self.spies.items():
            _, stderr = spy.communicate(timeout=PROFILE_S + 30)
            outcome[role] = ("" if spy.returncode == 0 else stderr.decode()[-300:], output)
        return outcome


def _function(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    return f"{match['name']} ({Path(match['file']).name})"


def summarize_stacks(path: Path) -> tuple[int, list[tuple[str, int]], list[tuple[str, int]]]:
    """(samples, top functions by self samples, top by inclusive samples)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        functions = [_function(f) for f in stack.split(";")]
        total += count
        own[functions[-1]] += count
        for function in set(functions):
            if not function.startswith(_SKIP):
                inclusive[function] += count
    return total, own.most_common(TOP), inclusive.most_common(TOP)


def _thread_lines(role: str, sampled: dict[str, dict[str, float]], frames: float) -> list[str]:
    start, end = sampled.get("start", {}), sampled.get("end", {})
    lines = [f"CPU per frame by thread of {role} (over {frames:,.0f} frames):", ""]
    for thread, cpu in sorted(end.items(), key=lambda item: item[1] - start.get(item[0], 0.0)):
        used = cpu - start.get(thread, 0.0)
        if used > 0:
            lines.append(f"- `{thread}`: {used / frames * 1e6:,.1f} µs")
    return [*lines, ""]


def _stack_lines(role: str, problem: str, output: Path) -> list[str]:
    if problem or not output.exists():
        return [f"py-spy on {role} failed: {problem or 'no output'}", ""]
    total, own, inclusive = summarize_stacks(output)
    lines = [f"py-spy, {role}: {total} on-CPU samples; self time:", ""]
    lines += [f"- {count / total:6.1%} `{name}`" for name, count in own]
    lines += ["", "inclusive time:", ""]
    lines += [f"- {count / total:6.1%} `{name}`" for name, count in inclusive]
    return [*lines, ""]


def _profile_cell(env: BenchEnv, cell: Cell, roles: tuple[str, ...], out: Path) -> list[str]:
    tag = f"{cell.path}-{cell.size}-x{cell.readers}-{'paced' if cell.fps else 'flat'}"
    threads = _ThreadWatch(roles)
    result: CellResult = run_cell(env, cell, threads)
    spies = _SpyWatch(roles, out, tag)
    spied = run_cell(env, cell, spies)
    outcome = spies.finish()
    frames = max(result.produced_fps * cell.duration_s, 1.0)
    errors = "; ".join(result.errors + spied.errors) or "none"
    lines = [f"## {cell.label}", "", f"Errors: {errors}", ""]
    for role in roles:
        if role in threads.threads:
            lines += _thread_lines(role, threads.threads[role], frames)
        if role in outcome:
            lines += _stack_lines(role, *outcome[role])
    return lines


def run_profiles(out: Path) -> int:
    if shutil.which("py-spy") is None:
        print("bench: --profile needs py-spy (pip install py-spy)", file=sys.stderr)
        return 1
    lines = ["# mediabroker hot-path profiles", "", __doc__ or "", ""]
    with bench_env(with_daemon=True) as env:
        for path in ("daemon", "daemon-async"):
            for readers in (1, 8):
                cell = Cell(path, 1920, 1080, readers, PACED_FPS, PROFILE_S)
                lines += _profile_cell(env, cell, ("daemon", "capture", "reader 0"), out)
    with bench_env(with_daemon=False) as env:
        for cell in (
            Cell("ring", 1920, 1080, 4, PACED_FPS, PROFILE_S),
            Cell("ring", 1920, 1080, 1, 0.0, PROFILE_S),
            Cell("notify", 0, 0, 4, PACED_FPS, PROFILE_S),
            Cell("futex", 0, 0, 4, PACED_FPS, PROFILE_S),
        ):
            lines += _profile_cell(env, cell, ("writer", "reader 0"), out)
    (out / "profile.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0
