"""Runs the probe child: every device probe the daemon needs, out of its process.

Design note. Probing opens devices through OpenCV or PortAudio, and the
daemon's own process must never load either: PortAudio can hang for good
when a sound server dies, and a library mapped into the daemon is one more
way to take it down. So each probe is a short-lived child,
``python -m mediabroker.capture.probe {portaudio|file PATH|v4l2 NODE}``,
that prints one JSON line (see `mediabroker.capture.probe`): the result, or
the reason the device cannot be probed, plus the log records the child made,
which are logged here again under their own logger names. What FFmpeg and
OpenCV said on its stderr joins the reason ("... (FFmpeg (mov,mp4): moov
atom not found)"), redacted, since it often says what is wrong. A child that
fails without an answer, or runs past its timeout (it is killed then), is a
`CaptureError` that says so.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from mediabroker.childlog import native_detail
from mediabroker.errors import CaptureError, PortAudioMissing
from mediabroker.urls import redact_text

__all__ = ["PROBE_COMMAND", "PROBE_TIMEOUT_S", "run_probe"]

PROBE_COMMAND = (sys.executable, "-m", "mediabroker.capture.probe")
PROBE_TIMEOUT_S = 10.0
STDERR_TAIL_CHARS = 500  # what a failed child's error output contributes to the message
_ERRORS: dict[str, type[CaptureError]] = {
    "CaptureError": CaptureError,
    "PortAudioMissing": PortAudioMissing,
}


def run_probe(
    args: Sequence[str],
    what: str,
    *,
    timeout_s: float = PROBE_TIMEOUT_S,
    env: Mapping[str, str] | None = None,
    command: Sequence[str] = PROBE_COMMAND,
    secrets: Sequence[str] = (),
) -> Any:
    """Run ``command`` + ``args`` (blocking) and return the result it printed.

    ``what`` names the probe in messages ("probing /dev/video0"); ``env``
    is added to this process's environment. Raises `CaptureError` (or
    `PortAudioMissing`) with the child's reason when the device cannot be
    probed, and `CaptureError` when the child fails without an answer or
    runs past ``timeout_s`` (it is killed and reaped first). ``secrets``
    are scrubbed from what the child printed (see `mediabroker.urls`).
    """
    try:
        done = subprocess.run(
            [*command, *args],
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CaptureError(
            f"{what} did not finish within {timeout_s:g} s; the probe child was killed"
        ) from exc
    answer = _answer(done, what, secrets)
    _relay(answer.get("log", []))
    if "error" in answer:
        error = _ERRORS.get(str(answer.get("type")), CaptureError)
        detail = native_detail(done.stderr, secrets)
        raise error(str(answer["error"]) + (f" ({detail})" if detail else ""))
    return answer["result"]


def _answer(
    done: subprocess.CompletedProcess[str], what: str, secrets: Sequence[str]
) -> dict[str, Any]:
    """The child's JSON line (its last line of output), or `CaptureError`."""
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
        if not isinstance(answer, dict) or not ("result" in answer or "error" in answer):
            raise ValueError(f"not a probe answer: {answer!r}")
    except (IndexError, ValueError) as exc:
        detail = done.stderr.strip()[-STDERR_TAIL_CHARS:] or f"exit status {done.returncode}"
        raise CaptureError(f"{what} failed: {redact_text(detail, secrets)}") from exc
    return answer


def _relay(records: list[Any]) -> None:
    """Log the child's own log records here, as if they had happened here."""
    for level, name, message in records:
        logging.getLogger(str(name)).log(int(level), "%s", message)
