"""The probe child, run as the daemon runs it: a real child process each time.

Real files, real children; a hanging child is a real interpreter that
sleeps, and must be killed (and reaped: the ``accounting`` fixture fails a
test that leaves a process behind) once its timeout passes.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import psutil
import pytest

from mediabroker.devices.files import probe_file
from mediabroker.devices.prober import run_probe
from mediabroker.devices.v4l2 import probe_modes
from mediabroker.errors import CaptureError, PortAudioMissing
from support.videos import write_video


def python(code: str) -> tuple[str, ...]:
    """A probe command that runs ``code`` instead of the real probe child."""
    return (sys.executable, "-c", code)


def test_a_real_video_file_is_probed_in_a_child(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.avi", 160, 120, frames=6, fps=25.0)
    info = run_probe(["file", str(path)], f"probing {path}")
    assert info == {"width": 160, "height": 120, "fps": 25.0, "frame_count": 6}
    assert probe_file(path) == (160, 120, 25.0)


def test_a_missing_file_is_the_childs_reason(tmp_path: Path) -> None:
    missing = tmp_path / "missing.avi"
    with pytest.raises(CaptureError, match=rf"video file {missing} does not exist"):
        probe_file(missing)


def test_a_camera_that_cannot_be_opened_is_the_childs_reason(tmp_path: Path) -> None:
    node = tmp_path / "video9"
    with pytest.raises(CaptureError, match=rf"cannot open {node} for probing"):
        probe_modes(node)


def test_a_child_that_hangs_is_killed_after_the_timeout(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    hang = "import os, sys, time\nopen(sys.argv[1], 'w').write(str(os.getpid()))\ntime.sleep(600)"
    with pytest.raises(CaptureError) as raised:
        run_probe([str(pid_file)], "probing the hang", timeout_s=3.0, command=python(hang))
    assert str(raised.value) == (
        "probing the hang did not finish within 3 s; the probe child was killed"
    )
    assert not psutil.pid_exists(int(pid_file.read_text()))  # killed and reaped


def test_a_child_that_dies_without_an_answer_is_reported_with_its_stderr() -> None:
    die = "import sys\nsys.stderr.write('Traceback: boom')\nsys.exit(3)"
    with pytest.raises(CaptureError, match=r"^probing x failed: Traceback: boom$"):
        run_probe([], "probing x", command=python(die))
    with pytest.raises(CaptureError, match=r"^probing x failed: exit status 4$"):
        run_probe([], "probing x", command=python("raise SystemExit(4)"))


def test_a_bad_command_line_is_a_failure_that_says_how_to_call_it() -> None:
    with pytest.raises(CaptureError, match=r"probing bogus failed: unknown probe 'bogus'"):
        run_probe(["bogus"], "probing bogus")


def test_the_childs_log_records_and_error_type_come_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    answer = {
        "error": "no PortAudio here",
        "type": "PortAudioMissing",
        "log": [[logging.WARNING, "mediabroker.capture.files", "a warning from the child"]],
    }
    command = python(f"print('noise')\nprint({json.dumps(json.dumps(answer))})")
    with caplog.at_level(logging.INFO), pytest.raises(PortAudioMissing, match="no PortAudio here"):
        run_probe([], "probing x", command=command)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("mediabroker.capture.files", logging.WARNING, "a warning from the child")
    ]
