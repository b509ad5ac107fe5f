"""Microphones through PortAudio: enumeration, on the daemon's side.

Design note. PortAudio is only ever opened where it can be killed (see
`mediabroker.capture.portaudio`, where capture runs). Enumeration runs in a
probe child (`run_probe`, with a timeout), so the daemon's own process
never loads PortAudio and never holds a JACK client. A child costs a few
tenths of a second, so it runs only when the machine's audio endpoints look
different (ALSA nodes, JACK server sockets, sound-server processes) or the
last answer is older than ``AUDIO_REPROBE_S``. PortAudio reads the host's
audio servers once, when sounddevice is imported: each child imports it
afresh, so a server started later is seen.

Without libportaudio2 (``import sounddevice`` raises OSError in the child)
there are no audio devices and the log says why once.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediabroker.capture.backend import BackendSpec
from mediabroker.devices.device import Device, stable_id
from mediabroker.devices.prober import PROBE_TIMEOUT_S, run_probe
from mediabroker.errors import CaptureError, PortAudioMissing

__all__ = [
    "AUDIO_REPROBE_S",
    "InputDevice",
    "PortAudioEnumerator",
    "audio_fingerprint",
    "portaudio_devices",
    "probe_input_devices",
]

log = logging.getLogger(__name__)

AUDIO_REPROBE_S = 30.0  # re-enumerate at least this often, even when nothing looks changed
AUDIO_SAMPLE_SIZE = 32  # float32 rings
SOUND_SERVERS = frozenset({"jackd", "jackdbus", "pipewire", "pulseaudio"})


@dataclass(frozen=True, slots=True)
class InputDevice:
    """One PortAudio input device, as a probe child saw it."""

    name: str
    hostapi: str
    channels: int
    default_rate: int
    rates: tuple[int, ...]
    low_latency: float
    high_latency: float
    default: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} ({self.hostapi})"

    @classmethod
    def from_probe(cls, raw: dict[str, Any]) -> InputDevice:
        default_rate = round(float(raw["default_rate"]))
        rates = tuple(sorted({int(r) for r in raw["rates"]}))
        return cls(
            str(raw["name"]),
            str(raw["hostapi"]),
            int(raw["channels"]),
            default_rate,
            rates,
            float(raw["low_latency"]),
            float(raw["high_latency"]),
            bool(raw["default"]),
        )


def probe_input_devices(timeout_s: float = PROBE_TIMEOUT_S) -> list[InputDevice]:
    """Ask a probe child for PortAudio's input devices (blocking, a few tenths
    of a second). Raises `PortAudioMissing` without libportaudio2,
    `CaptureError` when the child fails or times out."""
    found = run_probe(
        ["portaudio"],
        "PortAudio enumeration",
        timeout_s=timeout_s,
        env={"JACK_NO_START_SERVER": "1"},  # list servers, never start one
    )
    return [InputDevice.from_probe(d) for d in found]


def audio_fingerprint(dev_root: Path = Path("/dev")) -> tuple[Any, ...]:
    """What changes when audio endpoints come or go: ALSA nodes, JACK server
    sockets, sound-server processes. Cheap: no PortAudio, no JACK client."""
    return (_names(dev_root / "snd"), _jack_sockets(dev_root / "shm"), _sound_servers())


def _names(directory: Path) -> tuple[str, ...]:
    try:
        return tuple(sorted(os.listdir(directory)))
    except OSError:
        return ()


def _jack_sockets(shm: Path) -> tuple[str, ...]:
    sockets = []
    for name in _names(shm):
        if name.startswith("jack_"):
            try:
                if stat.S_ISSOCK(os.lstat(shm / name).st_mode):
                    sockets.append(name)
            except OSError:
                continue
    return tuple(sockets)


def _sound_servers(proc: Path = Path("/proc")) -> tuple[tuple[int, str], ...]:
    """The sound-server processes running, by the name in each pid's
    ``comm`` (read every time: an exec changes it under the same pid).
    About 1.3 ms for 90 processes; psutil's walk took 4 ms (bench --profile
    found the daemon spending 6 ms a second on it)."""
    servers = []
    for entry in _names(proc):
        if entry.isdigit():
            try:
                name = (proc / entry / "comm").read_text().strip()
            except OSError:
                continue  # gone while we looked
            if name in SOUND_SERVERS:
                servers.append((int(entry), name))
    return tuple(sorted(servers))


class PortAudioEnumerator:
    """PortAudio's input devices, cached: probes again only when the audio
    endpoints look changed or the answer is ``AUDIO_REPROBE_S`` old.
    Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fingerprint: tuple[Any, ...] | None = None
        self._probed_at = 0.0
        self._devices: list[InputDevice] = []
        self._rates: dict[tuple[str, str], tuple[int, ...]] = {}
        self._reported: str | None = None
        self.probes = 0

    def devices(self) -> list[InputDevice]:
        """The input devices now, in PortAudio's order (blocking while a probe
        child runs). Never raises: problems are logged once."""
        with self._lock:
            fingerprint = audio_fingerprint()
            fresh = time.monotonic() - self._probed_at < AUDIO_REPROBE_S
            if fingerprint == self._fingerprint and fresh:
                return list(self._devices)
            self._fingerprint, self._probed_at = fingerprint, time.monotonic()
            self.probes += 1
            self._devices = self._probe()
            return list(self._devices)

    def _probe(self) -> list[InputDevice]:
        try:
            found = probe_input_devices()
        except PortAudioMissing as exc:
            self._report(f"no audio devices: {exc}")
            return []
        except CaptureError as exc:
            # A probe that timed out says nothing about the devices: keep the
            # last answer (ending live tracks would be wrong) and ask next scan.
            self._report(f"audio devices not re-read: {exc}")
            self._fingerprint = None
            return self._devices
        self._reported = None
        return [self._keep_rates(d) for d in found]

    def _report(self, problem: str) -> None:
        if problem != self._reported:  # say it once, not on every rescan
            log.warning("%s", problem)
            self._reported = problem

    def _keep_rates(self, device: InputDevice) -> InputDevice:
        """A device we capture from may refuse every rate check while it is
        open (ALSA hw is exclusive): keep the rates it offered when it was
        free, else assume its default rate."""
        key = (device.hostapi, device.name)
        if device.rates:
            self._rates[key] = device.rates
            return device
        rates = self._rates.get(key, (device.default_rate,))
        return dataclasses.replace(device, rates=rates)

    def __repr__(self) -> str:
        return f"<PortAudioEnumerator {len(self._devices)} device(s) probes={self.probes}>"


def portaudio_devices(enumerator: PortAudioEnumerator) -> list[Device]:
    """PortAudio's input devices as microphones, host API defaults first."""
    found = sorted(enumerator.devices(), key=lambda d: not d.default)
    return [_microphone(d) for d in found]


def _microphone(found: InputDevice) -> Device:
    device_id = stable_id("portaudio", found.hostapi, found.name)
    group_id = stable_id("portaudio", "group", found.hostapi, found.name)
    capabilities = {
        "deviceId": device_id,
        "groupId": group_id,
        "sampleRate": {"min": min(found.rates), "max": max(found.rates)},
        "sampleSize": {"min": AUDIO_SAMPLE_SIZE, "max": AUDIO_SAMPLE_SIZE},
        "channelCount": {"min": 1, "max": found.channels},
        "latency": {"min": found.low_latency, "max": found.high_latency},
        "echoCancellation": [False],
        "autoGainControl": [False],
        "noiseSuppression": [False],
    }
    rate = found.default_rate if found.default_rate in found.rates else max(found.rates)
    defaults = {"sampleRate": rate, "channelCount": 1, "latency": found.low_latency}
    backend = BackendSpec("portaudio", {"name": found.name, "hostapi": found.hostapi})
    return Device(device_id, "audioinput", found.label, group_id, backend, capabilities, defaults)
