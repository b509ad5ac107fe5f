"""Who may use the gateway: on loopback only this user, from loopback host names
and not from another site's page; beyond loopback only with the token."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import Daemon, child_env
from support.gateway import GatewayProcess, http_request
from support.users import AS_NOBODY, needs_root
from support.whep import WhepViewer

pytestmark = pytest.mark.timeout(120)

TOKEN = "correct-horse-battery-staple-42"


@pytest.fixture
def gateway(daemon: Daemon) -> Iterator[GatewayProcess]:
    with GatewayProcess(daemon) as process:
        process.wait_ready()
        yield process
        assert process.terminate() == 0, process.log()


def test_another_host_name_is_refused_on_loopback(gateway: GatewayProcess) -> None:
    # DNS rebinding: a page of evil.example whose name now resolves to 127.0.0.1.
    status, _, body = http_request(gateway.url + "/api/devices", headers={"Host": "evil.example"})
    assert status == 421 and b"localhost" in body, (status, body)
    for host in (f"localhost:{gateway.port}", f"127.0.0.1:{gateway.port}", "localhost"):
        assert http_request(gateway.url + "/api/devices", headers={"Host": host})[0] == 200, host


def test_another_sites_page_is_refused_and_gets_no_cors(gateway: GatewayProcess) -> None:
    cross = {"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}
    status, _, _ = http_request(gateway.url + "/snapshot/x.jpg", headers=cross)
    assert status == 403
    status, headers, _ = http_request(gateway.url + "/whep/x", "OPTIONS")
    assert "Access-Control-Allow-Origin" not in headers, headers


@needs_root
def test_another_local_user_is_refused_on_loopback(gateway: GatewayProcess) -> None:
    fetch = (
        "import urllib.request, urllib.error, sys\n"
        "try:\n"
        f"    urllib.request.urlopen('{gateway.url}/api/devices', timeout=10)\n"
        "    print(200)\n"
        "except urllib.error.HTTPError as e:\n"
        "    print(e.code, e.read().decode().strip())\n"
    )
    result = subprocess.run(
        [*AS_NOBODY, "/usr/bin/python3", "-I", "-c", fetch],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.startswith("403") and "uid" in result.stdout, result


def test_beyond_loopback_needs_a_token(daemon: Daemon, tmp_path: Path) -> None:
    (tmp_path / "empty.toml").write_text("")
    command = [
        sys.executable,
        "-m",
        "mediabroker",
        "web",
        "--listen",
        "0.0.0.0:1",
        "--run-dir",
        str(daemon.run_dir),
        "--config",
        str(tmp_path / "empty.toml"),
    ]
    result = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result
    assert "[web] token" in result.stderr, result.stderr


def test_a_short_token_is_a_configuration_error(daemon: Daemon) -> None:
    with GatewayProcess(daemon, config='[web]\ntoken = "short"\n') as gateway:
        assert gateway.wait_exit() == 2
        assert "at least 16" in gateway.log() and "short" not in gateway.log().split("token")[-1]


def test_with_a_token_every_request_needs_it(daemon: Daemon) -> None:
    config = f'[web]\ntoken = "{TOKEN}"\n'
    with GatewayProcess(daemon, config=config, host="0.0.0.0") as gateway:
        gateway.wait_ready()
        assert http_request(gateway.url + "/api/devices")[0] == 401
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        assert (
            http_request(gateway.url + "/api/devices", headers={"Authorization": "Bearer x"})[0]
            == 401
        )
        status, _, body = http_request(f"{gateway.url}/api/devices?token={TOKEN}")
        assert status == 200, body
        listed = json.loads(body)
        assert listed["access"]["tokenRequired"] and not listed["access"]["loopbackOnly"]
        camera = next(d["deviceId"] for d in listed["devices"] if d["kind"] == "videoinput")
        status, headers, _ = http_request(f"{gateway.url}/whep/{camera}", "OPTIONS", headers=bearer)
        assert headers.get("Access-Control-Allow-Origin") == "*", headers

        async def watch() -> None:
            viewer = WhepViewer(f"{gateway.url}/whep/{camera}?width=160&height=120", bearer)
            try:
                assert await viewer.connect() == 201
                await viewer.wait_frames(3, 20)
                assert await viewer.delete() == 200
            finally:
                await viewer.close()

        asyncio.run(watch())
        assert TOKEN not in gateway.log(), "the token must never reach the log"
        assert gateway.terminate() == 0


def test_the_page_and_its_code_need_no_token_but_its_data_does(daemon: Daemon) -> None:
    """``<script src>`` cannot carry a token: the page and its files are code only."""
    with GatewayProcess(daemon, config=f'[web]\ntoken = "{TOKEN}"\n', host="0.0.0.0") as gateway:
        gateway.wait_ready()
        for path in ("/", "/static/page.js", "/static/page.css"):
            assert http_request(gateway.url + path)[0] == 200, path
        for path in ("/api/devices", "/api/sources", "/api/events", "/metrics", "/snapshot/x.jpg"):
            assert http_request(gateway.url + path)[0] == 401, path
        assert gateway.terminate() == 0
