"""The device list the daemon offers, kept current.

It is re-read on a timer (hot-plug) and on SIGHUP, in a thread, since a
probe may take a while. Any change fires ``devicechange`` to every session,
and a device that went away ends the sources (and so the tracks) on it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable

from mediabroker.capture.backend import RELAY_DRIVER
from mediabroker.config import BrokerConfig
from mediabroker.daemon.sessions import SessionTable
from mediabroker.daemon.tracks import NoticeSender
from mediabroker.devices import Device, DeviceCatalog
from mediabroker.sources import SourceManager

__all__ = ["DeviceWatch"]

log = logging.getLogger(__name__)


class DeviceWatch:
    """``devices`` is what `enumerateDevices` answers and `getUserMedia` picks from."""

    def __init__(
        self,
        config: BrokerConfig,
        sources: SourceManager,
        sessions: SessionTable,
        send_notice: NoticeSender,
    ) -> None:
        self.config = config
        self.catalog = DeviceCatalog(config)
        self._sources = sources
        self._sessions = sessions
        self._send_notice = send_notice
        self.devices: list[Device] = self.catalog.discover()
        # Generators published as devices (daemon.generators), by device id:
        # listed after every scan, gone when their generator closes.
        self.published: dict[str, Device] = {}

    def publish(self, device: Device) -> None:
        """List a generator's device (``devicechange`` fires)."""
        self.published[device.device_id] = device
        self.apply(self.devices)

    def unpublish(self, device_id: str) -> None:
        """Withdraw a published device (``devicechange``; its sources end). Idempotent."""
        if self.published.pop(device_id, None) is not None:
            self.apply(self.devices)

    async def run(self) -> None:
        """Re-read the device list every ``device_scan_s`` (runs until cancelled)."""
        while True:
            await asyncio.sleep(self.config.device_scan_s)
            self.apply(await asyncio.to_thread(self.catalog.discover))

    async def reload(self, config: BrokerConfig) -> None:
        self.config = config
        self.catalog.reconfigure(config)
        self.apply(await asyncio.to_thread(self.catalog.discover))

    def find(self, device_id: str) -> Device | None:
        return next((d for d in self.devices if d.device_id == device_id), None)

    def apply(self, devices: Iterable[Device]) -> None:
        """Replace the device list. When it changed, fire ``devicechange``; a
        device that went away ends its tracks (``ended`` on each)."""
        found = [d for d in devices if d.backend.driver != RELAY_DRIVER]  # generators: if published
        devices = sorted([*found, *self.published.values()], key=lambda d: d.kind != "audioinput")
        if [d.to_wire() for d in devices] == [d.to_wire() for d in self.devices]:
            return
        known = {d.device_id for d in self.devices}
        inserted = [d.device_id for d in devices if d.device_id not in known]
        present = {d.device_id for d in devices}
        self.devices = devices
        log.info("devices changed: %s", ", ".join(repr(d.label) for d in devices) or "none")
        removed = known - present  # a generator never published is in neither: it lives on
        for source in self._sources:
            if source.device.device_id in removed:
                source.end(f"{source.device.label} was removed")
        wire_devices = [d.to_wire() for d in devices]
        for session in self._sessions:
            self._send_notice(
                session, "device", "devicechange", devices=wire_devices, inserted=inserted
            )
