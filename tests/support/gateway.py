"""``mediabroker web`` in a process of its own, on a daemon of the test's own."""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import sys

import psutil

from mediabroker.launcher import ReadyListener
from support import Daemon, child_env

__all__ = ["GatewayProcess", "free_port", "http_request"]


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel's pick; the gateway binds it next)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class GatewayProcess:
    """``mediabroker web --listen 127.0.0.1:<port>`` for ``daemon``; ready when
    it has said READY=1 over the notify protocol (after its site listens)."""

    def __init__(
        self, daemon: Daemon, *extra_args: str, config: str = "", host: str = "127.0.0.1"
    ) -> None:
        self.daemon = daemon
        base = daemon.run_dir.parent
        self.port = free_port()
        self.listen = f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"
        self.config_path = base / "web-config.toml"
        self.config_path.write_text(config)
        self.log_path = base / "web.log"
        self._log = open(self.log_path, "wb")
        self._ready = ReadyListener(base / "web-notify")
        command = [sys.executable, "-m", "mediabroker", "--log-level", "debug", "web"]
        command += ["--listen", self.listen, "--config", str(self.config_path)]
        command += ["--run-dir", str(daemon.run_dir), *extra_args]
        env = child_env(MEDIABROKER_SHM_PREFIX=daemon.prefix, **self._ready.env)
        self.process = subprocess.Popen(
            command, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 30.0) -> GatewayProcess:
        if self._ready.wait_for("READY=1", timeout) is None:
            raise AssertionError(
                f"the gateway was not ready within {timeout:g} s; exit status "
                f"{self.process.poll()}; log:\n{self.log()}"
            )
        return self

    def wait_exit(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout)

    def cpu_seconds(self) -> float:
        """User + system CPU of the gateway and its threads so far."""
        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def terminate(self, timeout: float = 20.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self._log.close()
        self._ready.close()

    def __enter__(self) -> GatewayProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def http_request(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one request; any status, no exception for 4xx."""
    target = url.removeprefix("http://")
    netloc, _, path = target.partition("/")
    host, _, port = netloc.rpartition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        connection.request(method, "/" + path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()
