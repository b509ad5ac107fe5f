"""Video files offered as cameras, at their native size and rate.

Each file is probed once in a probe child (`run_probe`; OpenCV never loads
in the daemon), and again only when it changes (path, mtime and size make
the cache key). A file that is missing or undecodable is left out and
logged once (at start and at reload alike: no bad file stops the daemon),
and comes back when it is readable again. An unchanged file that failed is
probed again with `Backoff` (a probe child a scan would cost a process a
second for nothing); a missing one costs a ``stat`` a scan.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from mediabroker.capture.backend import BackendSpec
from mediabroker.config import BrokerConfig, FileSource
from mediabroker.devices.device import Device, VideoMode, single_mode_camera
from mediabroker.devices.prober import run_probe
from mediabroker.errors import CaptureError
from mediabroker.sources.policy import Backoff

__all__ = ["FileProbes", "file_device", "file_devices", "probe_file"]

log = logging.getLogger(__name__)

FileKey = tuple[str, int, int]  # path, mtime ns, size: a changed file is probed again


def probe_file(path: Path) -> VideoMode:
    """(width, height, fps) of the video file ``path``, read by a probe child
    (blocking). Raises `CaptureError` when it cannot be opened or decoded."""
    info = run_probe(["file", str(path)], f"probing {path}")
    return int(info["width"]), int(info["height"]), float(info["fps"])


class FileProbes:
    """The native modes of video files, probed once per version of a file.

    A problem (missing, undecodable, a probe that hung) is logged once per
    file until it changes or the file is readable again. One scanner at a
    time (`DeviceCatalog` holds a lock around it).
    """

    def __init__(self, backoff: Backoff | None = None) -> None:
        self._backoff = backoff or Backoff()
        self._modes: dict[FileKey, VideoMode] = {}
        self._problems: dict[str, str] = {}  # path -> the problem already logged
        # path -> the version that failed, failures in a row, when to try again, why
        self._failed: dict[str, tuple[FileKey, int, float, str]] = {}
        self.probes = 0  # how many probe children ran

    def native(self, path: Path) -> VideoMode | None:
        """The mode ``path`` plays in, or None when it cannot be offered now."""
        try:
            stat = os.stat(path)
            key: FileKey = (str(path), stat.st_mtime_ns, stat.st_size)
            if key not in self._modes:
                self._modes[key] = self._probe(key, path)
        except FileNotFoundError:
            self._report(path, "it does not exist")
            return None
        except (OSError, CaptureError) as exc:
            self._report(path, getattr(exc, "strerror", None) or str(exc))
            return None
        if self._problems.pop(str(path), None) is not None:
            log.info("video file %s is readable again", path)
        return self._modes[key]

    def _probe(self, key: FileKey, path: Path) -> VideoMode:
        """Probe this version of ``path``, unless it failed and its backoff
        runs; raises `CaptureError` then, with the same reason."""
        now = time.monotonic()
        failed = self._failed.get(str(path))
        if failed is not None and failed[0] == key and now < failed[2]:
            raise CaptureError(failed[3])
        self.probes += 1
        try:
            mode = probe_file(path)
        except CaptureError as exc:
            count = failed[1] + 1 if failed is not None and failed[0] == key else 1
            retry_at = time.monotonic() + self._backoff.delay(count)  # from the probe's end
            self._failed[str(path)] = (key, count, retry_at, str(exc))
            raise
        self._failed.pop(str(path), None)
        return mode

    def _report(self, path: Path, problem: str) -> None:
        if self._problems.get(str(path)) != problem:
            log.warning(
                "video file %s is not offered: %s; it will be once it is a readable video "
                "(checked again when it changes)",
                path,
                problem,
            )
            self._problems[str(path)] = problem

    def __repr__(self) -> str:
        return f"<FileProbes {len(self._modes)} file(s) probes={self.probes}>"


def file_devices(config: BrokerConfig, probes: FileProbes) -> list[Device]:
    """The configured video files that can be played now, in config order."""
    devices = []
    for source in config.file_sources:
        path = source.path.absolute()
        native = probes.native(path)
        if native is not None:
            devices.append(file_device(source, path, native))
    return devices


def file_device(source: FileSource, path: Path, native: VideoMode) -> Device:
    """The camera that plays ``path`` (absolute) in its ``native`` mode."""
    backend = BackendSpec("file", {"path": str(path), "loop": source.loop})
    label = source.label or f"{path.name} (video file)"
    return single_mode_camera("file", str(path), label, backend, native)
