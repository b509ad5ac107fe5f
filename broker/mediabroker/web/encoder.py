"""One shared encoder: a mediastream track in, H.264 packets out to every viewer.

Design note. aiortc encodes once per peer (DESIGN-NEXT A2c: 4 viewers took
4x the CPU and fell to 15 fps on two CPUs); here one task per source and size
reads the newest frame (`aread`: no thread, no queue, frames the encoder is
too slow for are simply never read), converts it to I420 once and encodes it
once, on a thread of its own so that the event loop keeps serving peers, and
hands the packets to a `Fanout`. Peers only packetize.

The encoder outlives its track: when the camera mutes, restarts or goes away
it repeats the last picture every `REPEAT_S` (so browsers keep the stream and
a viewer who joins then still gets a keyframe) and opens the source again
with backoff, so peer connections survive all of that.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from mediabroker.web.fanout import Fanout
from mediabroker.web.h264 import RTP_CLOCK_HZ, EncodedPacket, H264Encoder, to_i420
from mediastream import MediaStreamError, ReadTimeoutError, VideoFrame, VideoTrack

__all__ = ["EncoderKey", "SharedEncoder"]

log = logging.getLogger(__name__)

REPEAT_S = 1.0  # with no new frame, the last one again: keeps decoders and new viewers going
KEYFRAME_GAP_S = 0.25  # keyframe requests closer than this are served together
REOPEN_BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 5.0)
DEFAULT_FRAME_RATE = 30.0
BLANK_SIZE = (640, 480)  # what a viewer sees before the source ever gave a frame

TrackOpener = Callable[["EncoderKey"], Awaitable[VideoTrack]]


@dataclass(frozen=True, slots=True)
class EncoderKey:
    """What makes two viewers share an encoder: the source and the size asked for."""

    source: str  # a deviceId or a published stream's name
    width: int | None = None
    height: int | None = None
    frame_rate: float | None = None

    def constraints(self) -> dict[str, Any]:
        """The video constraints (beyond the device) that this key asks for."""
        asked = {"width": self.width, "height": self.height, "frameRate": self.frame_rate}
        return {"pixelFormat": "bgr24", **{k: v for k, v in asked.items() if v is not None}}

    def __str__(self) -> str:
        size = f"{self.width or '*'}x{self.height or '*'}@{self.frame_rate or '*'}"
        return f"{self.source} {size}"


class SharedEncoder:
    """Frames of one source at one size, encoded once for all its viewers."""

    def __init__(self, key: EncoderKey, open_track: TrackOpener) -> None:
        self.key = key
        self._open_track = open_track
        self.fanout: Fanout[EncodedPacket] = Fanout(self.request_keyframe)
        self.track: VideoTrack | None = None
        self._codec = H264Encoder(key.frame_rate or DEFAULT_FRAME_RATE)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"h264 {key.source[:12]}")
        self._keyframe_wanted = False
        self._last_keyframe = 0.0
        self._last_pts = -1
        self.latest: np.ndarray | None = None  # the newest I420 picture, for snapshots
        self.reopens = 0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"encoder {self.key}")

    async def close(self) -> None:
        """Stop encoding, end every viewer and stop the track."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.fanout.close()
        self._stop_track()
        self._thread.shutdown(wait=True)

    @property
    def failed(self) -> bool:
        """Its loop died of a bug: the hub starts another for the next viewer."""
        return self._task is not None and self._task.done() and not self._task.cancelled()

    def request_keyframe(self) -> None:
        """Make one of the next frames a keyframe (a viewer joined, lagged or
        sent a PLI/FIR)."""
        self._keyframe_wanted = True

    # -- figures -------------------------------------------------------------

    @property
    def encoded_frames(self) -> int:
        return self._codec.frames

    @property
    def encode_seconds(self) -> float:
        return self._codec.seconds

    @property
    def keyframes(self) -> int:
        return self._codec.keyframes

    # -- the loop ------------------------------------------------------------

    async def _run(self) -> None:
        try:
            while True:
                if self.track is None or self.track.readyState == "ended":
                    await self._reopen()
                await self._next_picture()
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug must not leave viewers on a frozen picture silently
            log.exception("encoder for %s failed; its viewers are ended", self.key)
            self.fanout.close()

    async def _reopen(self) -> None:
        """Open the source (again), repeating the last picture until it is back."""
        again = self.track is not None or self.encoded_frames > 0
        self._stop_track()
        if again:  # a source that ends at once must not make this loop spin
            await self._repeat_for(REOPEN_BACKOFF_S[0])
        for attempt in itertools.count():
            try:
                self.track = await self._open_track(self.key)
            except MediaStreamError as exc:
                if attempt == 0:  # once per outage, not once per attempt
                    log.warning("cannot open %s (%s); retrying", self.key, exc)
                await self._repeat_for(REOPEN_BACKOFF_S[min(attempt, len(REOPEN_BACKOFF_S) - 1)])
                continue
            if again or attempt:
                self.reopens += 1
                log.info("%s is back (%d failed attempt(s))", self.key, attempt)
            return

    async def _next_picture(self) -> None:
        assert self.track is not None
        try:
            frame = await self.track.aread(timeout=REPEAT_S)
        except ReadTimeoutError:
            await self._encode(None)  # muted or stalled: repeat, keep the peers
            return
        except MediaStreamError as exc:
            log.info("%s ended (%s); opening it again", self.key, exc)
            self._stop_track()  # the loop opens it again
            return
        await self._encode(frame)

    async def _repeat_for(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            await asyncio.sleep(
                min(remaining, REPEAT_S)
            )  # paces the repeats; not a wait for a condition
            await self._encode(None)

    async def _encode(self, frame: VideoFrame | None) -> None:
        keyframe = self._take_keyframe_request()
        loop = asyncio.get_running_loop()
        packets = await loop.run_in_executor(self._thread, self._encode_blocking, frame, keyframe)
        for packet in packets:
            self.fanout.publish(packet, packet.is_keyframe)

    def _take_keyframe_request(self) -> bool:
        now = time.monotonic()
        if not self._keyframe_wanted or now - self._last_keyframe < KEYFRAME_GAP_S:
            return False
        self._keyframe_wanted = False
        self._last_keyframe = now
        return True

    def _encode_blocking(self, frame: VideoFrame | None, keyframe: bool) -> list[EncodedPacket]:
        """On the encoder's thread: convert (a torn frame is dropped) and encode."""
        if frame is not None:
            picture = to_i420(frame.data)
            if not frame.valid:
                return []
            self.latest = picture
            pts = round(frame.timestamp * RTP_CLOCK_HZ)
        else:
            if self.latest is None:
                width, height = BLANK_SIZE
                self.latest = _black_i420(self.key.width or width, self.key.height or height)
            pts = round(time.monotonic() * RTP_CLOCK_HZ)
        pts = max(pts, self._last_pts + 1)  # a repeat between two frames must not go back
        self._last_pts = pts
        return self._codec.encode(self.latest, pts, keyframe)

    def _stop_track(self) -> None:
        if self.track is not None:
            self.track.stop()
            self.track = None

    def __repr__(self) -> str:
        return (
            f"<SharedEncoder {self.key} viewers={self.fanout.viewers} frames={self.encoded_frames}>"
        )


def _black_i420(width: int, height: int) -> np.ndarray:
    width, height = max(2, width & ~1), max(2, height & ~1)
    i420 = np.empty((height * 3 // 2, width), np.uint8)
    i420[:height] = 16  # video-range black
    i420[height:] = 128
    return i420
