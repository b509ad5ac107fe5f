"""A mediabroker daemon on fake devices for the bench: started, watched, stopped.

Readiness comes from the daemon over the systemd notify protocol (a datagram
socket the bench owns), as in the tests: no sleeps, no polling of files.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psutil

from mediabroker.launcher import ReadyListener, serve_command

from . import SOURCE_ROOTS

__all__ = ["BenchDaemon", "ProcessTree", "process_cpu_s"]

READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 15.0


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system, every thread, living or exited) of any process.

    The kernel's per-process CPU clock, as clock_getcpuclockid(3) names it:
    nanosecond resolution, where psutil's cpu_times tick at 10 ms (a third of
    a 30 fps frame). Raises ProcessLookupError when the process is gone.
    """
    try:
        return time.clock_gettime_ns(((~pid) << 3) | 2) / 1e9  # CPUCLOCK_SCHED of pid
    except OSError:
        raise ProcessLookupError(pid) from None


class ProcessTree:
    """CPU, RSS and open fds of a process and its descendants."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)

    def processes(self) -> list[psutil.Process]:
        try:
            return [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def cpu_parts(self) -> dict[str, float]:
        """CPU seconds by role: "main", "capture" (capture processes) and "other"
        (helpers such as PortAudio probes, living or already reaped).

        Living processes are read from their CPU clocks (ns); children the
        daemon has reaped only from its cumulative children times (10 ms
        ticks), so a helper that ends inside a window still counts.
        """
        parts = {"main": 0.0, "capture": 0.0, "other": 0.0}
        for process in self.processes():
            try:
                role = "main" if process.pid == self.root.pid else _role(process)
                cpu = process_cpu_s(process.pid)
            except (ProcessLookupError, psutil.NoSuchProcess):
                continue
            parts[role if role in parts else "other"] += cpu
        try:
            reaped = self.root.cpu_times()
            parts["other"] += reaped.children_user + reaped.children_system
        except psutil.NoSuchProcess:
            pass
        return parts

    def roles(self) -> dict[str, int]:
        """Pid by role: "daemon", "capture", "capture 2", ..., "resource-tracker"."""
        found: dict[str, int] = {}
        for process in self.processes():
            try:
                role = "daemon" if process.pid == self.root.pid else _role(process)
            except psutil.NoSuchProcess:
                continue
            name, n = role, 1
            while name in found:
                n += 1
                name = f"{role} {n}"
            found[name] = process.pid
        return found

    def memory(self) -> dict[int, tuple[str, int, int]]:
        """(name, RSS bytes, open fds) of each living process."""
        found = {}
        for process in self.processes():
            try:
                with process.oneshot():
                    role = "main" if process.pid == self.root.pid else _role(process)
                    found[process.pid] = (role, process.memory_info().rss, process.num_fds())
            except psutil.NoSuchProcess:
                continue
        return found


def _role(process: psutil.Process) -> str:
    command = " ".join(process.cmdline())
    if "resource_tracker" in command:
        return "resource-tracker"
    return "capture" if "spawn_main" in command else "helper"


class BenchDaemon:
    """``python -m mediabroker serve --fake-devices`` with its own run dir and prefix."""

    def __init__(self, work_dir: Path, prefix: str, idle_close_s: float) -> None:
        self.run_dir = work_dir / "run"
        self.prefix = prefix
        self.log_path = work_dir / "daemon.log"
        self._ready = ReadyListener(work_dir / "notify")
        self._log = open(self.log_path, "wb")  # closed in close()
        command = serve_command(self.run_dir, prefix, extra=("--idle-close", str(idle_close_s)))
        self.process = subprocess.Popen(
            command, env=self._env(), stdout=self._log, stderr=subprocess.STDOUT
        )
        self.tree = ProcessTree(self.process.pid)

    def _env(self) -> dict[str, str]:
        env = {**os.environ, **self._ready.env}
        paths = [*(str(root) for root in SOURCE_ROOTS), env.get("PYTHONPATH", "")]
        env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
        return env

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Block until the daemon says READY=1; raise RuntimeError with its log if not."""
        if self._ready.wait_for("READY=1", timeout) is None:
            raise RuntimeError(
                f"the daemon did not send READY=1 within {timeout:g} s "
                f"(exit status {self.process.poll()}); log:\n{self.log()}"
            )

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM, then SIGKILL after the deadline; returns the exit status. Idempotent."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait(5)

    def close(self) -> None:
        """Stop the daemon and release the notify socket and the log. Idempotent."""
        children = [p.pid for p in self.tree.processes()[1:]]
        self.stop()
        _kill_leftovers(children)
        self._log.close()
        self._ready.close()


def _kill_leftovers(pids: list[int]) -> None:
    """Capture processes exit on their own once the daemon is gone; make sure."""
    for pid in pids:
        try:
            process = psutil.Process(pid)
            process.wait(STOP_TIMEOUT_S)
        except psutil.NoSuchProcess:
            continue
        except psutil.TimeoutExpired:
            process.kill()
