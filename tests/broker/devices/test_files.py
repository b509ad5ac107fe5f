"""Video files offered as cameras: probed in probe children, once per version.

Real files written by OpenCV (tests/support/videos.py), real probe children.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from mediabroker.config import BrokerConfig, FileSource
from mediabroker.devices.files import FileProbes, file_devices
from mediabroker.sources.policy import Backoff
from support import wait_until
from support.videos import write_video

WIDTH, HEIGHT, FPS = 160, 120, 25.0


def config(tmp_path: Path, *sources: FileSource) -> BrokerConfig:
    return BrokerConfig(run_dir=tmp_path / "run", file_sources=sources)


def test_file_devices_keep_their_id_and_probe_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    good = write_video(tmp_path / "good.avi", WIDTH, HEIGHT, frames=4, fps=FPS)
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"not a video at all" * 100)
    files = config(tmp_path, FileSource(good, "Lobby"), FileSource(broken))
    probes = FileProbes()
    with caplog.at_level(logging.WARNING, logger="mediabroker.devices.files"):
        first = file_devices(files, probes)
        second = file_devices(files, probes)
    assert [d.label for d in first] == ["Lobby"]
    assert first[0].device_id == second[0].device_id
    caps = first[0].capabilities
    assert caps["width"] == {"min": 1, "max": WIDTH}
    assert caps["height"] == {"min": 1, "max": HEIGHT}
    assert caps["frameRate"] == {"min": 1.0, "max": FPS}
    assert first[0].native_modes == ((WIDTH, HEIGHT, FPS),)
    assert first[0].defaults["width"] == WIDTH and first[0].defaults["frameRate"] == FPS
    assert first[0].backend.params == {"path": str(good), "loop": True}
    warnings = [r.getMessage() for r in caplog.records if "broken.avi" in r.getMessage()]
    assert len(warnings) == 1, warnings  # said once, not on every scan
    assert "OpenCV cannot open" in warnings[0], warnings
    assert probes.probes == 2  # each once: the second scan falls within the broken one's backoff


def test_a_broken_file_is_probed_again_after_its_backoff(tmp_path: Path) -> None:
    """1. A broken file fails its probe; scans within its backoff probe nothing.
    2. Once the backoff is over, the next scan probes it again (still broken)."""
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    files = config(tmp_path, FileSource(broken))
    probes = FileProbes(Backoff(first_s=0.5, max_s=0.5, jitter=0))
    assert file_devices(files, probes) == [] and probes.probes == 1
    assert file_devices(files, probes) == [] and probes.probes == 1
    wait_until(lambda: not file_devices(files, probes) and probes.probes == 2, 5, "a re-probe")


def test_a_changed_file_is_probed_again_and_keeps_its_id(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.avi", WIDTH, HEIGHT, frames=3, fps=FPS)
    files, probes = config(tmp_path, FileSource(path)), FileProbes()
    before = file_devices(files, probes)
    write_video(path, 2 * WIDTH, 2 * HEIGHT, frames=3, fps=FPS)
    after = file_devices(files, probes)
    assert probes.probes == 2
    assert before[0].device_id == after[0].device_id
    assert after[0].native_modes == ((2 * WIDTH, 2 * HEIGHT, FPS),)


def test_a_missing_file_is_logged_once_and_offered_when_it_appears(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "later.avi"
    files, probes = config(tmp_path, FileSource(path, "Later")), FileProbes()
    with caplog.at_level(logging.INFO, logger="mediabroker.devices.files"):
        assert file_devices(files, probes) == []
        assert file_devices(files, probes) == []
        assert probes.probes == 0  # a file that is not there needs no probe child
        write_video(path, WIDTH, HEIGHT, frames=2, fps=FPS)
        assert [d.label for d in file_devices(files, probes)] == ["Later"]
        os.unlink(path)
        assert file_devices(files, probes) == []
    messages = [r.getMessage() for r in caplog.records]
    assert [m.split(":")[0] for m in messages] == [
        f"video file {path} is not offered",
        f"video file {path} is readable again",
        f"video file {path} is not offered",
    ], messages
