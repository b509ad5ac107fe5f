"""A real JACK server on the dummy driver: a PortAudio input without a sound card.

``jackd --no-realtime -d dummy`` runs a real-time-paced graph whose
``system:capture_N`` ports deliver silence. Each server gets a name of its
own (``JACK_DEFAULT_SERVER``), so a test never talks to a user's JACK and
two tests never share one; clients find it through that variable, which
`JackServer.env` gives. JACK leaves files in /dev/shm when it is killed;
`JackServer.close` removes the ones this server made.

A tone: ``jack_simple_client`` plays a 200-sample sine table on two output
ports (left one step per sample, right three), i.e. 240 Hz and 720 Hz at
48 kHz, amplitude 0.2. The dummy driver's capture ports cannot be fed (they
are the driver's outputs), so the tone goes straight into the PortAudio
stream's own input port, which PortAudio connected to ``system:capture_N``.
"""

from __future__ import annotations

import ctypes.util
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

SHM = Path("/dev/shm")
RATE = 48000
PERIOD = 512
TONE_HZ = (RATE / 200, 3 * RATE / 200)  # jack_simple_client's left and right sines
TONE_AMPLITUDE = 0.2
START_TIMEOUT_S = 10.0

JACK_API = "JACK Audio Connection Kit"  # PortAudio's host API name for JACK
JACK_LABEL = f"system ({JACK_API})"  # the dummy server's capture device, as we label it


def require_jack() -> None:
    """Skip (outside CI) or fail (CI=true) when jackd or libportaudio2 is missing.

    PortAudio is looked up as sounddevice looks it up, without loading it:
    a test process that initialises PortAudio could hang at exit once its
    JACK server is gone, so only children load it.
    """
    tools = ("jackd", "jack_wait", "jack_lsp", "jack_connect", "jack_simple_client")
    missing = [tool for tool in tools if not shutil.which(tool)]
    if ctypes.util.find_library("portaudio") is None:
        missing.append("libportaudio2")
    if not missing:
        return
    reason = f"needs {', '.join(missing)} (apt-get install jackd2 libportaudio2)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the test {reason}")
    pytest.skip(reason)


class JackServer:
    """``jackd`` on the dummy driver under a unique server name."""

    def __init__(self, log_path: Path, rate: int = RATE, period: int = PERIOD) -> None:
        self.name = f"mbtest{uuid.uuid4().hex[:10]}"
        self.env = dict(
            os.environ,
            JACK_DEFAULT_SERVER=self.name,
            JACK_NO_AUDIO_RESERVATION="1",
            JACK_NO_START_SERVER="1",
        )
        self._shm_before = set(os.listdir(SHM))
        self._log = open(log_path, "wb")
        self._clients: list[subprocess.Popen[bytes]] = []
        command = ["jackd", "--no-realtime", "-d", "dummy", "-r", str(rate), "-p", str(period)]
        self.process = subprocess.Popen(
            [*command, "-C", "2", "-P", "2"],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self._wait_up()

    def _wait_up(self) -> None:
        try:
            # jack_wait blocks until the server answers (it polls inside; no sleep here).
            self.run("jack_wait", "--wait", "--timeout", str(int(START_TIMEOUT_S)))
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            self.close()
            raise AssertionError(f"jackd did not come up: {exc}; log:\n{self.log()}") from exc

    def run(self, *command: str) -> str:
        done = subprocess.run(
            command,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            check=True,
        )
        return done.stdout

    def connections(self) -> dict[str, list[str]]:
        """Every port and what it is connected to (``jack_lsp -c``)."""
        ports: dict[str, list[str]] = {}
        current = ""
        for line in self.run("jack_lsp", "-c").splitlines():
            if line.startswith((" ", "\t")):
                ports[current].append(line.strip())
            else:
                current = line.strip()
                ports[current] = []
        return ports

    def start_tone(self) -> subprocess.Popen[bytes]:
        """``jack_simple_client``: a 240 Hz / 720 Hz sine on ``jack_simple_client:output1/2``."""
        client = subprocess.Popen(
            ["jack_simple_client"], env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._clients.append(client)
        return client

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: the server dies under its clients, as in a crash."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(5)

    def log(self) -> str:
        self._log.flush()
        return Path(self._log.name).read_text(errors="replace")

    def close(self) -> None:
        """Stop clients and server (SIGTERM, then SIGKILL), then remove the
        /dev/shm files this server left. Idempotent."""
        for process in [*self._clients, self.process]:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)
        self._clients.clear()
        self._remove_leftovers()
        self._log.close()

    def _remove_leftovers(self) -> None:
        other_servers = [p for p in psutil.process_iter(["name"]) if p.info["name"] == "jackd"]
        for name in set(os.listdir(SHM)) - self._shm_before:
            ours = self.name in name
            shared = name.startswith(("jack-", "jack_db")) and not other_servers
            if not (ours or shared):
                continue
            path = SHM / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)


@contextmanager
def serve_jack(
    log_path: Path, monkeypatch: pytest.MonkeyPatch, rate: int = RATE, period: int = PERIOD
) -> Iterator[JackServer]:
    """A JACK dummy server of the test's own, which every child started from
    the test (a daemon, a probe child, a capture process) finds; closed after."""
    require_jack()
    server = JackServer(log_path, rate, period)
    try:
        for key in ("JACK_DEFAULT_SERVER", "JACK_NO_AUDIO_RESERVATION", "JACK_NO_START_SERVER"):
            monkeypatch.setenv(key, server.env[key])
        yield server
    finally:
        server.close()
