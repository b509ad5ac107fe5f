"""PortAudio enumeration, in probe children, on a real JACK server (dummy driver).

A JACK dummy server gives PortAudio a real input device, ``system``, without
a sound card (see tests/support/jack.py). This test process never loads
PortAudio itself: a process that did would hang at exit once its JACK
server is gone. Capture from it is tested in
tests/broker/capture/test_portaudio_capture.py.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mediabroker.capture.backend import BackendSpec
from mediabroker.devices.portaudio import (
    InputDevice,
    PortAudioEnumerator,
    _sound_servers,
    portaudio_devices,
    probe_input_devices,
)
from support.jack import JACK_API, JACK_LABEL, PERIOD, RATE, JackServer, serve_jack


@pytest.fixture
def jack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[JackServer]:
    """A JACK dummy server of our own; every child started from here finds it."""
    with serve_jack(tmp_path / "jackd.log", monkeypatch) as server:
        yield server


def test_the_jack_device_is_listed_with_its_capabilities(jack: JackServer) -> None:
    """Enumeration in a child process sees JACK's ``system`` input."""
    found = [d for d in probe_input_devices() if d.hostapi == JACK_API]
    assert [(d.name, d.channels, d.rates, d.default_rate) for d in found] == [
        ("system", 2, (RATE,), RATE)
    ]
    device = next(d for d in portaudio_devices(PortAudioEnumerator()) if d.label == JACK_LABEL)
    caps = device.capabilities
    assert caps["sampleRate"] == {"min": RATE, "max": RATE}
    assert caps["channelCount"] == {"min": 1, "max": 2}
    assert caps["sampleSize"] == {"min": 32, "max": 32}
    assert caps["latency"]["min"] == pytest.approx(PERIOD / RATE)
    assert (
        caps["echoCancellation"] == caps["autoGainControl"] == caps["noiseSuppression"] == [False]
    )
    assert device.defaults["sampleRate"] == RATE
    assert device.backend == BackendSpec("portaudio", {"name": "system", "hostapi": JACK_API})


def test_without_libportaudio_there_are_no_microphones_and_the_log_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The probe child fails to import sounddevice exactly as it does without
    libportaudio2 (OSError 'PortAudio library not found', reproduced by a
    shadow module on the child's path): no devices, one warning however
    often the devices are enumerated again."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "sounddevice.py").write_text('raise OSError("PortAudio library not found")\n')
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])
    )
    enumerator = PortAudioEnumerator()
    with caplog.at_level(logging.WARNING, logger="mediabroker.devices.portaudio"):
        for _ in range(3):
            enumerator._fingerprint = None  # as if something changed: probe again
            assert enumerator.devices() == []
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1, messages
    assert "PortAudio library not found" in messages[0] and "install libportaudio2" in messages[0]
    assert enumerator.probes == 3


def test_a_failed_probe_keeps_the_devices_it_knew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A probe child that dies says nothing about the devices: the last list
    stays (live tracks must not end over it), and the next scan asks again."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "sounddevice.py").write_text("raise SystemExit(1)\n")
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(shadow), os.environ.get("PYTHONPATH", "")])
    )
    known = InputDevice("system", JACK_API, 2, RATE, (RATE,), 0.01, 0.01, True)
    enumerator = PortAudioEnumerator()
    enumerator._devices = [known]
    with caplog.at_level(logging.WARNING, logger="mediabroker.devices.portaudio"):
        assert enumerator.devices() == [known]
        assert enumerator.devices() == [known]
    assert enumerator.probes == 2  # asked again: the failure did not count as an answer
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1 and "enumeration failed" in messages[0], messages


def test_sound_servers_are_found_by_their_comm(tmp_path: Path) -> None:
    """The fingerprint's process scan: a JACK server appearing, a process
    exec'ing into one under the same pid, and one exiting all change it;
    other processes and entries do not."""

    def run(pid: int, name: str) -> None:
        (tmp_path / str(pid)).mkdir(exist_ok=True)
        (tmp_path / str(pid) / "comm").write_text(name + "\n")

    run(1, "systemd")
    (tmp_path / "self").mkdir()  # not a pid
    assert _sound_servers(tmp_path) == ()
    run(40, "jackd")
    assert _sound_servers(tmp_path) == ((40, "jackd"),)
    run(1, "pipewire")  # exec: same pid, new name
    assert _sound_servers(tmp_path) == ((1, "pipewire"), (40, "jackd"))
    (tmp_path / "40" / "comm").unlink()
    (tmp_path / "40").rmdir()
    assert _sound_servers(tmp_path) == ((1, "pipewire"),)
