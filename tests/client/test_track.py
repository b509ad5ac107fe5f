"""MediaStreamTrack on a real daemon: reading, zero copy, stop, clone, enabled."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from mediabroker.capture.fake import TONE_AMPLITUDE, verify_pattern
from mediastream import (
    AudioData,
    FrameOverwrittenError,
    InvalidStateError,
    MediaDevices,
    MediaStreamTrack,
    ReadTimeoutError,
    VideoFrame,
)

MakeTrack = Callable[[str], MediaStreamTrack]


def read_video(track: MediaStreamTrack, timeout: float = 5.0) -> VideoFrame:
    frame = track.read(timeout)
    assert isinstance(frame, VideoFrame)
    return frame


def test_initial_state(make_track: MakeTrack) -> None:
    """Checklist #28-#31."""
    video, audio = make_track("video"), make_track("audio")
    assert (video.kind, video.readyState, video.enabled, video.muted) == (
        "video",
        "live",
        True,
        False,
    )
    assert (audio.kind, audio.readyState) == ("audio", "live")
    assert video.id != audio.id and len(video.id) == 36
    assert video.label == "Fake camera (test pattern)"


def test_read_returns_a_zero_copy_view_of_the_newest_frame(make_track: MakeTrack) -> None:
    track = make_track("video")
    frame = read_video(track)
    assert frame.data.shape == (480, 640, 3) and frame.data.dtype == np.uint8
    assert frame.data.flags.owndata is False and frame.data.flags.writeable is False
    assert frame.valid and verify_pattern(frame.data)
    assert frame.format == "bgr24"
    assert 0 <= time.monotonic() - frame.timestamp < 1.0  # the same clock in both processes
    assert abs(time.time() - frame.wall_time) < 1.0
    newer = read_video(track)
    assert newer.seq > frame.seq


def test_read_skips_to_the_newest_and_counts_what_it_skipped(make_track: MakeTrack) -> None:
    track = make_track("video")
    first = read_video(track)
    while read_video(track).seq < first.seq + 5:  # let frames pass unread
        pass
    start = track.stats
    seq_before = read_video(track).seq
    frame = read_video(track)
    stats = track.stats
    assert stats["deliveredFrames"] == start["deliveredFrames"] + 2
    skipped = frame.seq - seq_before - 1
    assert stats["discardedFrames"] == start["discardedFrames"] + skipped
    assert stats["totalFrames"] == stats["deliveredFrames"] + stats["discardedFrames"]


def test_frame_becomes_invalid_once_its_slot_is_reused(make_track: MakeTrack) -> None:
    track = make_track("video")
    frame = read_video(track)
    private = frame.copy()
    assert private.data.flags.owndata or private.data.base is not None
    assert private.data.flags.writeable
    while read_video(track).seq < frame.seq + 8:  # the ring holds 8 slots
        pass
    assert not frame.valid
    with pytest.raises(FrameOverwrittenError):
        frame.copy()
    assert verify_pattern(private.data) and private.valid


def test_read_times_out_with_a_timeout_error(make_track: MakeTrack) -> None:
    track = make_track("video")
    read_video(track)
    with pytest.raises(ReadTimeoutError) as caught:
        track.read(timeout=0.0)
    assert isinstance(caught.value, TimeoutError)


def test_stop_is_synchronous_silent_and_idempotent(make_track: MakeTrack) -> None:
    """Checklist #36, #37; reading a stopped track is InvalidStateError."""
    track = make_track("video")
    fired: list[str] = []
    track.addEventListener("ended", lambda ev: fired.append(ev.type))
    track.stop()
    assert track.readyState == "ended"
    track.stop()
    with pytest.raises(InvalidStateError):
        track.read(timeout=1)
    assert fired == []


def test_frames_iterates_until_stopped(make_track: MakeTrack) -> None:
    track = make_track("video")
    seqs = []
    for frame in track.frames(timeout=5):
        seqs.append(frame.seq)
        if len(seqs) == 3:
            track.stop()
    assert len(seqs) == 3 and seqs == sorted(seqs)


def test_clone_is_a_new_track_on_the_same_source(make_track: MakeTrack) -> None:
    """Checklist #43, #44."""
    track = make_track("video")
    clone = track.clone()
    try:
        assert clone.id != track.id and clone.kind == "video" and clone.readyState == "live"
        assert clone.getSettings() == track.getSettings()
        track.stop()
        assert clone.readyState == "live"
        assert verify_pattern(read_video(clone).data)
    finally:
        clone.stop()
    ended_clone = clone.clone()
    assert ended_clone.readyState == "ended" and ended_clone.id != clone.id


def test_disabled_video_is_black_and_disabled_audio_is_silent(make_track: MakeTrack) -> None:
    """Checklist #32, #33: zero-information content, without stopping the source."""
    video, audio = make_track("video"), make_track("audio")
    video.enabled = audio.enabled = False
    black = read_video(video)
    assert not black.data.any() and black.data.shape == (480, 640, 3)
    silence = audio.read(timeout=5)
    assert isinstance(silence, AudioData) and not silence.data.any()
    video.enabled = audio.enabled = True
    assert read_video(video).data.any()
    video.stop()
    video.enabled = False  # settable once ended, with no effect
    assert video.enabled is False


def test_audio_is_the_tone_at_the_real_rate(make_track: MakeTrack) -> None:
    track = make_track("audio")
    first = track.read(timeout=5)
    assert isinstance(first, AudioData)
    received, started = 0, time.monotonic()
    position = first.position + first.numberOfFrames
    while time.monotonic() - started < 1.0:
        block = track.read(timeout=5)
        assert isinstance(block, AudioData)
        assert block.position == position, "audio must be contiguous"
        position += block.numberOfFrames
        received += block.numberOfFrames
        assert block.data.dtype == np.float32 and block.numberOfChannels == 1
        assert np.abs(block.data).max() <= TONE_AMPLITUDE + 1e-6
    rate = received / (time.monotonic() - started)
    assert 0.8 * 48000 < rate < 1.2 * 48000, f"delivered {rate:.0f} samples/s"
    settings = track.getSettings()  # the fake microphone's 10 ms blocks
    assert (settings["latency"], settings["blockSize"]) == (0.01, 480)
    assert track.stats["discardedFrames"] == 0


def test_settings_name_the_device_and_the_mode(shared_devices: MediaDevices) -> None:
    stream = shared_devices.getUserMedia({"video": {"width": 320, "height": 180, "frameRate": 15}})
    track = stream.getVideoTracks()[0]
    try:
        settings = track.getSettings()
        assert (settings["width"], settings["height"], settings["frameRate"]) == (320, 180, 15)
        assert settings["aspectRatio"] == round(320 / 180, 10)
        camera = next(d for d in shared_devices.enumerateDevices() if d.kind == "videoinput")
        assert settings["deviceId"] == camera.deviceId and settings["groupId"] == camera.groupId
        assert read_video(track).data.shape == (180, 320, 3)
    finally:
        track.stop()


def test_async_iteration_reads_frames_until_the_track_stops(make_track: MakeTrack) -> None:
    import asyncio

    track = make_track("video")

    async def consume() -> list[int]:
        seqs = []
        async for frame in track:
            seqs.append(frame.seq)
            if len(seqs) == 3:
                track.stop()
        return seqs

    seqs = asyncio.run(consume())
    assert len(seqs) == 3 and seqs == sorted(seqs)


def test_aread_times_out(shared_devices: MediaDevices) -> None:
    import asyncio

    track = shared_devices.getUserMedia({"video": {"frameRate": 1}}).getVideoTracks()[0]
    try:
        track.read(timeout=5)  # the next frame is a second away
        with pytest.raises(ReadTimeoutError):
            asyncio.run(track.aread(timeout=0.0))
    finally:
        track.stop()
