"""Microphones through PortAudio (the sounddevice package).

Design note. PortAudio is only ever opened where it can be killed. When the
sound server dies under an open stream (JACK killed, PulseAudio restarted),
PortAudio's stop, close and terminate block for good, and so does
sounddevice's exit handler, which terminates PortAudio when the interpreter
exits. So:

- capture runs in a capture process of its own (`PortAudioMicrophone`): its
  callback hands blocks to `read_block` through a bounded queue, and a
  block that does not come within ``stall_timeout_s`` raises `CaptureError`
  instead of waiting forever. After a stall the stream is never closed, and
  an exit watchdog thread ends the process with ``os._exit`` if it has not
  exited ``exit_grace_s`` later (the normal exit runs sounddevice's
  terminate, which hangs);
- enumeration in the daemon runs in a short-lived child (``python -c``, with
  a timeout), so the daemon's own process never loads PortAudio and never
  holds a JACK client. A child costs about 0.2 s, so it runs only when the
  machine's audio endpoints look different (ALSA nodes, JACK server
  sockets, sound-server processes) or the last answer is older than
  ``AUDIO_REPROBE_S``;
- PortAudio reads the host's audio servers once, when sounddevice is
  imported: each child imports it afresh, so a server started later is seen.

Without libportaudio2 (``import sounddevice`` raises OSError) there are no
audio devices and the log says why once.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from mediabroker.errors import CaptureError, PortAudioMissing
from mediastream.ring import AudioFormat

__all__ = [
    "AUDIO_REPROBE_S",
    "InputDevice",
    "PortAudioMicrophone",
    "audio_fingerprint",
    "list_input_devices",
    "probe_input_devices",
]

log = logging.getLogger(__name__)

STALL_TIMEOUT_S = 2.0  # no block for this long: the audio server stopped delivering
EXIT_GRACE_S = 3.0  # after PortAudio failed, the process is gone within this long
CLOSE_TIMEOUT_S = 2.0  # a normal close that takes longer is taken as hung
QUEUE_BLOCKS = 64  # blocks waiting for the capture loop (about 0.7 s at 512 / 48 kHz)
PROBE_TIMEOUT_S = 10.0
AUDIO_REPROBE_S = 30.0  # re-enumerate at least this often, even when nothing looks changed
HUNG_EXIT_STATUS = 3  # the capture process's "failed" status (capture.EXIT_FAILED)
STANDARD_RATES = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000)
SOUND_SERVERS = frozenset({"jackd", "jackdbus", "pipewire", "pulseaudio"})

# Runs in a child: it may import sounddevice; the daemon may not.
_PROBE_SCRIPT = r"""
import json, sys
try:
    import sounddevice as sd
except OSError as exc:
    print(json.dumps({"error": str(exc)}))
    raise SystemExit(0)
rates = json.loads(sys.argv[1])
apis = sd.query_hostapis()
devices = []
for d in sd.query_devices():
    if d["max_input_channels"] < 1:
        continue
    supported = []
    for rate in rates:
        try:
            sd.check_input_settings(device=d["index"], samplerate=rate, channels=1, dtype="float32")
        except (sd.PortAudioError, ValueError):
            continue
        supported.append(rate)
    api = apis[d["hostapi"]]
    devices.append({
        "name": d["name"],
        "hostapi": api["name"],
        "channels": d["max_input_channels"],
        "default_rate": d["default_samplerate"],
        "rates": supported,
        "low_latency": d["default_low_input_latency"],
        "high_latency": d["default_high_input_latency"],
        "default": api["default_input_device"] == d["index"],
    })
print(json.dumps({"devices": devices}))
"""


@dataclass(frozen=True, slots=True)
class InputDevice:
    """One PortAudio input device, as a probe child saw it."""

    name: str
    hostapi: str
    channels: int
    default_rate: int
    rates: tuple[int, ...]
    low_latency: float
    high_latency: float
    default: bool = False

    @property
    def label(self) -> str:
        return f"{self.name} ({self.hostapi})"

    @classmethod
    def from_probe(cls, raw: dict[str, Any]) -> InputDevice:
        default_rate = round(float(raw["default_rate"]))
        rates = tuple(sorted({int(r) for r in raw["rates"]}))
        return cls(
            str(raw["name"]),
            str(raw["hostapi"]),
            int(raw["channels"]),
            default_rate,
            rates,
            float(raw["low_latency"]),
            float(raw["high_latency"]),
            bool(raw["default"]),
        )


# -- enumeration (daemon side) -------------------------------------------


def probe_input_devices(timeout_s: float = PROBE_TIMEOUT_S) -> list[InputDevice]:
    """Ask a short-lived child for PortAudio's input devices (blocking, about
    0.2 s). Raises `PortAudioMissing` without libportaudio2, `CaptureError`
    when the child fails or times out."""
    env = dict(os.environ, JACK_NO_START_SERVER="1")  # list servers, never start one
    command = [sys.executable, "-c", _PROBE_SCRIPT, json.dumps(STANDARD_RATES)]
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise CaptureError(f"PortAudio enumeration did not finish within {timeout_s:g} s") from exc
    try:
        answer = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError) as exc:
        detail = done.stderr.strip()[-500:] or f"exit status {done.returncode}"
        raise CaptureError(f"PortAudio enumeration failed: {detail}") from exc
    if "error" in answer:
        raise PortAudioMissing(
            f"PortAudio is not available ({answer['error']}); install libportaudio2 for microphones"
        )
    return [InputDevice.from_probe(d) for d in answer["devices"]]


def audio_fingerprint(dev_root: Path = Path("/dev")) -> tuple[Any, ...]:
    """What changes when audio endpoints come or go: ALSA nodes, JACK server
    sockets, sound-server processes. Cheap: no PortAudio, no JACK client."""
    return (_names(dev_root / "snd"), _jack_sockets(dev_root / "shm"), _sound_servers())


def _names(directory: Path) -> tuple[str, ...]:
    try:
        return tuple(sorted(os.listdir(directory)))
    except OSError:
        return ()


def _jack_sockets(shm: Path) -> tuple[str, ...]:
    sockets = []
    for name in _names(shm):
        if name.startswith("jack_"):
            try:
                if stat.S_ISSOCK(os.lstat(shm / name).st_mode):
                    sockets.append(name)
            except OSError:
                continue
    return tuple(sockets)


def _sound_servers() -> tuple[tuple[int, str], ...]:
    servers = []
    for process in psutil.process_iter(["pid", "name"]):
        name = process.info["name"]
        if name in SOUND_SERVERS:
            servers.append((int(process.info["pid"]), str(name)))
    return tuple(sorted(servers))


class _Enumerator:
    """Caches the probe child's answer; probes again only on a change."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._fingerprint: tuple[Any, ...] | None = None
        self._probed_at = 0.0
        self._devices: list[InputDevice] = []
        self._rates: dict[tuple[str, str], tuple[int, ...]] = {}
        self._reported: str | None = None
        self.probes = 0

    def devices(self) -> list[InputDevice]:
        with self._lock:
            fingerprint = audio_fingerprint()
            fresh = time.monotonic() - self._probed_at < AUDIO_REPROBE_S
            if fingerprint == self._fingerprint and fresh:
                return list(self._devices)
            self._fingerprint, self._probed_at = fingerprint, time.monotonic()
            self.probes += 1
            self._devices = self._probe()
            return list(self._devices)

    def _probe(self) -> list[InputDevice]:
        try:
            found = probe_input_devices()
        except PortAudioMissing as exc:
            self._report(f"no audio devices: {exc}")
            return []
        except CaptureError as exc:
            # A probe that timed out says nothing about the devices: keep the
            # last answer (ending live tracks would be wrong) and ask next scan.
            self._report(f"audio devices not re-read: {exc}")
            self._fingerprint = None
            return self._devices
        self._reported = None
        return [self._keep_rates(d) for d in found]

    def _report(self, problem: str) -> None:
        if problem != self._reported:  # say it once, not on every rescan
            log.warning("%s", problem)
            self._reported = problem

    def _keep_rates(self, device: InputDevice) -> InputDevice:
        """A device we capture from may refuse every rate check while it is
        open (ALSA hw is exclusive): keep the rates it offered when it was
        free, else assume its default rate."""
        key = (device.hostapi, device.name)
        if device.rates:
            self._rates[key] = device.rates
            return device
        rates = self._rates.get(key, (device.default_rate,))
        return dataclasses.replace(device, rates=rates)


_ENUMERATOR = _Enumerator()


def list_input_devices() -> list[InputDevice]:
    """PortAudio's input devices now, host API defaults first (cached; see
    the module note). Never raises: problems are logged once."""
    devices = _ENUMERATOR.devices()
    return sorted(devices, key=lambda d: not d.default)


# -- capture (capture process side) ----------------------------------------


def _import_sounddevice() -> Any:
    try:
        import sounddevice
    except OSError as exc:
        raise CaptureError(f"PortAudio is not available ({exc}); install libportaudio2") from exc
    return sounddevice


def _find_device(sd: Any, name: str, hostapi: str) -> int:
    """The index of the device ``name`` of ``hostapi`` in this process's PortAudio
    (indices differ between processes and change with the servers)."""
    apis = sd.query_hostapis()
    for device in sd.query_devices():
        api = apis[device["hostapi"]]["name"]
        if device["name"] == name and api == hostapi and device["max_input_channels"] > 0:
            index: int = device["index"]
            return index
    raise CaptureError(f"{name} ({hostapi}) is gone: PortAudio no longer lists it")


class PortAudioMicrophone:
    """A PortAudio input stream, read block by block.

    The stream's callback (PortAudio's thread) copies each block, stamps its
    first sample in CLOCK_MONOTONIC ns from PortAudio's ADC time, and queues
    it; when the queue is full the oldest block is dropped and counted.
    ``latency`` (seconds) and ``block_frames`` are what the stream reports.
    """

    def __init__(
        self,
        fmt: AudioFormat,
        name: str,
        hostapi: str,
        *,
        latency: float | str = "low",
        block_frames: int = 0,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        exit_grace_s: float = EXIT_GRACE_S,
        queue_blocks: int = QUEUE_BLOCKS,
    ) -> None:
        self.format = fmt
        self.label = f"{name} ({hostapi})"
        self.stall_timeout_s = stall_timeout_s
        self.exit_grace_s = exit_grace_s
        self.block_frames = block_frames
        self.blocks = 0
        self.dropped_blocks = 0
        self.overflows = 0
        self._queue: queue.Queue[tuple[np.ndarray, int]] = queue.Queue(maxsize=queue_blocks)
        self._stalled = False
        self._stream: Any = None
        sd = _import_sounddevice()
        self._portaudio_error: type[Exception] = sd.PortAudioError
        index = _find_device(sd, name, hostapi)
        self._stream = self._open(sd, index, latency, block_frames)
        self.latency = float(self._stream.latency)
        log.info(
            "opened %s: %d Hz x%d, latency %.1f ms, block %s",
            self.label,
            fmt.sample_rate,
            fmt.channels,
            self.latency * 1000,
            f"{block_frames} frames" if block_frames else "chosen by the host",
        )

    def _open(self, sd: Any, index: int, latency: float | str, block_frames: int) -> Any:
        try:
            stream = sd.InputStream(
                device=index,
                samplerate=self.format.sample_rate,
                channels=self.format.channels,
                dtype="float32",
                latency=latency,
                blocksize=block_frames,
                callback=self._on_block,
            )
        except (sd.PortAudioError, ValueError) as exc:
            raise CaptureError(f"{self.label} cannot be opened: {exc}") from exc
        try:
            stream.start()
        except sd.PortAudioError as exc:
            stream.close()
            raise CaptureError(f"{self.label} cannot be started: {exc}") from exc
        return stream

    def _on_block(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        """PortAudio's callback thread: stamp, copy, queue. Never blocks."""
        now_ns = time.monotonic_ns()
        if status.input_overflow:
            self.overflows += 1
        age_s = time_info.currentTime - time_info.inputBufferAdcTime
        if not 0.0 <= age_s < 1.0:  # a host API without usable ADC times
            age_s = frames / self.format.sample_rate
        item = (indata.copy(), now_ns - int(age_s * 1e9))
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._drop_oldest(item)

    def _drop_oldest(self, item: tuple[np.ndarray, int]) -> None:
        try:
            self._queue.get_nowait()
        except queue.Empty:
            pass  # the reader just took it: there is room now
        self.dropped_blocks += 1
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped_blocks += 1

    def read_block(self) -> tuple[np.ndarray, int]:
        """The next block (frames x channels float32) and the CLOCK_MONOTONIC
        ns of its first sample. Blocks at most ``stall_timeout_s``; then raises
        `CaptureError` (the audio server stopped delivering) and arms the
        exit watchdog, since this process can no longer exit normally."""
        try:
            block, first_ns = self._queue.get(timeout=self.stall_timeout_s)
        except queue.Empty:
            self._stalled = True
            arm_exit_watchdog(self.exit_grace_s)
            raise CaptureError(
                f"{self.label}: the audio server stopped delivering "
                f"(no samples for {self.stall_timeout_s:g} s); did it exit?"
            ) from None
        self.blocks += 1
        self.block_frames = len(block)
        return block, first_ns

    def counters(self) -> dict[str, float]:
        return {
            "latency": self.latency,
            "blockSize": self.block_frames,
            "blocks": self.blocks,
            "droppedBlocks": self.dropped_blocks,
            "overflows": self.overflows,
        }

    def close(self) -> None:
        """Stop and close the stream, unless the server is gone (that would
        hang: the stream is abandoned and the exit watchdog armed). A close
        that hangs all the same is abandoned the same way. Idempotent."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        summary = (
            f"blocks={self.blocks} block_frames={self.block_frames} "
            f"dropped_blocks={self.dropped_blocks} overflows={self.overflows}"
        )
        if self._stalled:
            log.warning("%s: not closing the stream (it would hang); %s", self.label, summary)
            return
        closer = threading.Thread(target=self._close_stream, args=(stream,), daemon=True)
        closer.start()
        closer.join(CLOSE_TIMEOUT_S)
        if closer.is_alive():
            log.warning("%s: closing the stream hangs; abandoning it", self.label)
            arm_exit_watchdog(self.exit_grace_s)
        log.info("closed %s: %s", self.label, summary)

    def _close_stream(self, stream: Any) -> None:
        try:
            stream.abort()
            stream.close()
        except self._portaudio_error as exc:
            log.warning("%s: closing the stream: %s", self.label, exc)

    def __repr__(self) -> str:
        state = "stalled" if self._stalled else ("closed" if self._stream is None else "open")
        return f"<PortAudioMicrophone {self.label!r} {state} blocks={self.blocks}>"


_watchdog_lock = threading.Lock()
_watchdog_armed = False


def arm_exit_watchdog(grace_s: float) -> None:
    """End this process with ``os._exit`` if it is still alive ``grace_s`` from
    now. For a process whose normal exit would hang in PortAudio; the status
    is the capture process's "failed" one. Idempotent."""
    global _watchdog_armed
    with _watchdog_lock:
        if _watchdog_armed:
            return
        _watchdog_armed = True

    def expire() -> None:
        time.sleep(grace_s)
        log.error("still alive %g s after PortAudio failed (its exit hangs); exiting now", grace_s)
        os._exit(HUNG_EXIT_STATUS)

    threading.Thread(target=expire, name="portaudio-exit-watchdog", daemon=True).start()
