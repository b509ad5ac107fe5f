"""The shared encoder's H.264: I420 from any camera picture, an IDR on request,
a new context (starting with an IDR) when the size changes."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from mediabroker.web.h264 import RTP_CLOCK_HZ, H264Encoder, bitrate_for, to_i420


def picture(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width, 3), np.uint8)


@pytest.mark.parametrize("shape", [(480, 640, 3), (241, 321, 3), (120, 160)])
def test_to_i420_crops_odd_sides_and_takes_gray(shape: tuple[int, ...]) -> None:
    source = np.zeros(shape, np.uint8)
    i420 = to_i420(source)
    height, width = shape[0] & ~1, shape[1] & ~1
    assert i420.shape == (height * 3 // 2, width)
    back = cv2.cvtColor(i420, cv2.COLOR_YUV2BGR_I420)
    assert back.shape == (height, width, 3)


def test_a_requested_keyframe_is_an_idr_a_decoder_can_start_from() -> None:
    encoder = H264Encoder(30.0)
    packets = []
    for n in range(40):
        frame = np.roll(picture(240, 320), n, axis=1)
        packets += encoder.encode(to_i420(frame), n * RTP_CLOCK_HZ // 30, keyframe=n == 25)
    keyframes = [p for p in packets if p.is_keyframe]
    assert len(keyframes) == 2 == encoder.keyframes  # the first frame and the requested one
    # A decoder that joins at the requested keyframe decodes from there on.
    decoder = av.CodecContext.create("h264", "r")
    joined = packets[packets.index(keyframes[1]) :]
    decoded = [f for p in joined for f in decoder.decode(av.Packet(bytes(p)))]
    decoded += list(decoder.decode(None))
    assert len(decoded) == len(joined) and decoded[0].width == 320
    assert encoder.frames == 40 and encoder.seconds > 0


def test_a_new_size_starts_a_new_stream_with_a_keyframe() -> None:
    encoder = H264Encoder(30.0)
    encoder.encode(to_i420(picture(240, 320)), 0, keyframe=False)
    encoder.encode(to_i420(picture(240, 320, 1)), 3000, keyframe=False)
    [packet] = encoder.encode(to_i420(picture(120, 160)), 6000, keyframe=False)
    assert packet.is_keyframe


def test_the_bitrate_follows_the_picture_within_bounds() -> None:
    assert bitrate_for(640, 480, 30) == 921_600
    assert bitrate_for(32, 32, 1) == 300_000
    assert bitrate_for(7680, 4320, 60) == 6_000_000
