"""``mediabroker demo``: a daemon on fake devices and consumers sharing its camera.

Each consumer is its own process, as an ML worker or a recorder would be; it
reads frames zero-copy and reports its frame rate and its capture-to-read
latency once a second. At the end the demo stops everything and checks that
nothing is left in /dev/shm.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

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

__all__ = ["add_parser", "run_demo"]

REPORT_S = 1.0
DAEMON_START_S = 10.0


@dataclass(frozen=True, slots=True)
class Report:
    consumer: int
    frames: int
    skipped: int
    fps: float
    latency_ms_p50: float
    latency_ms_max: float
    shape: tuple[int, ...]


def add_parser(commands: Any) -> None:
    """The ``demo`` sub-command (it runs a daemon, so it logs as one)."""
    demo = add_command(
        commands,
        "demo",
        "run a daemon on fake devices and consumers that share its camera",
        "Start a daemon on fake devices in a temporary run dir, run consumer processes\n"
        "that share its camera and print their frame rate and latency, then stop\n"
        "everything and check that nothing is left in /dev/shm.",
    )
    demo.add_argument(
        "--consumers", type=positive_int, default=3, help="consumer processes (default 3)"
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
    with tempfile.TemporaryDirectory(prefix="mediabroker-demo-") as work:
        run_dir, prefix = Path(work) / "run", f"mbdemo{os.getpid()}."
        with ReadyListener(Path(work) / "notify") as listener:
            daemon = _start_daemon(run_dir, prefix, listener)
            try:
                if listener.wait_for("READY=1", DAEMON_START_S) is None:
                    raise SystemExit(
                        f"the daemon did not get ready within {DAEMON_START_S:g} s "
                        f"(exit status {daemon.poll()})"
                    )
                _run_consumers(run_dir, consumers, duration_s, width, height)
            finally:
                daemon.send_signal(signal.SIGTERM)
                code = daemon.wait(timeout=15)
        left = sorted(p.name for p in SHM_DIR.glob(prefix + "*"))
    print(f"daemon exited with status {code}; segments left in {SHM_DIR}: {len(left)}")
    return EXIT_OK if code == 0 and not left else EXIT_FAILED


def _start_daemon(run_dir: Path, prefix: str, listener: ReadyListener) -> subprocess.Popen[bytes]:
    # The demo needs no probe of real cameras and microphones.
    command = serve_command(run_dir, prefix, extra=("--no-hardware", "--idle-close", "0.5"))
    print("starting:", " ".join(command[1:]))
    return subprocess.Popen(command, env={**os.environ, **listener.env})


def _run_consumers(run_dir: Path, count: int, duration_s: float, width: int, height: int) -> None:
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    workers = [
        ctx.Process(target=consume, args=(run_dir, i, duration_s, width, height, sender))
        for i in range(count)
    ]
    for worker in workers:
        worker.start()
    sender.close()
    print(f"{count} consumers share one {width}x{height} fake camera for {duration_s:g} s")
    print(
        f"{'consumer':>8} {'frames':>7} {'skipped':>7} {'fps':>6} {'p50 ms':>7} {'max ms':>7}  view"
    )
    _print_reports(receiver)
    for worker in workers:
        worker.join()


def _print_reports(receiver: Connection) -> None:
    while True:
        try:
            report: Report = receiver.recv()
        except EOFError:
            return
        shape = "x".join(map(str, report.shape))
        print(
            f"{report.consumer:>8} {report.frames:>7} {report.skipped:>7} {report.fps:>6.1f} "
            f"{report.latency_ms_p50:>7.2f} {report.latency_ms_max:>7.2f}  {shape} zero-copy",
            flush=True,
        )


def consume(
    run_dir: Path, index: int, duration_s: float, width: int, height: int, sender: Connection
) -> None:
    """One consumer process: read the shared camera, report once a second."""
    with MediaDevices(run_dir, name=f"demo-consumer-{index}") as devices:
        track = devices.getUserMedia(
            {"video": {"width": width, "height": height}}
        ).getVideoTracks()[0]
        end = time.monotonic() + duration_s
        while time.monotonic() < end:
            sender.send(_read_for_a_report(track, index))
        track.stop()
    sender.close()


def _read_for_a_report(track: MediaStreamTrack, index: int) -> Report:
    """Read frames for `REPORT_S` seconds; what they showed."""
    latencies: list[float] = []
    started, skipped_before = time.monotonic(), track.stats["discardedFrames"]
    shape: tuple[int, ...] = ()
    while time.monotonic() - started < REPORT_S:
        frame = track.read(timeout=2.0)
        assert isinstance(frame, VideoFrame)
        latencies.append((time.monotonic() - frame.timestamp) * 1000)
        shape = frame.data.shape
    elapsed = time.monotonic() - started
    return Report(
        index,
        len(latencies),
        track.stats["discardedFrames"] - skipped_before,
        len(latencies) / elapsed,
        statistics.median(latencies),
        max(latencies),
        shape,
    )
