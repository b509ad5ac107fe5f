"""The devices one daemon offers, found afresh on every scan.

`DeviceCatalog` owns everything discovery remembers between scans: the
video files' probes, the network cameras' (run in the background: a scan
never waits for a network), PortAudio's last answer, each camera's modes and the
fake devices plugged in at run time. It is instance state, so two daemons
in one process (tests) share nothing. Every probe that opens a device runs
in a probe child (`mediabroker.devices.prober`).
"""

from __future__ import annotations

import threading

from mediabroker.config import BrokerConfig
from mediabroker.devices.device import Device
from mediabroker.devices.fakes import RuntimeFakes, fake_devices
from mediabroker.devices.files import FileProbes, file_devices
from mediabroker.devices.filters import filter_devices
from mediabroker.devices.network import NetworkProbes, network_devices
from mediabroker.devices.portaudio import PortAudioEnumerator, portaudio_devices
from mediabroker.devices.v4l2 import CapabilityCache, v4l2_devices

__all__ = ["DeviceCatalog"]


class DeviceCatalog:
    """Discovers the devices ``config`` asks for; ``fakes`` are the fake
    devices plugged in and out at run time (`RuntimeFakes`)."""

    def __init__(self, config: BrokerConfig) -> None:
        self._config = config
        self.fakes = RuntimeFakes(config.fake_clock_code)
        self._files = FileProbes(config.retry_backoff)
        self._network = NetworkProbes(config.retry_backoff)
        self._microphones = PortAudioEnumerator()
        self._cameras = CapabilityCache()
        self._lock = threading.Lock()  # one scan at a time: the caches are not shared-safe

    def discover(self) -> list[Device]:
        """Every device offered now, microphones first, then cameras (the spec's
        enumeration order), filtered by ``devices.allow`` and ``devices.deny``,
        with the runtime fakes applied. Blocking (probe children may run):
        call it in a thread. Never raises for a device that cannot be probed:
        it is left out and logged once."""
        with self._lock:
            config = self._config
            found = fake_devices(config.fake_clock_code) if config.fake_devices else []
            if config.hardware_devices:
                found += portaudio_devices(self._microphones) + v4l2_devices(self._cameras)
            found += file_devices(config, self._files)
            found += network_devices(config, self._network)
            found = filter_devices(found, config)
            devices = self.fakes.apply(found)
        return sorted(devices, key=lambda d: d.kind != "audioinput")

    def reconfigure(self, config: BrokerConfig) -> None:
        """Use ``config`` from the next `discover` on (SIGHUP). The caches stay:
        a device probed once is not probed again for a new config."""
        self._config = config
        self.fakes.clock_code = config.fake_clock_code

    def __repr__(self) -> str:
        return f"<DeviceCatalog {self._files!r} {self._microphones!r} {self._cameras!r}>"
