"""``mediabroker demo``: a daemon on fake devices and consumers sharing its camera.

Each consumer is its own process, as an ML worker, a recorder or a preview
would be, and each asks for what it needs: the recorder the camera's full
size and every frame, a worker a 320x320 letterboxed float tensor (and is
slow, so it skips frames), a preview a small picture at 5 fps. They read
frames zero-copy and report to the demo twice a second; the demo asks the
daemon for its own figures (rings, CPU, memory) as ``mediabroker stats``
does, and shows both in one table (`mediabroker.cli.demo_view`). At the end
it stops everything and checks that nothing is left in /dev/shm.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import replace
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier, Event
from pathlib import Path
from typing import Any, BinaryIO

from mediabroker.cli.demo_view import (
    LEGEND,
    Report,
    Screen,
    consumer_header,
    consumer_row,
    live_block,
    summary_lines,
)
from mediabroker.cli.inspect import StatsSample, stats_report, take_sample
from mediabroker.cli.options import (
    EXIT_FAILED,
    EXIT_OK,
    add_command,
    positive_int,
    positive_seconds,
)
from mediabroker.launcher import ReadyListener, serve_command
from mediastream import MediaDevices, MediaStreamTrack, VideoFrame
from mediastream.ring import SHM_DIR

__all__ = ["ROLES", "add_parser", "consumer_constraints", "run_demo"]

REPORT_S = 0.5  # each consumer's report, and the table's redraw on a terminal
PLAIN_EVERY = 2  # not on a terminal: consumer lines every 2 reports (1 s)
CPU_WINDOW = 2  # on a terminal: CPU % over the last 2 reports (1 s)
DAEMON_START_S = 10.0
CONSUMER_START_S = 30.0  # for every consumer to have its track (spawn, imports, a capture start)
WORKER_INFERENCE_S = 0.08  # the worker's stand-in for a model: ~12 inferences a second
ROLES = ("recorder", "worker", "preview", "worker")  # consumer i plays ROLES[i % 4]


def add_parser(commands: Any) -> None:
    """The ``demo`` sub-command (it runs a daemon, so it logs as one)."""
    demo = add_command(
        commands,
        "demo",
        "run a daemon on fake devices and consumers that share its camera",
        "Start a daemon on fake devices in a temporary run dir, run consumer processes\n"
        "that share its camera (a recorder at full size, ML workers on a 320x320 float\n"
        "tensor, a small preview at 5 fps) and show what each reads and what the\n"
        "daemon and its rings cost; then stop everything and check that nothing is\n"
        "left in /dev/shm. On a terminal the table is redrawn in place.",
    )
    demo.add_argument(
        "--consumers",
        type=positive_int,
        default=4,
        help="consumer processes (default 4: recorder, worker, preview, worker)",
    )
    demo.add_argument(
        "--duration", type=positive_seconds, default=10.0, help="seconds to run (default 10)"
    )
    demo.add_argument("--width", type=positive_int, default=1280)
    demo.add_argument("--height", type=positive_int, default=720)
    demo.set_defaults(func=_demo, client=False)


def _demo(args: argparse.Namespace) -> int:
    return run_demo(args.consumers, args.duration, args.width, args.height)


def run_demo(consumers: int, duration_s: float, width: int, height: int) -> int:
    """Run the demo; 0 when the daemon stopped cleanly and left no segment."""
    screen = Screen(sys.stdout)
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mediabroker-demo-") as work:
        run_dir, prefix = Path(work) / "run", f"mbdemo{os.getpid()}."
        log_path = Path(work) / "daemon.log"
        with ReadyListener(Path(work) / "notify") as listener, open(log_path, "wb") as log:
            daemon = _start_daemon(run_dir, prefix, listener, log)
            try:
                if listener.wait_for("READY=1", DAEMON_START_S) is None:
                    raise SystemExit(
                        f"the daemon did not get ready within {DAEMON_START_S:g} s "
                        f"(exit status {daemon.poll()}): {_tail(log_path)}"
                    )
                failed = _run_consumers(screen, run_dir, consumers, duration_s, width, height)
            finally:
                daemon.send_signal(signal.SIGTERM)
                code = daemon.wait(timeout=15)
        left = sorted(p.name for p in SHM_DIR.glob(prefix + "*"))
        if code != 0:
            print(f"the daemon's log ends: {_tail(log_path)}")
    if failed:
        print(f"consumers that failed: {', '.join(failed)} (their errors are above)")
    print(f"daemon exited with status {code}; segments left in {SHM_DIR}: {len(left)}")
    return EXIT_OK if code == 0 and not left and not failed else EXIT_FAILED


def _start_daemon(
    run_dir: Path, prefix: str, listener: ReadyListener, log: BinaryIO
) -> subprocess.Popen[bytes]:
    # The demo needs no probe of real cameras and microphones. Its log goes to
    # a file: lines between the table's redraws would break them.
    command = serve_command(run_dir, prefix, extra=("--no-hardware", "--idle-close", "0.5"))
    print("starting:", " ".join(command[1:]))
    return subprocess.Popen(
        command, env={**os.environ, **listener.env}, stdout=log, stderr=subprocess.STDOUT
    )


def _tail(path: Path, lines: int = 5) -> str:
    return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])


# -- the consumers --------------------------------------------------------------------


def consumer_constraints(role: str, width: int, height: int) -> dict[str, Any]:
    """What a consumer of ``role`` asks for, on a ``width`` x ``height`` camera."""
    if role == "recorder":
        return {"width": width, "height": height}
    if role == "worker":  # never larger than the camera: a derived source does not scale up
        side = min(320, width, height)
        return {
            "width": {"exact": side},
            "height": {"exact": side},
            "resizeMode": "letterbox",
            "pixelFormat": "rgbf32",
        }
    if role == "preview":
        return {"width": max(2, width // 4), "height": max(2, height // 4), "frameRate": 5}
    raise ValueError(f"unknown demo role {role!r}: one of {sorted(set(ROLES))}")


def _names(count: int) -> list[tuple[str, str]]:
    """(role, name) of each consumer: recorder-1, worker-1, preview-1, worker-2..."""
    seen: dict[str, int] = {}
    names = []
    for i in range(count):
        role = ROLES[i % len(ROLES)]
        seen[role] = seen.get(role, 0) + 1
        names.append((role, f"{role}-{seen[role]}"))
    return names


def _run_consumers(
    screen: Screen, run_dir: Path, count: int, duration_s: float, width: int, height: int
) -> list[str]:
    """Run the consumers and show what they report; the names of those that failed.

    They read together: each gets its track, waits at a barrier for the
    others, then reads for ``duration_s`` (so a slow start, as on a loaded
    machine, shortens nobody's run).
    """
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    opened, together = ctx.Event(), ctx.Barrier(count, timeout=CONSUMER_START_S)
    names = _names(count)
    options = {"sender": sender, "opened": opened, "together": together}
    workers = [
        ctx.Process(
            target=consume,
            args=(run_dir, role, name, consumer_constraints(role, width, height), duration_s),
            kwargs={**options, "first": not i},
        )
        for i, (role, name) in enumerate(names)
    ]
    for worker in workers:
        worker.start()
    sender.close()
    title = f"{count} consumer processes share one {width}x{height} fake camera, {duration_s:g} s"
    try:
        view = _View(screen, title, [name for _, name in names], time.monotonic())
        view.run(run_dir, receiver)
        view.finish(duration_s)
    finally:
        opened.set()  # never leave a consumer waiting
        for worker in workers:
            worker.join()
    return [name for (_, name), w in zip(names, workers, strict=True) if w.exitcode != 0]


def consume(
    run_dir: Path,
    role: str,
    name: str,
    constraints: dict[str, Any],
    duration_s: float,
    *,
    sender: Connection,
    opened: Event,
    together: Barrier,
    first: bool,
) -> None:
    """One consumer process: open a track, wait for the others (``together``),
    then read for ``duration_s`` and report every `REPORT_S`.

    The ``first`` consumer (the recorder) opens the camera in its mode and
    sets ``opened``; the others wait for it, so that none opens the camera
    in a smaller mode that the recorder's request would then re-open.
    """
    if not first:
        opened.wait(CONSUMER_START_S)
    with MediaDevices(run_dir, name=name) as devices:
        track = devices.getUserMedia({"video": constraints}).getVideoTracks()[0]
        opened.set()
        together.wait()
        started = time.monotonic()
        report = None
        while time.monotonic() - started < duration_s:
            report = _read_for_a_report(track, role, name, started)
            sender.send(report)
        if report is not None:
            sender.send(replace(report, done=True))
        track.stop()
    sender.close()


def _reads(track: MediaStreamTrack) -> str:
    settings = track.getSettings()
    resize = settings.get("resizeMode", "none")
    mode = f" {resize}" if resize == "letterbox" else ""
    return (
        f"{settings['width']}x{settings['height']} {settings.get('pixelFormat', '')}{mode} "
        f"{settings['frameRate']:g}fps"
    )


def _read_for_a_report(track: MediaStreamTrack, role: str, name: str, since: float) -> Report:
    """Read frames for `REPORT_S` seconds as ``role`` would; what they showed."""
    latencies: list[float] = []
    started, frame_bytes = time.monotonic(), 0
    while time.monotonic() - started < REPORT_S:
        frame = track.read(timeout=2.0)
        assert isinstance(frame, VideoFrame)
        latencies.append((time.monotonic() - frame.captureTimestamp) * 1000)
        frame_bytes = frame.data.nbytes
        if role == "worker":
            frame.data.mean(axis=(0, 1))  # reads the whole tensor, as a model would
            time.sleep(WORKER_INFERENCE_S)  # the rest of the model's time, without its CPU
    stats = track.stats
    return Report(
        name,
        os.getpid(),
        track.id,
        _reads(track),
        frame_bytes,
        stats["deliveredFrames"],
        stats["discardedFrames"],
        statistics.median(latencies),
        max(latencies),
        time.monotonic() - since,
    )


# -- the display -------------------------------------------------------------------


class _View:
    """The consumers' reports and the daemon's stats, as they come, on a `Screen`."""

    def __init__(self, screen: Screen, title: str, names: list[str], started: float) -> None:
        self.screen, self.title, self.names, self.started = screen, title, names, started
        self.reports: dict[str, Report] = {}
        self.samples: list[tuple[int, StatsSample]] = []  # (consumers on a ring, sample)

    def run(self, run_dir: Path, receiver: Connection) -> None:
        """Collect reports until every consumer is done (blocking); redraw as they come."""
        if not self.screen.tty:
            self.screen.print([self.title, "", f"{'t':>6}  {consumer_header()}"])
        with MediaDevices(run_dir, name="mediabroker demo") as devices:
            self.samples.append((0, take_sample(devices)))
            ticks = 1
            while _collect(receiver, self.reports, self.started + ticks * REPORT_S):
                sample = take_sample(devices)
                self.samples.append((_readers_seen(sample.stats, self.ordered()), sample))
                self._refresh(ticks)
                ticks += 1

    def ordered(self) -> list[Report]:
        return [self.reports[name] for name in self.names if name in self.reports]

    def _refresh(self, ticks: int) -> None:
        if self.screen.tty:
            # CPU % over the last second: steadier than over one redraw
            before = self.samples[max(0, len(self.samples) - 1 - CPU_WINDOW)][1]
            stats = stats_report(before, self.samples[-1][1])
            self.screen.draw(live_block(self.title, self.ordered(), stats))
        elif ticks % PLAIN_EVERY == 0:
            live = [r for r in self.ordered() if not r.done]
            self.screen.print(f"{r.elapsed_s:>5.1f}s  {consumer_row(r)}" for r in live)

    def finish(self, duration_s: float) -> None:
        """The final table (over the time every consumer was on its ring, not
        the rings closing at the end), the legend and the summary."""
        most = max(seen for seen, _ in self.samples)
        full = [sample for seen, sample in self.samples if seen == most]
        stats = stats_report(full[0] if len(full) > 1 else None, full[-1])
        final = live_block(self.title, self.ordered(), stats)
        if self.screen.tty:
            self.screen.draw(final)
        else:
            self.screen.print(["", *final])
        summary = summary_lines(self.ordered(), stats, duration_s)
        self.screen.print(["", *LEGEND, "", *summary])


def _collect(receiver: Connection, reports: dict[str, Report], until: float) -> bool:
    """Take reports until ``until`` (monotonic); False once every consumer is done."""
    while (left := until - time.monotonic()) > 0:
        if not receiver.poll(left):
            break
        try:
            report: Report = receiver.recv()
        except EOFError:  # every consumer closed its end: all have stopped
            return False
        reports[report.name] = report
    return True


def _readers_seen(stats: dict[str, Any], reports: Iterable[Report]) -> int:
    """How many of the consumers' tracks the daemon's stats show on a ring."""
    holders = {h for s in stats.get("sources", []) for h in s["holders"]}
    return sum(1 for r in reports if f"track:{r.track_id}" in holders)
