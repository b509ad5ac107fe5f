"""What a recording will be, worked out and checked before the daemon is
asked for anything: the kind of device, the codec, the options that go
together. Every mistake is a `CommandError` with status 2 (a usage error,
which systemd's ``RestartPreventExitStatus=2`` keeps from restarting)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mediabroker.errors import CommandError
from mediabroker.recorder.encoders import CONTAINERS, Codec, choose_codec
from mediabroker.recorder.files import check_directory

__all__ = ["AUDIO_SUFFIXES", "EXIT_USAGE", "Plan", "Request", "make_plan"]

EXIT_USAGE = 2
AUDIO_SUFFIXES = (".wav",)


@dataclass(frozen=True)
class Request:
    """What the command line asked for. None: the default (no end, no
    segments, the container's codec, the track's rate, the codec's quality)."""

    output: Path
    duration_s: float | None = None
    segment_s: float | None = None
    keep: int | None = None
    codec: str | None = None
    fps: float | None = None
    quality: int | None = None  # 1..100
    bitrate: int | None = None  # bits per second


@dataclass(frozen=True)
class Plan:
    """A checked `Request`: ``kind`` is the device kind it records
    ("videoinput" or "audioinput"), ``codec`` None for audio."""

    request: Request
    kind: str
    codec: Codec | None


def make_plan(request: Request) -> Plan:
    """Check ``request``; raises `CommandError` (2) naming the mistake."""
    suffix = request.output.suffix.lower()
    if suffix not in CONTAINERS and suffix not in AUDIO_SUFFIXES:
        raise CommandError(
            f"cannot record to {suffix or 'extension-less'} files: use .mp4, .mkv or .avi "
            "for a camera, .wav for a microphone",
            EXIT_USAGE,
        )
    if request.keep is not None and request.segment_s is None:
        raise CommandError("--keep removes old segments: it needs --segment", EXIT_USAGE)
    check_directory(request.output)
    if suffix in AUDIO_SUFFIXES:
        _check_audio(request)
        return Plan(request, "audioinput", None)
    codec = choose_codec(suffix, request.codec)
    _check_codec_options(request, codec)
    return Plan(request, "videoinput", codec)


def _check_audio(request: Request) -> None:
    video_only = {
        "--codec": request.codec,
        "--fps": request.fps,
        "--quality": request.quality,
        "--bitrate": request.bitrate,
    }
    given = [name for name, value in video_only.items() if value is not None]
    if given:
        raise CommandError(f"{', '.join(given)}: video only; .wav is 16-bit PCM", EXIT_USAGE)


def _check_codec_options(request: Request, codec: Codec) -> None:
    for option, value, takes in (
        ("--quality", request.quality, codec.quality),
        ("--bitrate", request.bitrate, codec.bitrate),
    ):
        if value is not None and not takes:
            which = "H.264 (.mp4, .mkv)" if option == "--bitrate" else "H.264 or .avi"
            raise CommandError(
                f"{option} does not apply to {codec.label} (OpenCV's writer takes no such "
                f"setting); record {which} instead",
                EXIT_USAGE,
            )
