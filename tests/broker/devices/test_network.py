"""Network cameras as devices: probed in the background, never in a scan's way.

The probe itself is the seam here (a function of the URL); the real probe
child against real servers is tests/broker/capture/test_network_source.py.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest

from mediabroker.config import BrokerConfig, NetworkSource
from mediabroker.devices.device import VideoMode
from mediabroker.devices.network import NetworkProbes, network_devices
from mediabroker.errors import CaptureError
from mediabroker.sources.policy import Backoff
from support import wait_until

URL = "rtsp://admin:hunter22@cam.local:8554/live"
FAST = Backoff(first_s=0.01, max_s=0.05, jitter=0)


def config(tmp_path: Path, *sources: NetworkSource) -> BrokerConfig:
    return BrokerConfig(run_dir=tmp_path / "run", network_sources=sources)


def test_a_scan_never_waits_for_a_probe(tmp_path: Path) -> None:
    """1. The probe blocks: scans answer at once, without the camera.
    2. The probe answers: the next scan lists it, labelled from the URL
       without the password, with the stream's size and rate."""
    release = threading.Event()

    def slow(url: str) -> VideoMode:
        release.wait(10)
        return (640, 360, 25.0)

    probes = NetworkProbes(FAST, slow)
    cameras = config(tmp_path, NetworkSource(URL))
    try:
        assert network_devices(cameras, probes) == []
        assert network_devices(cameras, probes) == []
        release.set()
        found = wait_until(lambda: network_devices(cameras, probes), 5, "the probed camera")
    finally:
        release.set()
        probes.close()
    device = found[0]
    assert device.label == "cam.local:8554/live (rtsp)" and device.kind == "videoinput"
    assert device.native_modes == ((640, 360, 25.0),)
    assert device.capabilities["width"] == {"min": 1, "max": 640}
    assert "hunter22" not in repr(device)
    assert device.backend.params["url"] == URL  # the capture process needs it whole
    assert probes.probes == 1


def test_a_url_that_fails_is_retried_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """1. The probe fails three times the same way, then succeeds.
    2. One warning (password hidden), then one line saying it is offered."""
    calls: list[str] = []

    def flaky(url: str) -> VideoMode:
        calls.append(url)
        if len(calls) <= 3:
            raise CaptureError("cannot open rtsp://admin:***@cam.local:8554/live")
        return (320, 240, 15.0)

    probes = NetworkProbes(FAST, flaky)
    cameras = config(tmp_path, NetworkSource(URL, "Door"))
    with caplog.at_level(logging.INFO, logger="mediabroker.devices.network"):
        found = wait_until(lambda: network_devices(cameras, probes), 5, "the camera")
    probes.close()
    assert [d.label for d in found] == ["Door"] and len(calls) == 4
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert "is not offered" in messages[0] and "trying again" in messages[0]
    assert "offered (it failed before)" in messages[1]
    assert all("hunter22" not in m for m in messages)


def test_a_url_dropped_from_the_configuration_stops_being_probed(tmp_path: Path) -> None:
    def failing(url: str) -> VideoMode:
        raise CaptureError("down")

    probes = NetworkProbes(Backoff(first_s=5, max_s=5, jitter=0), failing)
    network_devices(config(tmp_path, NetworkSource(URL)), probes)
    wait_until(lambda: probes.probes >= 1, 5, "the first probe")
    threads = [t for t in threading.enumerate() if t.name.startswith("probe rtsp://")]
    assert len(threads) == 1 and "hunter22" not in threads[0].name
    network_devices(config(tmp_path), probes)  # a reload without it
    threads[0].join(5)  # its backoff wait is cut short
    assert not threads[0].is_alive()
