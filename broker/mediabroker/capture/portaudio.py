"""Microphones through PortAudio (the sounddevice package), in a capture process.

Design note. PortAudio is only ever opened where it can be killed. When the
sound server dies under an open stream (JACK killed, PulseAudio restarted),
PortAudio's stop, close and terminate block for good, and so does
sounddevice's exit handler, which terminates PortAudio when the interpreter
exits. So capture runs in a capture process of its own
(`PortAudioMicrophone`): its callback hands blocks to `read_block` through
a bounded queue, and a block that does not come within ``stall_timeout_s``
raises `CaptureError` instead of waiting forever. After a stall the stream
is never closed, and an exit watchdog thread ends the process with
``os._exit`` if it has not exited ``exit_grace_s`` later (the normal exit
runs sounddevice's terminate, which hangs). Enumeration runs in a probe
child (`query_input_devices`, see `mediabroker.devices.portaudio`), never in
the daemon.

sounddevice is imported on first use (`import_sounddevice`): importing this
module loads no PortAudio.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any

import numpy as np

from mediabroker.errors import CaptureError, PortAudioMissing
from mediastream.ring import AudioFormat

__all__ = [
    "EXIT_GRACE_S",
    "STALL_TIMEOUT_S",
    "PortAudioMicrophone",
    "arm_exit_watchdog",
    "find_device",
    "import_sounddevice",
    "query_input_devices",
]

log = logging.getLogger(__name__)

STALL_TIMEOUT_S = 2.0  # no block for this long: the audio server stopped delivering
EXIT_GRACE_S = 3.0  # after PortAudio failed, the process is gone within this long
CLOSE_TIMEOUT_S = 2.0  # a normal close that takes longer is taken as hung
QUEUE_BLOCKS = 64  # blocks waiting for the capture loop (about 0.7 s at 512 / 48 kHz)
HUNG_EXIT_STATUS = 3  # the capture process's "failed" status (capture.main.EXIT_FAILED)
STANDARD_RATES = (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000)


def import_sounddevice() -> Any:
    """The sounddevice module, imported afresh in this process (PortAudio reads
    the host's audio servers then). Raises `PortAudioMissing` without
    libportaudio2."""
    try:
        import sounddevice
    except OSError as exc:
        raise PortAudioMissing(
            f"PortAudio is not available ({exc}); install libportaudio2 for microphones"
        ) from exc
    return sounddevice


def query_input_devices(rates: tuple[int, ...] = STANDARD_RATES) -> list[dict[str, Any]]:
    """PortAudio's input devices as this process sees them, each with the
    ``rates`` it accepts for mono float32 (what a probe child reports; see
    `mediabroker.devices.portaudio.InputDevice.from_probe`). Raises
    `PortAudioMissing`."""
    sd = import_sounddevice()
    apis = sd.query_hostapis()
    devices = []
    for device in sd.query_devices():
        if device["max_input_channels"] < 1:
            continue
        api = apis[device["hostapi"]]
        devices.append(
            {
                "name": device["name"],
                "hostapi": api["name"],
                "channels": device["max_input_channels"],
                "default_rate": device["default_samplerate"],
                "rates": _supported_rates(sd, device["index"], rates),
                "low_latency": device["default_low_input_latency"],
                "high_latency": device["default_high_input_latency"],
                "default": api["default_input_device"] == device["index"],
            }
        )
    return devices


def _supported_rates(sd: Any, index: int, rates: tuple[int, ...]) -> list[int]:
    supported = []
    for rate in rates:
        try:
            sd.check_input_settings(device=index, samplerate=rate, channels=1, dtype="float32")
        except (sd.PortAudioError, ValueError):
            continue
        supported.append(rate)
    return supported


def find_device(sd: Any, name: str, hostapi: str) -> int:
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
    ``latency`` (seconds) and ``block_frames`` are what the stream reports;
    `input_latency` is the track's setting.
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
        sd = import_sounddevice()
        self._portaudio_error: type[Exception] = sd.PortAudioError
        index = find_device(sd, name, hostapi)
        self._lowest_latency = float(sd.query_devices(index)["default_low_input_latency"])
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

    @property
    def input_latency(self) -> float:
        """Seconds from a sample's capture to its block reaching us: what the
        stream reports, but never below one block (a sample comes only with
        its block) nor below the device's own lowest latency, the floor of
        the track's ``latency`` capability. PortAudio's JACK host reports 0:
        its ports' latency before they are connected."""
        block_s = self.block_frames / self.format.sample_rate
        return max(self.latency, block_s, self._lowest_latency)

    def counters(self) -> dict[str, float]:
        return {
            "latency": self.input_latency,
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
