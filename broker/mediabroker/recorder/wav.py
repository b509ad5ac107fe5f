"""16-bit PCM WAV files, the audio sink of `Segments`."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

__all__ = ["WavSink"]


class WavSink:
    """A WAV file being written: float samples in [-1, 1] in, 16-bit PCM
    out. The header's length is written at `close` (idempotent)."""

    def __init__(self, path: Path, rate: int, channels: int) -> None:
        self.path = path
        self._file: wave.Wave_write | None = wave.open(str(path), "wb")
        self._file.setnchannels(channels)
        self._file.setsampwidth(2)
        self._file.setframerate(rate)

    def __repr__(self) -> str:
        return f"<WavSink {self.path.name} {'open' if self._file else 'closed'}>"

    def write(self, samples: np.ndarray) -> None:
        """Append ``samples`` (frames x channels, float)."""
        assert self._file is not None, "write after close"
        pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
        self._file.writeframes(pcm.tobytes())

    def close(self) -> None:
        """Patch the header and close. Idempotent."""
        file, self._file = self._file, None
        if file is not None:
            file.close()
