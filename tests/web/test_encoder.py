"""A shared encoder whose loop dies of a bug ends its viewers and says it
failed, so that the hub starts a new one for the next viewer."""

from __future__ import annotations

import asyncio
import logging

import pytest

from mediabroker.web.encoder import EncoderKey, SharedEncoder
from mediabroker.web.fanout import ViewerClosed
from mediastream import VideoTrack


async def broken_opener(key: EncoderKey) -> VideoTrack:
    raise RuntimeError("a bug, not a camera that is down")


def test_a_failed_encoder_ends_its_viewers_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> SharedEncoder:
        encoder = SharedEncoder(EncoderKey("camera"), broken_opener)
        viewer = encoder.fanout.join()
        encoder.start()
        with pytest.raises(ViewerClosed):
            await asyncio.wait_for(viewer.next(), 5)
        assert encoder.failed
        await encoder.close()
        return encoder

    with caplog.at_level(logging.ERROR, "mediabroker.web.encoder"):
        encoder = asyncio.run(scenario())
    assert encoder.fanout.viewers == 0
    assert "encoder for camera" in caplog.text and "a bug" in caplog.text


def test_a_closed_encoder_is_not_failed() -> None:
    async def scenario() -> SharedEncoder:
        encoder = SharedEncoder(EncoderKey("camera"), broken_opener)
        await encoder.close()  # never started
        return encoder

    assert not asyncio.run(scenario()).failed
