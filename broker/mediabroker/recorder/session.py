"""The recording loops: frames (or samples) from a track into `Segments`
until the duration is reached, a stop signal arrives or the track ends.

Both loops run under `StopSignals`: SIGTERM or SIGINT ends the loop after
the frame in hand, the file is closed as on any other end, and the summary
is printed. Leaving by an error (the track ended, a write failed) closes the
file too, so what was recorded stays playable.
"""

from __future__ import annotations

import time
from functools import partial
from typing import TextIO

import numpy as np

from mediabroker.errors import CommandError
from mediabroker.recorder.encoders import VideoFormat, open_video, preload
from mediabroker.recorder.plan import EXIT_USAGE, Plan
from mediabroker.recorder.progress import ProgressLine, human_size
from mediabroker.recorder.segments import Segments
from mediabroker.recorder.signals import StopSignals
from mediabroker.recorder.timeline import Timeline
from mediabroker.recorder.wav import WavSink
from mediastream import (
    AudioData,
    FrameOverwrittenError,
    MediaStreamTrack,
    ReadTimeoutError,
    VideoFrame,
)

__all__ = ["STALL_S", "record"]

STALL_S = 5.0  # no media for this long fails the recording (a device start takes up to ~5 s)
STOP_CHECK_S = 0.2  # a read waits this long at most before looking at the stop flag


def record(track: MediaStreamTrack, plan: Plan, out: TextIO) -> int:
    """Record ``track`` as ``plan`` says, with progress and results on
    ``out``; return the number of files written. Blocks until the end.

    Raises `CommandError` when a file cannot be written, `ReadTimeoutError`
    when no media came for `STALL_S`, `NotReadableError` when the track ends.
    """
    progress = ProgressLine(out)
    try:
        if plan.kind == "audioinput":
            return _record_audio(track, plan, progress)
        return _record_video(track, plan, progress)
    finally:
        progress.clear()


def _until(plan: Plan) -> str:
    if plan.request.duration_s is None:
        return "until stopped (Ctrl-C or SIGTERM)"
    return f"for {plan.request.duration_s:g} s"


def _where(segments: Segments[np.ndarray], stop: StopSignals) -> str:
    """Where the recording went, for the summary line."""
    stopped = f", stopped by {stop.requested}" if stop.requested else ""
    files = segments.files
    if not files:
        return f"; no file written{stopped}"
    where = (
        str(files[0])
        if len(files) == 1
        else (f"{len(files)} files, {files[0].name} to {files[-1].name} in {files[0].parent}")
    )
    removed = f"; removed {len(segments.removed)} older" if segments.removed else ""
    return f" to {where} ({human_size(segments.closed_bytes)}{removed}){stopped}"


# -- video -----------------------------------------------------------------------


def _video_format(track: MediaStreamTrack, plan: Plan) -> VideoFormat:
    settings = track.getSettings()
    fps = float(plan.request.fps or settings["frameRate"])
    color = settings.get("pixelFormat", "bgr24") != "gray8"
    fmt = VideoFormat(int(settings["width"]), int(settings["height"]), fps, color)
    if plan.codec is not None and plan.codec.name == "h264" and (fmt.width % 2 or fmt.height % 2):
        raise CommandError(
            f"H.264 needs an even width and height, not {fmt.width}x{fmt.height}; "
            "ask for another size (--width, --height)",
            EXIT_USAGE,
        )
    return fmt


def _record_video(track: MediaStreamTrack, plan: Plan, progress: ProgressLine) -> int:
    request, codec = plan.request, plan.codec
    assert codec is not None
    fmt = _video_format(track, plan)
    preload(codec)
    limit = None if request.duration_s is None else max(1, round(request.duration_s * fmt.fps))
    timeline = Timeline(fmt.fps, limit)
    segments: Segments[np.ndarray] = Segments(
        request.output,
        lambda path: open_video(path, codec, fmt, request.quality, request.bitrate),
        limit=None if request.segment_s is None else max(1, round(request.segment_s * fmt.fps)),
        keep=request.keep,
        say=progress.say,
        describe=lambda frames: f"{frames} frames, {frames / fmt.fps:.1f} s",
    )
    start = (
        f"recording {track.label} to {request.output}: {codec.label}, "
        f"{fmt.width}x{fmt.height} at {fmt.fps:g} fps, {_until(plan)}"
    )
    with StopSignals() as stop, segments:
        _video_loop(track, timeline, segments, stop, progress, start)
    progress.say(
        f"wrote {timeline.slots} frames ({fmt.width}x{fmt.height} at {fmt.fps:g} fps, "
        f"{codec.label}, {timeline.seconds:.1f} s; {timeline.repeated} repeated, "
        f"{timeline.dropped} dropped) of {track.label}{_where(segments, stop)}"
    )
    return len(segments.files)


def _video_loop(
    track: MediaStreamTrack,
    timeline: Timeline,
    segments: Segments[np.ndarray],
    stop: StopSignals,
    progress: ProgressLine,
    start: str,
) -> None:
    """Frames into ``segments`` until ``timeline`` is full or a stop is
    requested; ``start`` is said when the first frame is in."""
    previous: np.ndarray | None = None
    while not stop.requested and not timeline.full:
        frame = _next_frame(track, stop)
        if frame is None:
            return
        if previous is None:  # the file's time starts with this frame
            progress.say(start)
        image = _bgr(frame)
        placement = timeline.place(frame.timestamp, frame.seq)
        for _ in range(placement.repeats):  # none before the first frame
            assert previous is not None
            segments.write(previous)
        if placement.write:
            segments.write(image)
        previous = image
        progress.update(partial(_video_progress, timeline, segments))


def _video_progress(timeline: Timeline, segments: Segments[np.ndarray]) -> str:
    segmented = segments.limit is not None and segments.files
    current = f", {segments.files[-1].name}" if segmented else ""
    return (
        f"recording: {timeline.seconds:.1f} s, {timeline.slots} frames, "
        f"{human_size(segments.size)}, {timeline.repeated} repeated, "
        f"{timeline.dropped} dropped{current}"
    )


def _next_frame(track: MediaStreamTrack, stop: StopSignals) -> VideoFrame | None:
    """The next frame as a verified private copy; None once a stop is requested."""
    deadline = time.monotonic() + STALL_S
    while not stop.requested:
        frame = _read(track, deadline)
        if frame is None:
            continue
        assert isinstance(frame, VideoFrame)
        try:
            return frame.copy()
        except FrameOverwrittenError:
            continue  # lapped while copying: the next one will do
    return None


def _read(track: MediaStreamTrack, deadline: float) -> VideoFrame | AudioData | None:
    """A read of at most `STOP_CHECK_S` (a signal handler runs only between
    reads); None when it timed out before ``deadline``."""
    remaining = deadline - time.monotonic()
    try:
        return track.read(timeout=max(0.0, min(STOP_CHECK_S, remaining)))
    except ReadTimeoutError:
        if remaining > STOP_CHECK_S:
            return None
        raise ReadTimeoutError(f"no media from {track.label} for {STALL_S:g} s") from None


def _bgr(frame: VideoFrame) -> np.ndarray:
    """Pixels in the channel order the writers take."""
    if frame.format == "rgb24":
        return np.ascontiguousarray(frame.data[:, :, ::-1])
    return frame.data


# -- audio -----------------------------------------------------------------------


def _record_audio(track: MediaStreamTrack, plan: Plan, progress: ProgressLine) -> int:
    request = plan.request
    settings = track.getSettings()
    rate, channels = int(settings["sampleRate"]), int(settings["channelCount"])
    limit = None if request.duration_s is None else max(1, round(request.duration_s * rate))
    segments: Segments[np.ndarray] = Segments(
        request.output,
        lambda path: WavSink(path, rate, channels),
        limit=None if request.segment_s is None else max(1, round(request.segment_s * rate)),
        keep=request.keep,
        say=progress.say,
        describe=lambda samples: f"{samples / rate:.1f} s",
    )
    written = 0
    with StopSignals() as stop, segments:
        while not stop.requested and (limit is None or written < limit):
            block = _next_block(track, stop)
            if block is None:
                break
            if written == 0:
                progress.say(f"recording {track.label} to {request.output}, {_until(plan)}")
            pcm = block.data[: None if limit is None else limit - written]
            written += _write_split(segments, pcm)
            progress.update(partial(_audio_progress, written / rate, segments))
    progress.say(
        f"wrote {written / rate:.1f} s ({rate} Hz, {channels} channel(s), 16-bit) of "
        f"{track.label}{_where(segments, stop)}"
    )
    return len(segments.files)


def _audio_progress(seconds: float, segments: Segments[np.ndarray]) -> str:
    return f"recording: {seconds:.1f} s, {human_size(segments.size)}"


def _next_block(track: MediaStreamTrack, stop: StopSignals) -> AudioData | None:
    deadline = time.monotonic() + STALL_S
    while not stop.requested:
        block = _read(track, deadline)
        if block is not None:
            assert isinstance(block, AudioData)
            return block
    return None


def _write_split(segments: Segments[np.ndarray], samples: np.ndarray) -> int:
    """Write ``samples`` (frames x channels), split at segment boundaries."""
    start = 0
    while start < len(samples):
        room = segments.room
        end = len(samples) if room is None else min(len(samples), start + room)
        segments.write(samples[start:end], end - start)
        start = end
    return start
