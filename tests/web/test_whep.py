"""The gateway for remote consumers: WHEP from a Python peer (aiortc), snapshots,
bad requests, restarts. Real processes: a daemon on fake devices, ``mediabroker
web``, and aiortc peers over loopback. The browser's side is test_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from conftest import assert_nothing_left
from mediastream import MediaDevices, MediaStream
from support import Daemon, wait_until
from support.gateway import GatewayProcess, http_request
from support.whep import WhepViewer

pytestmark = pytest.mark.timeout(180)

FRAMES_TIMEOUT_S = 20.0  # ICE, DTLS and the first keyframe on a busy 2-CPU machine


@pytest.fixture
def gateway(daemon: Daemon) -> Iterator[GatewayProcess]:
    """A ready gateway on the test's own daemon; at the end it must exit 0 on SIGTERM."""
    with GatewayProcess(daemon) as process:
        process.wait_ready()
        yield process
        status = process.terminate()
        assert status == 0, f"gateway exited with {status}; log:\n{process.log()}"


def camera_id(daemon: Daemon) -> str:
    with MediaDevices(daemon.run_dir, name="test") as md:
        return next(d.deviceId for d in md.enumerateDevices() if d.kind == "videoinput")


def get_json(gateway: GatewayProcess, path: str) -> Any:
    status, _, body = http_request(gateway.url + path)
    assert status == 200, (status, body)
    return json.loads(body)


def encoders(gateway: GatewayProcess) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = get_json(gateway, "/api/sources")["sources"]
    return rows


async def watch(url: str, frames: int = 10) -> WhepViewer:
    viewer = WhepViewer(url)
    status = await viewer.connect()
    assert status == 201, f"POST {url} gave {status}"
    await viewer.wait_frames(frames, FRAMES_TIMEOUT_S)
    return viewer


def test_a_python_peer_watches_a_camera_over_whep(daemon: Daemon, gateway: GatewayProcess) -> None:
    url = f"{gateway.url}/whep/{camera_id(daemon)}?width=320&height=240"

    async def scenario() -> None:
        viewer = await watch(url, frames=15)
        try:
            assert "H264" in viewer.answer
            assert viewer.location.startswith("/whep/")
            sizes = {(f.width, f.height) for f in viewer.frames}
            assert sizes == {(320, 240)}, sizes
            # The fake pattern moves by one grey level a frame: the picture changes.
            first, last = viewer.frames[0].bgr, viewer.frames[-1].bgr
            assert not np.array_equal(first, last)
            [row] = encoders(gateway)
            assert (row["width"], row["height"], row["viewers"]) == (320, 240, 1), row
            assert await viewer.delete() == 200
            assert await viewer.delete() == 404, "a second DELETE of the same session"
            wait_until(lambda: encoders(gateway)[0]["viewers"] == 0, 5, "the viewer to leave")
        finally:
            await viewer.close()

    asyncio.run(scenario())


def test_viewers_of_one_size_share_one_encoder(daemon: Daemon, gateway: GatewayProcess) -> None:
    camera = camera_id(daemon)

    async def scenario() -> None:
        first = await watch(f"{gateway.url}/whep/{camera}?width=320&height=240")
        [row] = encoders(gateway)
        keyframes_before = row["keyframes"]
        second = await watch(f"{gateway.url}/whep/{camera}?width=320&height=240")
        other = await watch(f"{gateway.url}/whep/{camera}?width=160&height=120")
        try:
            rows = {(r["width"], r["height"]): r for r in encoders(gateway)}
            assert set(rows) == {(320, 240), (160, 120)}, rows
            assert rows[320, 240]["viewers"] == 2 and rows[160, 120]["viewers"] == 1
            # The second viewer's join asked the shared encoder for a keyframe.
            assert rows[320, 240]["keyframes"] > keyframes_before, rows[320, 240]
        finally:
            for viewer in (first, second, other):
                await viewer.delete()
                await viewer.close()

    asyncio.run(scenario())


def test_a_capture_restart_keeps_the_peer_connection(
    daemon: Daemon, gateway: GatewayProcess
) -> None:
    camera = camera_id(daemon)

    async def scenario() -> None:
        viewer = await watch(f"{gateway.url}/whep/{camera}?width=320&height=240")
        try:
            with MediaDevices(daemon.run_dir, name="test") as md:
                [source] = [s for s in md.broker_stats()["sources"] if s["kind"] == "video"]
            os.kill(source["pid"], signal.SIGKILL)
            before = len(viewer.frames)
            await viewer.wait_frames(before + 30, FRAMES_TIMEOUT_S)
            assert viewer.state == "connected"
        finally:
            await viewer.delete()
            await viewer.close()

    asyncio.run(scenario())


def test_bad_requests_get_clear_answers(daemon: Daemon, gateway: GatewayProcess) -> None:
    camera = camera_id(daemon)
    whep = f"{gateway.url}/whep/{camera}"
    sdp = {"Content-Type": "application/sdp"}
    status, _, body = http_request(whep, "POST", b"v=0", {"Content-Type": "text/plain"})
    assert status == 415, body
    status, _, body = http_request(whep, "POST", b"v=0\r\nm=video 9 x\r\n", sdp)
    assert status == 400 and b"offer" in body, (status, body)
    status, _, body = http_request(whep + "?width=wide", "POST", b"v=0", sdp)
    assert status == 400 and b"width" in body, (status, body)
    status, _, body = http_request(f"{gateway.url}/whep/{camera[:-1]}x", "POST", b"m=video", sdp)
    assert status == 404 and camera.encode() in body, (status, body)  # "did you mean"
    status, _, _ = http_request(whep, "POST", b"m=video" + b" " * 100_000, sdp)
    assert status == 413
    status, _, _ = http_request(f"{gateway.url}/whep/{camera}/no-such-session", "DELETE")
    assert status == 404


def test_max_viewers_is_a_limit(daemon: Daemon) -> None:
    camera = camera_id(daemon)
    with GatewayProcess(daemon, config="[web]\nmax_viewers = 1\n") as gateway:
        gateway.wait_ready()

        async def scenario() -> None:
            first = await watch(f"{gateway.url}/whep/{camera}?width=160&height=120", frames=1)
            try:
                second = WhepViewer(f"{gateway.url}/whep/{camera}")
                assert await second.connect() == 503
                await second.close()
            finally:
                await first.delete()
                await first.close()

        asyncio.run(scenario())
        assert gateway.terminate() == 0


def test_snapshots_are_jpegs_of_the_camera(daemon: Daemon, gateway: GatewayProcess) -> None:
    camera = camera_id(daemon)
    status, headers, body = http_request(
        f"{gateway.url}/snapshot/{camera}.jpg?width=320&height=180"
    )
    assert status == 200 and headers["Content-Type"] == "image/jpeg", (status, headers)
    picture = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (180, 320, 3)

    async def while_watched() -> None:
        viewer = await watch(f"{gateway.url}/whep/{camera}?width=320&height=240", frames=2)
        try:  # the running encoder's newest picture, no track of its own
            status, _, body = http_request(
                f"{gateway.url}/snapshot/{camera}.jpg?width=320&height=240"
            )
            assert status == 200
            shape = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape
            assert shape == (240, 320, 3)
        finally:
            await viewer.delete()
            await viewer.close()

    asyncio.run(while_watched())
    status, _, body = http_request(f"{gateway.url}/snapshot/nothing.jpg")
    assert status == 404, body


def test_devicechange_reaches_event_streams(daemon: Daemon, gateway: GatewayProcess) -> None:
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=20)
    try:
        connection.request("GET", "/api/events")
        response = connection.getresponse()
        assert response.headers["Content-Type"] == "text/event-stream"
        assert response.readline() == b": connected\n"
        with MediaDevices(daemon.run_dir, name="test") as md:
            plugged = md.add_fake_device("videoinput", "Plugged camera")
            lines = [response.readline() for _ in range(3)]
            assert b"event: devicechange\n" in lines, lines
            ids = [d["deviceId"] for d in get_json(gateway, "/api/devices")["devices"]]
            assert plugged in ids
    finally:
        connection.close()


def test_the_page_and_its_files_are_served(gateway: GatewayProcess) -> None:
    status, headers, body = http_request(gateway.url + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html"), headers
    assert b"page.js" in body
    for name in ("page.js", "page.css"):
        status, _, _ = http_request(f"{gateway.url}/static/{name}")
        assert status == 200, name
    assert http_request(f"{gateway.url}/static/../../etc/passwd")[0] == 404
    access = get_json(gateway, "/api/devices")["access"]
    assert access == {"listen": gateway.listen, "loopbackOnly": True, "tokenRequired": False}


def test_sigterm_ends_every_viewer_and_leaves_no_session(daemon: Daemon, tmp_path: Path) -> None:
    camera = camera_id(daemon)
    with GatewayProcess(daemon) as gateway:
        gateway.wait_ready()

        async def scenario() -> None:
            viewer = await watch(f"{gateway.url}/whep/{camera}?width=160&height=120", frames=2)
            assert gateway.terminate() == 0, gateway.log()
            await viewer.close()

        asyncio.run(scenario())
    with MediaDevices(daemon.run_dir, name="test") as md:
        names = [s["name"] for s in md.broker_stats()["sessions"]]
    assert "mediabroker web" not in names, names


def test_published_generators_and_streams_are_watched_through_mutes(
    daemon: Daemon, gateway: GatewayProcess
) -> None:
    with MediaDevices(daemon.run_dir, name="painter") as md:
        init = {
            "width": 320,
            "height": 240,
            "frameRate": 30,
            "pixelFormat": "bgr24",
            "label": "Painted",
        }
        generator = md.createVideoTrackGenerator(init, publish=True)
        md.publishStream(MediaStream([generator.track]), "lobby")
        stop = threading.Event()

        def paint() -> None:
            n = 0
            while not stop.wait(1 / 30):  # the painter's own frame rate
                if not generator.muted:
                    generator.write(np.full((240, 320, 3), n % 256, np.uint8))
                n += 1

        painter = threading.Thread(target=paint)
        painter.start()
        try:
            listed = get_json(gateway, "/api/devices")
            assert generator.deviceId in [d["deviceId"] for d in listed["devices"]]
            assert "lobby" in [s["name"] for s in listed["streams"]]
            asyncio.run(_watch_through_a_mute(gateway, generator))
        finally:
            stop.set()
            painter.join()
            generator.close()


async def _watch_through_a_mute(gateway: GatewayProcess, generator: Any) -> None:
    by_device = await watch(f"{gateway.url}/whep/{generator.deviceId}")
    by_name = await watch(f"{gateway.url}/whep/lobby?width=160&height=120")
    try:
        assert {(f.width, f.height) for f in by_name.frames} == {(160, 120)}
        generator.muted = True  # no frames now: the gateway repeats the last one
        muted_at = len(by_device.frames)
        await by_device.wait_frames(muted_at + 2, FRAMES_TIMEOUT_S)
        generator.muted = False
        await by_device.wait_frames(len(by_device.frames) + 20, FRAMES_TIMEOUT_S)
        assert by_device.state == "connected" and by_name.state == "connected"
    finally:
        for viewer in (by_device, by_name):
            await viewer.delete()
            await viewer.close()


def samples(text: str, family: str) -> dict[str, float]:
    """``{labels: value}`` of one metric family in Prometheus text."""
    found = {}
    for line in text.splitlines():
        name, _, rest = line.partition("{")
        if name == family:
            labels, _, value = rest.rpartition("} ")
            found[labels] = float(value)
    return found


def test_metrics_carry_the_daemons_figures_and_the_gateways(
    daemon: Daemon, gateway: GatewayProcess
) -> None:
    camera = camera_id(daemon)

    async def scenario() -> str:
        viewer = await watch(f"{gateway.url}/whep/{camera}?width=320&height=240", frames=20)
        try:
            status, headers, body = http_request(gateway.url + "/metrics")
            assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return body.decode()
        finally:
            await viewer.delete()
            await viewer.close()

    text = asyncio.run(scenario())
    viewers = samples(text, "mediabroker_gateway_viewers")
    assert list(viewers.values()) == [1.0] and camera in next(iter(viewers)), viewers
    [encoded] = samples(text, "mediabroker_gateway_encoded_frames_total").values()
    [seconds] = samples(text, "mediabroker_gateway_encode_seconds_total").values()
    assert encoded >= 20 and 0 < seconds < encoded, (encoded, seconds)
    frames = samples(text, "mediabroker_source_frames_total")
    assert any(camera in labels and value >= 20 for labels, value in frames.items()), frames
    consumers = samples(text, "mediabroker_consumer_delivered_frames_total")
    assert any('consumer="mediabroker web"' in labels for labels in consumers), consumers
    roles = samples(text, "mediabroker_process_resident_memory_bytes")
    assert any('role="daemon"' in labels for labels in roles), roles
    # After the viewer left and the encoder retired, its counters do not go down.
    wait_until(
        lambda: not encoders(gateway), 15, "the idle encoder to retire", lambda: encoders(gateway)
    )
    later = http_request(gateway.url + "/metrics")[2].decode()
    [encoded_later] = samples(later, "mediabroker_gateway_encoded_frames_total").values()
    assert encoded_later >= encoded


def test_viewers_outlive_a_daemon_restart(tmp_path: Path) -> None:
    first = Daemon(tmp_path / "run")
    second: Daemon | None = None
    try:
        first.wait_ready()
        camera = camera_id(first)
        with GatewayProcess(first) as gateway:
            gateway.wait_ready()

            async def scenario() -> None:
                nonlocal second
                viewer = await watch(f"{gateway.url}/whep/{camera}?width=160&height=120")
                try:
                    first.kill()  # SIGKILL: no goodbye to its clients
                    wait_until(
                        lambda: not first.living_children(), 10, "its capture processes to exit"
                    )
                    first.close()
                    second = Daemon(tmp_path / "run", prefix=first.prefix)
                    second.wait_ready()
                    before = len(viewer.frames)
                    await viewer.wait_frames(
                        before + 60, FRAMES_TIMEOUT_S
                    )  # 30 is the repeats' most
                    assert viewer.state == "connected"
                finally:
                    await viewer.delete()
                    await viewer.close()

            asyncio.run(scenario())
            assert gateway.terminate() == 0, gateway.log()
        assert second is not None
        assert second.terminate() == 0
        assert_nothing_left(second)
    finally:
        for process in (first, second):
            if process is not None:
                process.close()
