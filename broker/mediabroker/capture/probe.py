"""The probe child: opens a device just long enough to say what it offers.

    python -m mediabroker.capture.probe portaudio     PortAudio's input devices
    python -m mediabroker.capture.probe file PATH     a video file's size and rate
    python -m mediabroker.capture.probe v4l2 NODE     a V4L2 camera's modes
    python -m mediabroker.capture.probe network       the stream at $MEDIABROKER_PROBE_URL

(The URL comes in the environment, not the command line: anyone may read a
process's command line, and camera URLs hold passwords.)

The daemon runs it (`mediabroker.devices.prober.run_probe`, with a timeout)
so that OpenCV and PortAudio load here and never in the daemon. It prints
one JSON line on stdout and exits 0:

    {"result": ..., "log": [[level, logger, message], ...]}
    {"error": "why", "type": "CaptureError" | "PortAudioMissing", "log": [...]}

``error`` means the device cannot be probed (missing, undecodable, held by
another program); ``log`` holds the records this process logged at INFO
and above, for the daemon to log again. A bad command line exits 2 and a
bug exits 1 with its traceback on stderr, both without a JSON line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mediabroker.errors import CaptureError

__all__ = ["PROBES", "main", "probe", "usage_problem"]

USAGE = "usage: python -m mediabroker.capture.probe {portaudio | file PATH | v4l2 NODE | network}"
URL_ENV = "MEDIABROKER_PROBE_URL"
EXIT_USAGE = 2


class _Records(logging.Handler):
    """Keeps every record logged in this process, for the answer's ``log``."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[list[Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append([record.levelno, record.name, record.getMessage()])


# Each probe imports only its own driver: the PortAudio one, which runs every
# rescan, must not pay for loading OpenCV.


def _portaudio() -> Any:
    from mediabroker.capture.portaudio import query_input_devices

    return query_input_devices()


def _file(path: str) -> Any:
    from mediabroker.capture.files import probe_video_file

    info = probe_video_file(Path(path))
    return {
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "frame_count": info.frame_count,
    }


def _v4l2(node: str) -> Any:
    from mediabroker.capture.v4l2 import query_modes

    return [mode.to_list() for mode in query_modes(Path(node))]


def _network() -> Any:
    from mediabroker.capture.network import probe_network_url

    url = os.environ.get(URL_ENV)
    if not url:
        raise CaptureError(f"the network probe reads its URL from ${URL_ENV}, which is not set")
    return probe_network_url(url)


PROBES: dict[str, Callable[..., Any]] = {
    "portaudio": _portaudio,
    "file": _file,
    "v4l2": _v4l2,
    "network": _network,
}
ARITY = {"portaudio": 0, "file": 1, "v4l2": 1, "network": 0}  # arguments after the probe's name


def usage_problem(args: list[str]) -> str | None:
    """What is wrong with the probe command line ``args``, or None."""
    if not args or args[0] not in PROBES or len(args) - 1 != ARITY[args[0]]:
        return f"unknown probe {' '.join(args)!r}\n{USAGE}"
    return None


def probe(args: list[str]) -> Any:
    """The result of the probe ``args`` names (JSON-ready), in this process.
    Raises `CaptureError` when the device cannot be probed, `ValueError`
    for a bad command line."""
    problem = usage_problem(args)
    if problem is not None:
        raise ValueError(problem)
    return PROBES[args[0]](*args[1:])


def _die_with_parent() -> None:
    """SIGKILL this child when the daemon dies: a network probe may sit in
    FFmpeg's connect for seconds, and must not outlive the daemon (Linux)."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    """Run the probe ``argv`` (default: the command line) names and print its
    answer; returns the exit status."""
    args = sys.argv[1:] if argv is None else argv
    _die_with_parent()
    problem = usage_problem(args)
    if problem is not None:
        print(problem, file=sys.stderr)
        return EXIT_USAGE
    records = _Records()
    root = logging.getLogger()
    root.addHandler(records)
    root.setLevel(logging.INFO)
    try:
        answer: dict[str, Any] = {"result": probe(args)}
    except CaptureError as exc:
        answer = {"error": str(exc), "type": type(exc).__name__}
    finally:
        root.removeHandler(records)
    answer["log"] = records.records
    sys.stdout.write(json.dumps(answer) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
