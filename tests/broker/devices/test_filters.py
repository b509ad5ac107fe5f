"""Which devices the daemon offers: ``devices.allow`` and ``devices.deny``."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediabroker.capture.backend import BackendSpec
from mediabroker.config import BrokerConfig, FileSource
from mediabroker.devices.fakes import fake_devices
from mediabroker.devices.files import file_device
from mediabroker.devices.filters import device_names, filter_devices


def config(**fields: object) -> BrokerConfig:
    return BrokerConfig(run_dir=Path("/nonexistent"), **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("allow", "deny", "kept"),
    [
        ((), (), ["audioinput", "videoinput"]),
        (("Fake camera*",), (), ["videoinput"]),
        ((), ("*microphone*",), ["videoinput"]),
        (("Fake*",), ("Fake camera*",), ["audioinput"]),
        ((fake_devices()[0].device_id,), (), ["audioinput"]),
        (("no such device",), (), []),
    ],
)
def test_allow_and_deny_lists_pick_devices_by_label_or_id(
    allow: tuple[str, ...], deny: tuple[str, ...], kept: list[str]
) -> None:
    chosen = filter_devices(fake_devices(), config(device_allow=allow, device_deny=deny))
    assert sorted(d.kind for d in chosen) == kept


def test_patterns_also_match_the_paths_a_backend_opens() -> None:
    """A file source is matched by its path, a V4L2 camera by its node."""
    path = Path("/videos/lobby.avi")
    camera = file_device(FileSource(path), path, (160, 120, 25.0))
    assert "/videos/lobby.avi" in device_names(camera)
    assert camera.backend == BackendSpec("file", {"path": "/videos/lobby.avi", "loop": True})
    assert filter_devices([camera], config(device_deny=("/videos/*",))) == []
    assert filter_devices([camera], config(device_allow=("*/lobby.avi",))) == [camera]
