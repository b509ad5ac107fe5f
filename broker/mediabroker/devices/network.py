"""Network cameras offered as cameras, at the size and rate they stream.

Design note. A device scan must never wait for a network: a URL that does
not answer would hold up every device's hot-plug (and the daemon's start)
for the probe's whole timeout. So each URL is probed in a thread of its own
(`NetworkProbes`), in a probe child as files are (OpenCV never loads in the
daemon), and a scan only reads the last good answer. A URL whose probe
fails is tried again with `Backoff`, and each change (not offered, offered
again) is logged once. Once probed, a camera stays offered in that mode: if
it drops later, its sources reconnect and its tracks are muted meanwhile
(`mediabroker.sources.source`). URLs are shown only through `redact_url`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable

from mediabroker.capture.backend import BackendSpec
from mediabroker.config import BrokerConfig, NetworkSource
from mediabroker.devices.device import Device, VideoMode, single_mode_camera
from mediabroker.devices.prober import run_probe
from mediabroker.errors import CaptureError
from mediabroker.sources.policy import Backoff
from mediabroker.urls import redact_url, url_label, url_secrets

__all__ = ["NETWORK_PROBE_TIMEOUT_S", "NetworkProbes", "network_device", "network_devices"]

log = logging.getLogger(__name__)

NETWORK_PROBE_TIMEOUT_S = 15.0  # past the child's own open and read timeouts (5 + 3 s)
URL_ENV = "MEDIABROKER_PROBE_URL"  # how the probe child gets the URL (not argv: see capture.probe)

Prober = Callable[[str], VideoMode]


def probe_url(url: str) -> VideoMode:
    """(width, height, fps) of the stream at ``url``, read by a probe child
    (blocking, at most `NETWORK_PROBE_TIMEOUT_S`). Raises `CaptureError`."""
    info = run_probe(
        ["network"],
        f"probing {redact_url(url)}",
        timeout_s=NETWORK_PROBE_TIMEOUT_S,
        env={URL_ENV: url},
        secrets=url_secrets(url),
    )
    return int(info["width"]), int(info["height"]), float(info["fps"])


class NetworkProbes:
    """The modes of network cameras, probed in the background.

    `native` never blocks: it answers with the last good probe's mode, and
    starts a probe thread for a URL that has none. `keep` stops the threads
    of URLs no longer configured; `close` stops them all (they also die with
    the process: daemon threads, and the probe child dies with its parent).
    """

    def __init__(self, backoff: Backoff, prober: Prober = probe_url) -> None:
        self._backoff = backoff
        self._prober = prober
        self._modes: dict[str, VideoMode] = {}
        self._running: dict[str, threading.Event] = {}  # url -> its thread's stop flag
        self._lock = threading.Lock()
        self.probes = 0  # how many probes ran

    def native(self, url: str) -> VideoMode | None:
        """The mode ``url`` streams in, None until a probe has succeeded."""
        with self._lock:
            mode = self._modes.get(url)
            if mode is None and url not in self._running:
                stop = self._running[url] = threading.Event()
                name = f"probe {redact_url(url)}"
                threading.Thread(
                    target=self._probe, args=(url, stop), name=name, daemon=True
                ).start()
            return mode

    def keep(self, urls: Iterable[str]) -> None:
        """Forget every URL but ``urls`` (a reload dropped the others)."""
        wanted = set(urls)
        with self._lock:
            for url in [u for u in self._running if u not in wanted]:
                self._running.pop(url).set()
            self._modes = {u: m for u, m in self._modes.items() if u in wanted}

    def close(self) -> None:
        """Stop every probe thread (one in a probe child finishes it first)."""
        self.keep(())

    def _probe(self, url: str, stop: threading.Event) -> None:
        failures, told = 0, ""
        while not stop.is_set():
            self.probes += 1
            try:
                mode = self._prober(url)
            except CaptureError as exc:
                failures += 1
                delay = self._backoff.delay(failures)
                told = self._report(url, str(exc), told, delay)
                stop.wait(delay)
                continue
            self._found(url, mode, stop, told)
            return

    def _report(self, url: str, problem: str, told: str, delay: float) -> str:
        """Log ``problem`` unless it is the one already told; returns it."""
        if problem != told:
            log.warning(
                "network camera %s is not offered: %s; trying again in %.1f s, then less "
                "and less often (every %g s at most)",
                redact_url(url),
                problem,
                delay,
                self._backoff.max_s,
            )
        return problem

    def _found(self, url: str, mode: VideoMode, stop: threading.Event, told: str) -> None:
        with self._lock:
            if stop.is_set():
                return  # dropped from the configuration meanwhile
            self._modes[url] = mode
            self._running.pop(url, None)
        again = " (it failed before)" if told else ""
        width, height, fps = mode
        log.info(
            "network camera %s offered%s: %dx%d at %g fps",
            redact_url(url),
            again,
            width,
            height,
            fps,
        )

    def __repr__(self) -> str:
        return (
            f"<NetworkProbes {len(self._modes)} offered {len(self._running)} probing "
            f"probes={self.probes}>"
        )


def network_devices(config: BrokerConfig, probes: NetworkProbes) -> list[Device]:
    """The configured network cameras probed so far, in config order (never blocks)."""
    probes.keep(source.url for source in config.network_sources)
    devices = []
    for source in config.network_sources:
        native = probes.native(source.url)
        if native is not None:
            devices.append(network_device(source, native))
    return devices


def network_device(source: NetworkSource, native: VideoMode) -> Device:
    """The camera that reads ``source`` in its ``native`` mode. Its ids hash
    the URL without credentials: a new password keeps the same deviceId."""
    backend = BackendSpec("network", {"url": source.url})
    label = source.label or url_label(source.url)
    return single_mode_camera("network", redact_url(source.url), label, backend, native)
