"""Device discovery, in the daemon's main process: what can be opened, and how.

`DeviceCatalog` finds the devices one daemon offers (fakes, PortAudio
microphones, V4L2 cameras, video files) and `Device` describes each. Nothing
here opens a device: every probe runs in a short-lived probe child
(`mediabroker.capture.probe`, started by `prober`), so OpenCV and PortAudio
never load in the daemon.

- `device`: `Device`, stable ids, the video capabilities shape;
- `catalog`: `DeviceCatalog`, which owns the caches between scans;
- `fakes`, `files`, `portaudio`, `v4l2`: one kind of device each;
- `filters`: ``devices.allow`` and ``devices.deny``;
- `prober`: runs the probe child and reads its answer.
"""

from __future__ import annotations

from mediabroker.devices.catalog import DeviceCatalog
from mediabroker.devices.device import Device

__all__ = ["Device", "DeviceCatalog"]
