"""The probe child's own side: what it prints for each probe (run in-process
here; tests/broker/devices/test_prober.py runs it as a real child)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mediabroker.capture.probe import EXIT_USAGE, main
from support.videos import write_video


def answer_of(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1, out  # one JSON line
    answer: dict[str, object] = json.loads(out)
    return answer


def test_a_file_probe_prints_size_rate_and_length(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_video(tmp_path / "clip.avi", 160, 120, frames=5, fps=25.0)
    answer = answer_of(["file", str(path)], capsys)
    assert answer["result"] == {"width": 160, "height": 120, "fps": 25.0, "frame_count": 5}
    assert answer["log"] == []


def test_a_device_that_cannot_be_probed_is_an_answer_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.avi"
    answer = answer_of(["file", str(missing)], capsys)
    assert answer == {
        "error": f"video file {missing} does not exist",
        "type": "CaptureError",
        "log": [],
    }


@pytest.mark.parametrize("args", [[], ["bogus"], ["file"], ["portaudio", "extra"]])
def test_a_bad_command_line_exits_2_with_the_usage(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "usage: python -m mediabroker.capture.probe" in captured.err
