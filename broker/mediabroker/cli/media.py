"""``mediabroker snapshot`` and ``mediabroker record``: a camera's frame to an
image, a camera to a video file, a microphone to a WAV file.

Ordinary clients of the daemon through the public `mediastream` API.
OpenCV is imported only by the commands that write images or video, so the
other commands never load it. Failures are `CommandError` (status 2 for a
file format we cannot write, found before the daemon is asked).
"""

from __future__ import annotations

import argparse
import sys
import time
import wave
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from mediabroker.cli.device_choice import find_device
from mediabroker.cli.options import (
    DEVICE_HELP,
    EXIT_OK,
    EXIT_USAGE,
    add_client_options,
    add_command,
    add_size_options,
    positive_seconds,
)
from mediabroker.errors import CommandError
from mediastream import (
    AudioData,
    FrameOverwrittenError,
    MediaDeviceInfo,
    MediaDevices,
    MediaStreamTrack,
    VideoFrame,
)

__all__ = ["Progress", "add_parsers", "run_record", "run_snapshot"]

READ_TIMEOUT_S = 5.0  # a device start takes up to the daemon's start timeout
PROGRESS_EVERY_S = 0.1  # tty progress line refresh; one line a second otherwise
VIDEO_CODECS = {".avi": "MJPG", ".mp4": "mp4v"}  # the headless wheel has no H.264 encoder


def add_parsers(commands: Any) -> None:
    """The ``snapshot`` and ``record`` sub-commands."""
    snapshot = add_command(
        commands,
        "snapshot",
        "save one frame of a camera as an image",
        "Save the next frame of a camera as an image (.png is lossless; .jpg, .bmp,\n"
        ".tiff, ... as OpenCV writes them).",
    )
    add_client_options(snapshot)
    snapshot.add_argument("device", metavar="DEVICE", help=DEVICE_HELP)
    snapshot.add_argument(
        "-o", "--output", type=Path, required=True, metavar="FILE", help="the image file to write"
    )
    add_size_options(snapshot)
    snapshot.set_defaults(func=_snapshot, client=True)
    _add_record(commands)


def _add_record(commands: Any) -> None:
    record = add_command(
        commands,
        "record",
        "record a camera (.avi, .mp4) or a microphone (.wav)",
        "Record a camera to .avi (Motion JPEG) or .mp4 (MPEG-4 Part 2; the headless\n"
        "OpenCV build has no H.264), or a microphone to .wav (16-bit PCM), for\n"
        "--duration seconds of media, with a progress line on stderr. Frames this\n"
        "reader missed are repeated, so the file keeps real time.",
    )
    add_client_options(record)
    record.add_argument("device", metavar="DEVICE", help=DEVICE_HELP)
    record.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="FILE",
        help="out.avi, out.mp4 or out.wav",
    )
    record.add_argument(
        "--duration",
        type=positive_seconds,
        default=5.0,
        metavar="SECONDS",
        help="seconds of media to record (default 5)",
    )
    add_size_options(record)
    record.set_defaults(func=_record, client=True)


def _snapshot(args: argparse.Namespace) -> int:
    return run_snapshot(args.run_dir, args.device, args.output, args.width, args.height, sys.stdout)


def _record(args: argparse.Namespace) -> int:
    return run_record(
        args.run_dir, args.device, args.output, args.duration, args.width, args.height, sys.stderr
    )


def _open_track(
    devices: MediaDevices, info: MediaDeviceInfo, extra: dict[str, Any]
) -> MediaStreamTrack:
    kind = "video" if info.kind == "videoinput" else "audio"
    constraints = {kind: {"deviceId": {"exact": info.deviceId}, **extra}}
    return devices.getUserMedia(constraints).getTracks()[0]


def _size_constraints(width: int | None, height: int | None) -> dict[str, Any]:
    return {
        name: {"exact": value}
        for name, value in (("width", width), ("height", height))
        if value is not None
    }


def _next_frame(track: MediaStreamTrack) -> VideoFrame:
    """The next frame, as a verified private copy."""
    while True:
        frame = track.read(timeout=READ_TIMEOUT_S)
        assert isinstance(frame, VideoFrame)
        try:
            return frame.copy()
        except FrameOverwrittenError:
            continue  # lapped while copying: the next one will do


def _bgr(frame: VideoFrame) -> np.ndarray:
    """Pixels in the channel order OpenCV writes."""
    if frame.format == "rgb24":
        return np.ascontiguousarray(frame.data[:, :, ::-1])
    return frame.data


# -- snapshot ------------------------------------------------------------------


def run_snapshot(
    run_dir: Path | None,
    query: str,
    output: Path,
    width: int | None,
    height: int | None,
    out: TextIO,
) -> int:
    """Save the next frame of a camera to ``output`` (PNG is lossless; any
    image format OpenCV writes)."""
    import cv2

    if not cv2.haveImageWriter(str(output)):
        raise CommandError(
            f"cannot write {output.suffix or 'extension-less'} images; name the file .png or .jpg",
            EXIT_USAGE,
        )
    with MediaDevices(run_dir, name="mediabroker snapshot") as devices:
        info = find_device(devices.enumerateDevices(), query, "videoinput")
        track = _open_track(devices, info, _size_constraints(width, height))
        try:
            frame = _next_frame(track)
        finally:
            track.stop()
    if not cv2.imwrite(str(output), _bgr(frame)):
        raise CommandError(f"OpenCV could not write {output}")
    shape = "x".join(str(n) for n in frame.data.shape[1::-1])
    out.write(f"saved frame {frame.seq} ({shape} {frame.format}) of {info.label} to {output}\n")
    return EXIT_OK


# -- record --------------------------------------------------------------------


class Progress:
    """One status line on a terminal (redrawn in place), one line a second otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = 0.0
        self._width = 0

    def update(self, text: str) -> None:
        """Show ``text``, unless the line was drawn too recently (then drop it)."""
        now = time.monotonic()
        if now - self._last < (PROGRESS_EVERY_S if self._tty else 1.0):
            return
        self._last = now
        if self._tty:
            self._stream.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def finish(self) -> None:
        """End the redrawn line, so what follows starts on a line of its own."""
        if self._tty and self._width:
            self._stream.write("\n")
            self._stream.flush()


def run_record(
    run_dir: Path | None,
    query: str,
    output: Path,
    duration_s: float,
    width: int | None,
    height: int | None,
    progress: TextIO,
) -> int:
    """Record ``duration_s`` seconds of a camera (.avi MJPG, .mp4 mp4v) or a
    microphone (.wav, 16-bit PCM) to ``output``, with a progress line."""
    kind = _recorded_kind(output)
    with MediaDevices(run_dir, name="mediabroker record") as devices:
        info = find_device(devices.enumerateDevices(), query, kind)
        extra = _size_constraints(width, height) if kind == "videoinput" else {}
        track = _open_track(devices, info, extra)
        try:
            if kind == "audioinput":
                summary = _record_audio(track, output, duration_s, Progress(progress))
            else:
                summary = _record_video(track, output, duration_s, Progress(progress))
        finally:
            track.stop()
    progress.write(f"wrote {summary} of {info.label} to {output}\n")
    return EXIT_OK


def _recorded_kind(output: Path) -> str:
    """The device kind a file of that name records; `CommandError` (2) for
    a format we do not write."""
    suffix = output.suffix.lower()
    if suffix == ".wav":
        return "audioinput"
    if suffix in VIDEO_CODECS:
        return "videoinput"
    raise CommandError(
        f"cannot record to {suffix or 'extension-less'} files: "
        "use .avi or .mp4 for a camera, .wav for a microphone",
        EXIT_USAGE,
    )


def _record_video(
    track: MediaStreamTrack, output: Path, duration_s: float, progress: Progress
) -> str:
    settings = track.getSettings()
    size = (int(settings["width"]), int(settings["height"]))
    rate = float(settings["frameRate"])
    color = settings.get("pixelFormat", "bgr24") != "gray8"
    writer = _video_writer(output, size, rate, color)
    target = max(1, round(duration_s * rate))
    written = skipped = last_seq = 0
    try:
        while written < target:
            frame = _next_frame(track)
            # A frame the reader missed is repeated, so the file keeps real time.
            gap = frame.seq - last_seq if last_seq else 1
            skipped += gap - 1
            last_seq = frame.seq
            image = _bgr(frame)
            for _ in range(min(gap, target - written)):
                writer.write(image)
                written += 1
            progress.update(
                f"recording {track.label}: {written / rate:.1f} / {target / rate:.1f} s, "
                f"{written} frames, {skipped} repeated"
            )
    finally:
        writer.release()
    progress.finish()
    return f"{written} frames ({size[0]}x{size[1]} at {rate:g} fps, {skipped} repeated)"


def _video_writer(output: Path, size: tuple[int, int], rate: float, color: bool) -> Any:
    """An open `cv2.VideoWriter` for ``output`` in the codec of its suffix;
    `CommandError` when OpenCV cannot write it."""
    import cv2

    fourcc = cv2.VideoWriter.fourcc(*VIDEO_CODECS[output.suffix.lower()])
    writer = cv2.VideoWriter(str(output), fourcc, rate, size, isColor=color)
    if not writer.isOpened():
        raise CommandError(f"OpenCV cannot write {output} ({output.suffix} at {rate:g} fps)")
    return writer


def _record_audio(
    track: MediaStreamTrack, output: Path, duration_s: float, progress: Progress
) -> str:
    settings = track.getSettings()
    rate, channels = int(settings["sampleRate"]), int(settings["channelCount"])
    target = max(1, round(duration_s * rate))
    written = 0
    with wave.open(str(output), "wb") as file:
        file.setnchannels(channels)
        file.setsampwidth(2)
        file.setframerate(rate)
        while written < target:
            block = track.read(timeout=READ_TIMEOUT_S)
            assert isinstance(block, AudioData)
            samples = block.data[: target - written]
            pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
            file.writeframes(pcm.tobytes())
            written += len(samples)
            progress.update(
                f"recording {track.label}: {written / rate:.1f} / {target / rate:.1f} s"
            )
    progress.finish()
    return f"{written / rate:.1f} s ({rate} Hz, {channels} channel(s), 16-bit)"
