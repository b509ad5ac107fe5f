"""``mediabroker snapshot`` and ``mediabroker record``: a camera's frame to an
image, a camera to a video file, a microphone to a WAV file.

Ordinary clients of the daemon through the public `mediastream` API. This
module parses the command lines, finds the device and opens the track;
recording itself is `mediabroker.recorder`. OpenCV (and PyAV, for H.264)
are imported only by the commands that write images or video, so the
other commands never load them. Failures are `CommandError` (status 2 for
a file we cannot write, found before the daemon is asked).
"""

from __future__ import annotations

import argparse
import sys
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
    positive_int,
)
from mediabroker.errors import CommandError
from mediabroker.recorder import Request, make_plan, record
from mediabroker.recorder.encoders import CODECS
from mediabroker.recorder.files import check_directory
from mediastream import (
    FrameOverwrittenError,
    MediaDeviceInfo,
    MediaDevices,
    MediaStreamTrack,
    VideoFrame,
)

__all__ = ["add_parsers", "run_snapshot"]

READ_TIMEOUT_S = 5.0  # a device start takes up to the daemon's start timeout


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


RECORD_DESCRIPTION = """\
Record a camera to a video file or a microphone to a WAV file (16-bit PCM),
for --duration seconds or until stopped: SIGTERM (a service manager) and
Ctrl-C finish the file and exit 0. The file keeps real time: frames are
placed by their capture time, and the repeated and dropped frames this
costs are counted in the summary. A progress line shows on a terminal only.

containers and codecs:
  .mp4  H.264 through PyAV (pip install 'mediabroker[record]'), a fragmented
        MP4 that stays playable whatever stops the recorder; without PyAV,
        or with --codec mpeg4, MPEG-4 Part 2 through OpenCV
  .mkv  H.264 through PyAV, Matroska
  .avi  Motion JPEG through OpenCV
  .wav  16-bit PCM

examples:
  mediabroker record camera -o clip.mp4 --duration 10
  mediabroker record camera -o /var/lib/rec/cam.mp4 --segment 600 --keep 144
                        ten-minute files cam-00001.mp4, ..., the newest 144 kept
"""


def _add_record(commands: Any) -> None:
    record = add_command(
        commands,
        "record",
        "record a camera (.mp4, .mkv, .avi) or a microphone (.wav)",
        RECORD_DESCRIPTION,
    )
    add_client_options(record)
    record.add_argument("device", metavar="DEVICE", help=DEVICE_HELP)
    record.add_argument(
        "-o",
        "--output",
        type=Path,
        required=True,
        metavar="FILE",
        help="out.mp4, out.mkv, out.avi or out.wav (with --segment: the name the numbered "
        "files are made from)",
    )
    record.add_argument(
        "--duration",
        type=_positive_float,
        metavar="SECONDS",
        help="seconds of media to record (default: until stopped)",
    )
    record.add_argument(
        "--segment",
        type=_positive_float,
        metavar="SECONDS",
        help="start a new numbered file (out-00001.mp4, ...) every SECONDS of media; "
        "numbering goes on after the highest number already there",
    )
    record.add_argument(
        "--keep",
        type=positive_int,
        metavar="N",
        help="with --segment: keep the newest N finished segments (earlier runs' too), "
        "remove older ones",
    )
    _add_video_options(record)
    add_size_options(record)
    record.set_defaults(func=_record, client=True)


def _add_video_options(record: argparse.ArgumentParser) -> None:
    record.add_argument(
        "--codec",
        choices=sorted(CODECS),
        help="video codec (default: h264 in .mp4 and .mkv when PyAV is installed, else mpeg4; "
        "mjpeg in .avi)",
    )
    record.add_argument(
        "--fps",
        type=_positive_float,
        metavar="FPS",
        help="frame rate of the file; the daemon drops frames to it, once for every "
        "track that asks (default: the camera's)",
    )
    rate = record.add_mutually_exclusive_group()
    rate.add_argument(
        "--quality",
        type=_quality,
        metavar="1-100",
        help="H.264: constant quality, 55 by default (x264's CRF 23; CRF = 51 x (100 - Q) "
        "/ 100); Motion JPEG: JPEG quality",
    )
    rate.add_argument(
        "--bitrate",
        type=_bitrate,
        metavar="RATE",
        help="H.264 only: average bits per second, such as 2M or 800k",
    )


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return value


def _quality(text: str) -> int:
    value = positive_int(text)
    if value > 100:
        raise argparse.ArgumentTypeError(f"{text} is over 100")
    return value


def _bitrate(text: str) -> int:
    """``2M``, ``800k`` or ``1500000``: bits per second."""
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:].lower(), 1)
    digits = text[:-1] if scale > 1 else text
    try:
        value = round(float(digits) * scale)
    except (ValueError, OverflowError):  # not a number, nan, inf
        raise argparse.ArgumentTypeError(f"{text!r} is not a bitrate (2M, 800k)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} must be more than 0")
    return value


def _snapshot(args: argparse.Namespace) -> int:
    return run_snapshot(args.run_dir, args.device, args.output, args.width, args.height, sys.stdout)


def _record(args: argparse.Namespace) -> int:
    request = Request(
        output=args.output,
        duration_s=args.duration,
        segment_s=args.segment,
        keep=args.keep,
        codec=args.codec,
        fps=args.fps,
        quality=args.quality,
        bitrate=args.bitrate,
    )
    plan = make_plan(request)  # every usage mistake, before the daemon is asked
    with MediaDevices(args.run_dir, name="mediabroker record") as devices:
        info = find_device(devices.enumerateDevices(), args.device, plan.kind)
        extra = _size_constraints(args.width, args.height) if plan.kind == "videoinput" else {}
        if args.fps is not None:
            extra["frameRate"] = {"exact": args.fps}
        track = _open_track(devices, info, extra)
        try:
            record(track, plan, sys.stdout)
        finally:
            track.stop()
    return EXIT_OK


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

    check_directory(output)
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
