"""Which devices the daemon offers: ``devices.allow`` and ``devices.deny``.

Both are shell-style globs matched against a device's label, its deviceId
and the paths its backend opens (``/dev/video0``, a file source's path). A
device is offered when the allow list is empty or one of its patterns
matches, and no deny pattern does.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from pathlib import Path

from mediabroker.config import BrokerConfig
from mediabroker.devices.device import Device

__all__ = ["device_names", "filter_devices"]


def device_names(device: Device) -> list[str]:
    """What ``devices.allow`` and ``devices.deny`` patterns are matched against."""
    names = [device.label, device.device_id]
    names += [str(v) for v in device.backend.params.values() if isinstance(v, (str, Path))]
    return names


def _matches(patterns: Iterable[str], names: list[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns for name in names)


def filter_devices(devices: list[Device], config: BrokerConfig) -> list[Device]:
    """The devices the allow and deny lists let the daemon offer."""
    kept = []
    for device in devices:
        names = device_names(device)
        if config.device_allow and not _matches(config.device_allow, names):
            continue
        if _matches(config.device_deny, names):
            continue
        kept.append(device)
    return kept
