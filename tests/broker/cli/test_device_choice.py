"""Naming a device on the command line (`find_device`), in-process."""

from __future__ import annotations

import pytest

from mediabroker.cli.device_choice import KIND_WORDS, find_device, kind_noun
from mediabroker.devices.fakes import fake_devices
from mediabroker.errors import CommandError
from mediastream import InputDeviceInfo, MediaDeviceInfo


def infos() -> list[MediaDeviceInfo]:
    return [
        InputDeviceInfo(d.device_id, d.kind, d.label, d.group_id, d.capabilities)
        for d in fake_devices()
    ]


def test_a_device_is_named_by_id_prefix_label_or_kind_word() -> None:
    listed = infos()
    microphone, camera = listed
    assert find_device(listed, camera.deviceId) == camera
    assert find_device(listed, camera.deviceId[:6]) == camera
    assert find_device(listed, "TEST PATTERN") == camera
    assert find_device(listed, "camera") == camera
    assert find_device(listed, "mic") == microphone
    assert find_device(listed, "Fake", "audioinput") == microphone
    with pytest.raises(CommandError, match="names 2 devices") as ambiguous:
        find_device(listed, "fake")
    assert ambiguous.value.status == 2
    with pytest.raises(CommandError, match="no camera matches 'tone'"):
        find_device(listed, "tone", "videoinput")


def test_every_kind_word_names_the_first_device_of_its_kind() -> None:
    """One table of kind words serves both `find_device` and ``fake-device add``."""
    listed = infos()
    for word, kind in KIND_WORDS.items():
        assert find_device(listed, word).kind == kind, word
    assert set(KIND_WORDS.values()) == {"videoinput", "audioinput"}
    assert (kind_noun("videoinput"), kind_noun("audioinput"), kind_noun(None)) == (
        "camera",
        "microphone",
        "device",
    )


def test_a_kind_word_of_the_other_kind_names_nothing() -> None:
    with pytest.raises(CommandError, match="no microphone matches 'camera'") as refused:
        find_device(infos(), "camera", "audioinput")
    assert refused.value.status == 2
    assert "'Fake microphone (440 Hz tone)'" in str(refused.value)  # what there is
