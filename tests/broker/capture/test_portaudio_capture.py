"""Microphones through PortAudio, on a real JACK server (dummy driver).

A JACK dummy server is real-time paced and gives PortAudio a real input
device, ``system``, without a sound card; its capture ports deliver
silence. A tone reaches the capture stream by connecting
``jack_simple_client``'s sine outputs to the stream's own input ports (see
tests/support/jack.py). This test process never loads PortAudio itself: a process
that did would hang at exit once its JACK server is gone.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest
import zmq

from conftest import assert_nothing_left
from mediabroker.capture.backend import BackendSpec
from mediabroker.capture.main import EXIT_FAILED, CaptureSpec, capture_main, decode_status
from mediabroker.capture.portaudio import EXIT_GRACE_S, STALL_TIMEOUT_S
from mediastream import MediaDevices, MediaStreamTrack, NotReadableError
from mediastream.frames import AudioData
from mediastream.ring import AudioFormat, Ring
from support import Daemon, unique_prefix, wait_until
from support.jack import (
    JACK_API,
    JACK_LABEL,
    PERIOD,
    RATE,
    TONE_AMPLITUDE,
    TONE_HZ,
    JackServer,
    serve_jack,
)


@pytest.fixture
def jack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[JackServer]:
    """A JACK dummy server of our own; every child started from here finds it."""
    with serve_jack(tmp_path / "jackd.log", monkeypatch) as server:
        yield server


@pytest.fixture
def jack_daemon(jack: JackServer, tmp_path: Path) -> Iterator[Daemon]:
    """A daemon (fake devices too) that sees the JACK server."""
    daemon = Daemon(tmp_path / "run", hardware=True)
    try:
        daemon.wait_ready()
        yield daemon
        if daemon.process.poll() is None:
            assert daemon.terminate() == 0, daemon.log()
        assert_nothing_left(daemon)
    finally:
        daemon.close()


def jack_track(devices: MediaDevices, channels: int = 2) -> MediaStreamTrack:
    found = [d for d in devices.enumerateDevices() if d.label == JACK_LABEL]
    assert len(found) == 1, [d.label for d in devices.enumerateDevices()]
    constraints = {"deviceId": {"exact": found[0].deviceId}, "channelCount": {"exact": channels}}
    return devices.getUserMedia({"audio": constraints}).getAudioTracks()[0]


def read_audio(track: MediaStreamTrack, seconds: float) -> list[tuple[AudioData, float]]:
    """Every block read for ``seconds`` of wall clock, each with when it was read."""
    blocks = []
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        data = track.read(timeout=2.5)
        assert isinstance(data, AudioData)
        blocks.append((data, time.monotonic()))
    return blocks


def contiguous(blocks: list[tuple[AudioData, float]]) -> np.ndarray:
    """The samples of consecutive blocks, checking that none were lost between them."""
    for (a, _), (b, _) in itertools.pairwise(blocks):
        assert b.position == a.position + a.numberOfFrames, "samples were lost between reads"
    return np.concatenate([data.data for data, _ in blocks])


def test_capture_from_jack_through_the_daemon(jack: JackServer, jack_daemon: Daemon) -> None:
    """1. The daemon lists ``system (JACK Audio Connection Kit)``; its own
       process never loads PortAudio or libjack (enumeration runs in a child).
    2. A stereo track on it delivers silence, contiguous, at JACK's 48 kHz by
       the wall clock (within JACK's own pacing), and the blocks' timestamps
       advance exactly as the samples do.
    3. jack_simple_client's 240 Hz / 720 Hz sines, connected to the capture
       stream's input ports, arrive as exactly those sines (amplitude 0.2,
       phase-continuous over 0.5 s).
    4. After the track stops, the capture process's closing log line reports
       JACK's 512-frame blocks and that no block was dropped on our side."""
    with MediaDevices(jack_daemon.run_dir) as devices:
        track = jack_track(devices)
        settings = track.getSettings()
        assert (settings["sampleRate"], settings["channelCount"]) == (RATE, 2)
        # Latency and block size are the stream's own, as the capture measured them.
        assert settings["latency"] >= 0 and settings["blockSize"] == PERIOD, settings
        maps = Path(f"/proc/{jack_daemon.pid}/maps").read_text()
        assert "libportaudio" not in maps and "libjack" not in maps

        assert track.read(timeout=5) is not None  # started
        blocks = read_audio(track, 2.0)
        samples = contiguous(blocks)
        assert samples.shape[1] == 2 and not samples.any(), "the dummy driver's capture is silent"
        first, last = blocks[0], blocks[-1]
        frames = last[0].position - first[0].position
        by_wall = frames / (last[1] - first[1])
        by_timestamps = frames / (last[0].timestamp - first[0].timestamp)
        print(f"JACK capture: {by_wall:.0f} Hz by wall clock, {by_timestamps:.0f} Hz by timestamps")
        # The dummy driver paces itself with sleeps and runs slow when the CPU
        # is contended (45.6 kHz seen under a parallel test run): JACK's rate
        # is only approximately the wall clock's. Our timestamps must follow
        # what JACK delivered exactly, and no block may be lost (checked below).
        assert by_wall == pytest.approx(RATE, rel=0.10)
        assert by_timestamps == pytest.approx(by_wall, rel=0.01)

        connect_tone(jack)
        wait_for_tone(track)
        tone = contiguous(read_blocks_of(track, RATE // 2))[: RATE // 2]
        for channel, frequency in enumerate(TONE_HZ):
            amplitude, residual = fit_sine(tone[:, channel].astype(np.float64), frequency)
            print(f"{frequency:g} Hz: amplitude {amplitude:.4f}, rms residual {residual:.2e}")
            assert amplitude == pytest.approx(TONE_AMPLITUDE, rel=0.01)
            assert residual < 1e-3
        track.stop()
    line = wait_until(
        lambda: _closing_line(jack_daemon.log()) or "",
        10,
        "the capture's closing line",
        jack_daemon.log,
    )
    assert f"block_frames={PERIOD}" in line, line
    assert "dropped_blocks=0" in line, line  # overflows: JACK's own xruns when the CPU is busy


@pytest.mark.parametrize(("rate", "period"), [(48000, 256), (44100, 1024)], ids=str)
def test_the_latency_setting_is_within_the_latency_capability(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rate: int, period: int
) -> None:
    """Settings are members of the track's capabilities for a real PortAudio
    stream too. PortAudio's JACK host gives the device the latency of JACK's
    capture ports (one period) and reports the open stream's latency as 0
    (its ports' latency before they are connected), which was the setting,
    outside the capability {period / rate}. The setting is now at least one
    block and the device's lowest latency: one period here, at each rate and
    period."""
    with serve_jack(tmp_path / "jackd.log", monkeypatch, rate, period):
        daemon = Daemon(tmp_path / "run", hardware=True)
        try:
            daemon.wait_ready()
            with MediaDevices(daemon.run_dir) as devices:
                track = jack_track(devices, channels=1)
                settings, capability = track.getSettings(), track.getCapabilities()["latency"]
                assert (settings["sampleRate"], settings["blockSize"]) == (rate, period), settings
                assert capability["min"] <= settings["latency"] <= capability["max"], capability
                assert settings["latency"] == pytest.approx(period / rate), settings
                track.stop()
            assert daemon.terminate() == 0, daemon.log()
            assert_nothing_left(daemon)
        finally:
            daemon.close()


def _closing_line(log: str) -> str | None:
    lines = [line for line in log.splitlines() if f"closed {JACK_LABEL}:" in line]
    return lines[-1] if lines else None


def connect_tone(jack: JackServer) -> None:
    """Start the sine client and connect it to whatever PortAudio port listens
    to system:capture_1 and _2 (the daemon's capture process)."""
    jack.start_tone()
    wait_until(
        lambda: "jack_simple_client:output2" in jack.connections(),
        10,
        "jack_simple_client's ports",
        jack.connections,
    )
    ports = jack.connections()
    for output, capture in (("output1", "system:capture_1"), ("output2", "system:capture_2")):
        listeners = [p for p in ports[capture] if not p.startswith("system:")]
        assert len(listeners) == 1, ports
        jack.run("jack_connect", f"jack_simple_client:{output}", listeners[0])


def wait_for_tone(track: MediaStreamTrack) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        data = track.read(timeout=2.5)
        assert isinstance(data, AudioData)
        if np.abs(data.data).max() > TONE_AMPLITUDE / 2:
            return
    raise AssertionError("the tone never arrived")


def read_blocks_of(track: MediaStreamTrack, frames: int) -> list[tuple[AudioData, float]]:
    blocks: list[tuple[AudioData, float]] = []
    while sum(b.numberOfFrames for b, _ in blocks) < frames:
        data = track.read(timeout=2.5)
        assert isinstance(data, AudioData)
        blocks.append((data, time.monotonic()))
    return blocks


def fit_sine(x: np.ndarray, frequency: float) -> tuple[float, float]:
    """(amplitude, rms residual) of the best sine of ``frequency`` through ``x``."""
    n = np.arange(len(x))
    sin, cos = np.sin(2 * np.pi * frequency * n / RATE), np.cos(2 * np.pi * frequency * n / RATE)
    a, b = 2 * np.mean(x * sin), 2 * np.mean(x * cos)
    residual = x - (a * sin + b * cos)
    return float(np.hypot(a, b)), float(np.sqrt(np.mean(residual**2)))


def test_killing_jackd_ends_the_track_and_the_daemon_serves_on(
    jack: JackServer, jack_daemon: Daemon
) -> None:
    """1. A client captures from JACK through the daemon.
    2. jackd is SIGKILLed mid-capture (PortAudio's close now hangs for good).
    3. The track fires ``ended`` and read() raises NotReadableError; the
       capture process that held PortAudio is gone.
    4. The daemon still serves the fake camera, and stops cleanly."""
    with MediaDevices(jack_daemon.run_dir) as devices:
        before = jack_daemon.note_children().copy()
        track = jack_track(devices, channels=1)
        assert track.read(timeout=5) is not None
        audio_pids = {p for p in jack_daemon.note_children() - before if _is_capture(p)}
        assert len(audio_pids) == 1, audio_pids
        ended: list[str] = []
        track.addEventListener("ended", lambda event: ended.append(event.type))
        jack.kill()
        killed = time.monotonic()
        wait_until(lambda: ended, 15, "the JACK track to end", jack_daemon.log)
        ended_after = time.monotonic() - killed
        with pytest.raises(NotReadableError):
            track.read(timeout=1)
        wait_until(
            lambda: not [p for p in audio_pids if _alive(p)],
            15,
            "the PortAudio capture process to exit",
            lambda: [p for p in audio_pids if _alive(p)],
        )
        gone_after = time.monotonic() - killed
        print(
            f"jackd killed: track ended in {ended_after:.1f} s, process gone in {gone_after:.1f} s"
        )
        video = devices.getUserMedia({"video": True}).getVideoTracks()[0]
        assert video.label.startswith("Fake camera")
        assert video.read(timeout=5) is not None
        wait_until(
            lambda: JACK_LABEL not in [d.label for d in devices.enumerateDevices()],
            10,
            "the JACK device to leave the device list",
        )


def _is_capture(pid: int) -> bool:
    """A capture process (spawned), not the spawn context's resource tracker."""
    try:
        return "spawn_main" in " ".join(psutil.Process(pid).cmdline())
    except psutil.NoSuchProcess:
        return False


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_stalled_capture_process_reports_and_exits_though_portaudio_hangs(
    jack: JackServer, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """1. A real capture process (capture_main, spawned as the daemon does)
       captures from JACK into a real ring and reports ``ready``.
    2. jackd is SIGKILLed: callbacks stop, and PortAudio's close and its
       exit handler would block forever.
    3. Within the stall timeout the process reports ``failed`` (the audio
       server stopped delivering), and it exits with EXIT_FAILED: the exit
       watchdog ends it when sounddevice's exit handler hangs."""
    name = unique_prefix() + "jack"
    ring = Ring.create(name, AudioFormat(RATE, 1), RATE)
    ctx = zmq.Context()
    status = ctx.socket(zmq.PULL)
    status.setsockopt(zmq.RCVTIMEO, 15_000)
    status.bind(f"ipc://{tmp_path}/status")
    spec = CaptureSpec(
        "jacktest",
        name,
        BackendSpec("portaudio", {"name": "system", "hostapi": JACK_API}),
        0.0,
        f"ipc://{tmp_path}/status",
        os.getpid(),
    )
    process = multiprocessing.get_context("spawn").Process(target=capture_main, args=(spec,))
    process.start()
    try:
        assert decode_status(status.recv())["event"] == "ready"
        jack.kill()
        killed = time.monotonic()
        failed = decode_status(status.recv())
        reported = time.monotonic() - killed
        assert failed["event"] == "failed"
        assert "the audio server stopped delivering" in failed["reason"]
        process.join(STALL_TIMEOUT_S + EXIT_GRACE_S + 10)
        exited = time.monotonic() - killed
        assert process.exitcode == EXIT_FAILED
        assert reported < STALL_TIMEOUT_S + 2
        _, err = capfd.readouterr()
        assert "its exit hangs); exiting now" in err, err
        with capfd.disabled():
            print(f"stall reported after {reported:.1f} s, process exited after {exited:.1f} s")
    finally:
        if process.is_alive():
            process.kill()
            process.join(5)
        status.close(linger=0)
        ctx.term()
        ring.close()
        Ring.unlink(name)
