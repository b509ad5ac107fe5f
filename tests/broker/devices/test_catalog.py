"""DeviceCatalog: what one daemon offers, with state of its own.

Fake devices only (no probe children), so these run in-process and fast;
video files through a catalog are in test_files.py and through a daemon in
tests/broker/capture/test_file_source.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mediabroker.capture.backend import BackendSpec
from mediabroker.config import BrokerConfig
from mediabroker.devices import Device, DeviceCatalog
from mediabroker.devices.fakes import MAX_RUNTIME_FAKES, fake_devices
from mediastream.errors import InvalidStateError, NotFoundError


def config(**fields: object) -> BrokerConfig:
    settings: dict[str, object] = {"fake_devices": True, "hardware_devices": False, **fields}
    return BrokerConfig(run_dir=Path("/nonexistent"), **settings)  # type: ignore[arg-type]


def labels(devices: list[Device]) -> list[str]:
    return [d.label for d in devices]


def test_microphones_come_first_runtime_fakes_included() -> None:
    catalog = DeviceCatalog(config())
    camera = catalog.fakes.add("videoinput", "Door")
    microphone = catalog.fakes.add("audioinput", "Hall")
    found = catalog.discover()
    assert [d.kind for d in found] == ["audioinput"] * 2 + ["videoinput"] * 2
    assert labels(found) == [
        "Fake microphone (440 Hz tone)",
        "Hall",
        "Fake camera (test pattern)",
        "Door",
    ]
    assert camera in found and microphone in found


def test_two_catalogs_share_nothing() -> None:
    one, other = DeviceCatalog(config()), DeviceCatalog(config())
    one.fakes.add("videoinput", "Only in one")
    one.fakes.remove(fake_devices()[0])
    assert "Only in one" in labels(one.discover())
    assert labels(other.discover()) == labels(fake_devices())


def test_the_allow_and_deny_lists_apply_and_reconfigure_changes_them() -> None:
    catalog = DeviceCatalog(config(device_deny=("Fake camera*",)))
    assert [d.kind for d in catalog.discover()] == ["audioinput"]
    catalog.reconfigure(config())
    assert [d.kind for d in catalog.discover()] == ["audioinput", "videoinput"]
    catalog.reconfigure(config(fake_devices=False))
    assert catalog.discover() == []


def test_runtime_fakes_refuse_a_bad_kind_a_real_device_and_too_many() -> None:
    catalog = DeviceCatalog(config())
    with pytest.raises(TypeError, match="kind must be 'videoinput' or 'audioinput'"):
        catalog.fakes.add("screen", "Nope")
    real = Device("id", "videoinput", "Webcam", "group", BackendSpec("v4l2"), {})
    with pytest.raises(NotFoundError, match="'Webcam' is not a fake device"):
        catalog.fakes.remove(real)
    for index in range(MAX_RUNTIME_FAKES):
        catalog.fakes.add("audioinput", f"mic {index}")
    with pytest.raises(InvalidStateError, match=f"{MAX_RUNTIME_FAKES} fake devices"):
        catalog.fakes.add("audioinput", "one too many")


def test_a_runtime_fake_keeps_its_id_and_goes_away_when_removed() -> None:
    catalog = DeviceCatalog(config())
    added = catalog.fakes.add("videoinput", "Door")
    assert added.device_id != catalog.fakes.add("videoinput", "Door").device_id
    catalog.fakes.remove(added)
    assert added not in catalog.discover()
