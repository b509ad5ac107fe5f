"""The gateway's sources: which ids exist, and one shared encoder per source and size.

The gateway is an ordinary client of the daemon: a device is opened with
``getUserMedia`` and a published stream with ``attachStream``, like any
other process would, so the daemon's access rules, quotas and derived
sources apply unchanged. The client's calls block (a camera takes a moment
to open), so they run on worker threads, never on the event loop that
carries every peer's packets; the client is made for calls from any thread.

An encoder nobody watches lingers `LINGER_S`, so a page that reloads (or a
viewer that reconnects) finds it warm, with a keyframe coming at once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import difflib
import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from mediabroker.metrics import EncoderFigures
from mediabroker.web.encoder import EncoderKey, SharedEncoder
from mediabroker.web.figures import encoder_figures, merge
from mediastream import MediaDevices, NotFoundError, VideoTrack

__all__ = ["EncoderHub", "SourceList"]

log = logging.getLogger(__name__)

LINGER_S = 5.0
SNAPSHOT_TIMEOUT_S = 5.0
JPEG_QUALITY = 90
SNAPSHOTS_AT_ONCE = 4  # each may open a track: a flood of requests must not open hundreds


@dataclass(frozen=True, slots=True)
class SourceList:
    """What can be watched now: video devices and published streams."""

    devices: list[dict[str, Any]]  # MediaDeviceInfo.toJSON() of every device
    streams: list[dict[str, Any]]  # {"name", "label"} of each published stream

    def ids(self) -> list[str]:
        videos = [d["deviceId"] for d in self.devices if d["kind"] == "videoinput"]
        return videos + [s["name"] for s in self.streams]

    def check(self, source: str) -> None:
        """Raises `NotFoundError` naming the closest ids when ``source`` is none."""
        ids = self.ids()
        if source in ids:
            return
        close = difflib.get_close_matches(source, ids, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise NotFoundError(f"no camera or published stream {source!r}{hint}")


class EncoderHub:
    """The running shared encoders, by `EncoderKey`, counted by their viewers."""

    def __init__(self, devices: MediaDevices) -> None:
        self.devices = devices
        self._encoders: dict[EncoderKey, SharedEncoder] = {}
        self._viewers: dict[EncoderKey, int] = {}
        self._lingering: dict[EncoderKey, asyncio.TimerHandle] = {}
        self._stream_names: set[str] = set()
        self._snapshots = asyncio.Semaphore(SNAPSHOTS_AT_ONCE)
        # Stopped encoders' totals: /metrics counters must never go down.
        self.retired: dict[EncoderKey, EncoderFigures] = {}

    async def sources(self) -> SourceList:
        devices, streams = await asyncio.gather(
            asyncio.to_thread(self.devices.enumerateDevices),
            asyncio.to_thread(self.devices.listStreams),
        )
        listed = SourceList(
            [d.toJSON() for d in devices],
            [{"name": s["name"], "label": s.get("label") or s["name"]} for s in streams],
        )
        self._stream_names = {s["name"] for s in listed.streams}
        return listed

    @property
    def encoders(self) -> list[SharedEncoder]:
        return list(self._encoders.values())

    async def acquire(self, key: EncoderKey) -> SharedEncoder:
        """The encoder for ``key``, started if need be; `release` it after.
        Raises `NotFoundError` for an id that is neither a camera nor a stream."""
        (await self.sources()).check(key.source)
        if (timer := self._lingering.pop(key, None)) is not None:
            timer.cancel()
        encoder = self._encoders.get(key)
        if encoder is not None and encoder.failed:
            asyncio.get_running_loop().create_task(encoder.close())  # its thread, its track
            encoder = None
        if encoder is None:
            encoder = self._encoders[key] = SharedEncoder(key, self._open_track)
            encoder.start()
            log.info("encoding %s", key)
        self._viewers[key] = self._viewers.get(key, 0) + 1
        return encoder

    def release(self, encoder: SharedEncoder) -> None:
        key = encoder.key
        self._viewers[key] -= 1
        if self._viewers[key] == 0:
            loop = asyncio.get_running_loop()
            self._lingering[key] = loop.call_later(LINGER_S, self._retire, key)

    def _retire(self, key: EncoderKey) -> None:
        self._lingering.pop(key, None)
        if self._viewers.pop(key, 0) == 0 and (encoder := self._encoders.pop(key, None)):
            log.info("no viewer left for %s; encoder stopped", key)
            self._keep_totals(encoder)
            asyncio.get_running_loop().create_task(encoder.close())

    def _keep_totals(self, encoder: SharedEncoder) -> None:
        figures = encoder_figures(encoder)
        if (earlier := self.retired.get(encoder.key)) is not None:
            figures = dataclasses.replace(merge(earlier, figures), viewers=0)
        self.retired[encoder.key] = figures

    async def close(self) -> None:
        for timer in self._lingering.values():
            timer.cancel()
        encoders, self._encoders = list(self._encoders.values()), {}
        await asyncio.gather(*(e.close() for e in encoders))

    # -- tracks --------------------------------------------------------------

    async def _open_track(self, key: EncoderKey) -> VideoTrack:
        return await asyncio.to_thread(self._open_blocking, key)

    def _open_blocking(self, key: EncoderKey) -> VideoTrack:
        constraints = key.constraints()
        if key.source in self._stream_names:
            return self._attach_blocking(key.source, constraints)
        stream = self.devices.getUserMedia(
            {"video": {"deviceId": {"exact": key.source}, **constraints}}
        )
        return stream.getVideoTracks()[0]

    def _attach_blocking(self, name: str, constraints: dict[str, Any]) -> VideoTrack:
        stream = self.devices.attachStream(name)
        for audio in stream.getAudioTracks():
            audio.stop()
        videos = stream.getVideoTracks()
        if not videos:
            raise NotFoundError(f"the stream {name!r} has no video track")
        try:
            videos[0].applyConstraints(constraints)
        except BaseException:
            videos[0].stop()
            raise
        return videos[0]

    async def snapshot(self, key: EncoderKey) -> bytes:
        """A JPEG of ``key``'s newest frame: a running encoder's picture if
        there is one, else one frame read from a track opened for it."""
        (await self.sources()).check(key.source)
        encoder = self._encoders.get(key)
        if encoder is not None and encoder.latest is not None:
            bgr = cv2.cvtColor(encoder.latest, cv2.COLOR_YUV2BGR_I420)
        else:
            async with self._snapshots:
                bgr = await self._one_frame(key)
        return await asyncio.to_thread(_jpeg, bgr)

    async def _one_frame(self, key: EncoderKey) -> np.ndarray:
        track = await self._open_track(key)
        try:
            frame = await track.aread(timeout=SNAPSHOT_TIMEOUT_S)
            return frame.copy().data  # verified, before the slot is written again
        finally:
            track.stop()


def _jpeg(bgr: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError("OpenCV could not encode the frame as JPEG")
    return encoded.tobytes()
