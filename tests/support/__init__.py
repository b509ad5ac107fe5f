"""Test helpers: waiting on conditions, and a real daemon in a process of its own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, TypeVar

import psutil

from mediabroker.launcher import ReadyListener, serve_command
from mediastream.ring import SHM_DIR

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
FIGURES: dict[str, float] = {}  # for the README: printed at the end of the run (conftest)


def add_figure(name: str, amount: float) -> None:
    """Add ``amount`` to the run's figure ``name`` (faults injected, frames checked...)."""
    FIGURES[name] = FIGURES.get(name, 0) + amount


def wait_until(
    predicate: Callable[[], T], timeout: float, what: str, seen: Callable[[], object] | None = None
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail with what was seen.

    Only for conditions in other processes that offer nothing to block on.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            observed = seen() if seen is not None else result
            raise AssertionError(
                f"timed out after {timeout:g} s waiting for {what}; saw {observed!r}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def segments(prefix: str) -> list[str]:
    return sorted(p.name for p in SHM_DIR.glob(prefix + "*"))


def unique_prefix() -> str:
    return f"mbtest{os.getpid()}-{uuid.uuid4().hex[:8]}."


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(REPO / "broker"), str(REPO / "client"), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env.update(extra)
    return env


class Daemon:
    """``mediabroker serve --fake-devices`` in its own process, own run dir and prefix.

    Readiness comes from the daemon itself over the systemd notify protocol
    (a datagram socket this object owns), not from polling. ``config`` is the
    TOML text of its configuration file (always given, so a machine's
    /etc/mediabroker/config.toml never leaks into a test); ``log_level`` None
    leaves the level to that file. ``wrapper`` is a command that execs the
    daemon's (e.g. ``unshare`` into a mount namespace); it must not fork, so
    that `pid` stays the daemon's.

    Every daemon between construction and `close` is in `LIVE`: the accounting
    fixture leaves alone the segments and children of one that outlives a test.
    """

    LIVE: ClassVar[set[Daemon]] = set()

    def __init__(
        self,
        run_dir: Path,
        *extra_args: str,
        idle_close: float = 0.3,
        prefix: str | None = None,
        config: str = "",
        log_level: str | None = "DEBUG",
        wrapper: Sequence[str] = (),
        hardware: bool = False,
    ) -> None:
        self.run_dir = run_dir
        self.config_path = run_dir.parent / f"{run_dir.name}-config.toml"
        self.config_path.write_text(config)
        self.prefix = prefix or unique_prefix()
        self.log_path = run_dir.parent / f"{run_dir.name}-daemon.log"
        self._ready = ReadyListener(run_dir.parent / f"{run_dir.name}-notify")
        self._log = open(self.log_path, "wb")
        options = (
            "--config",
            str(self.config_path),
            *([] if hardware else ["--no-hardware"]),  # only tests of real devices probe them
            "--idle-close",
            str(idle_close),
            *extra_args,
        )
        command = [
            *wrapper,
            *serve_command(run_dir, self.prefix, log_level=log_level, extra=options),
        ]
        self.process = subprocess.Popen(
            command,
            env=child_env(**self._ready.env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.children: set[int] = set()
        Daemon.LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 15.0) -> None:
        self.wait_notification("READY=1", timeout)

    def wait_notification(self, wanted: str, timeout: float) -> str:
        message = self._ready.wait_for(wanted, timeout)
        if message is None:
            raise AssertionError(
                f"daemon did not send {wanted} within {timeout:g} s; sent {self._ready.seen}; "
                f"exit status {self.process.poll()}; log:\n{self.log()}"
            )
        return message

    def note_children(self) -> set[int]:
        """Remember the daemon's current children, to check they are gone later."""
        try:
            self.children |= {c.pid for c in psutil.Process(self.pid).children(recursive=True)}
        except psutil.NoSuchProcess:
            pass
        return self.children

    def terminate(self, timeout: float = 15.0) -> int:
        self.note_children()
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.note_children()
        self.process.kill()
        self.process.wait(5)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def living_children(self) -> list[int]:
        return [
            pid
            for pid in self.children
            if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        ]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self._log.close()
        self._ready.close()
        Daemon.LIVE.discard(self)


class ClientProcess:
    """``tests/support/clients.py`` (or another ``script`` there, such as
    attackers.py) in a process of its own, followed line by line. ``wrapper``
    is a command that execs it (``nsenter`` into a namespace)."""

    def __init__(
        self,
        mode: str,
        run_dir: Path,
        *args: object,
        wrapper: Sequence[str] = (),
        script: str = "clients.py",
    ) -> None:
        import json
        import queue
        import threading

        self._json = json
        path = REPO / "tests" / "support" / script
        command = [*wrapper, sys.executable, str(path), mode, str(run_dir)]
        self.process = subprocess.Popen(
            command + [str(a) for a in args],
            env=child_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next(self, timeout: float = 15.0) -> dict[str, object]:
        """The next JSON line; fails with the client's stderr if there is none."""
        import queue

        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            raise AssertionError(
                f"client gave no line within {timeout:g} s; "
                f"status {self.process.poll()}; stderr:\n{self.stderr()}"
            )
        result: dict[str, object] = self._json.loads(line)
        return result

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return "(still running)"
        return self.process.stderr.read()

    def wait(self, timeout: float = 15.0) -> int:
        return self.process.wait(timeout)

    def release(self) -> None:
        """Send the line a holding client waits for before it lets go."""
        assert self.process.stdin is not None
        self.process.stdin.write("go\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(5)

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def run_mediabroker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``python -m mediabroker ARGS`` from this checkout, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "mediabroker", *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@contextmanager
def held_open(path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real process (``sleep``) holding ``path`` open, as ffmpeg would hold
    a camera; created empty if missing."""
    if not path.exists():
        path.write_bytes(b"")
    with open(path, "rb") as stdin:
        process = subprocess.Popen(["sleep", "60"], stdin=stdin)
    try:
        yield process
    finally:
        process.kill()
        process.wait(5)
