"""A WHEP viewer in Python (aiortc), as a remote consumer on another host would be."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCSessionDescription

from support.gateway import http_request

__all__ = ["Received", "WhepViewer"]


@dataclass
class Received:
    """A decoded frame: when it arrived (CLOCK_MONOTONIC s) and its pixels."""

    at: float
    width: int
    height: int
    bgr: Any  # numpy (h, w, 3) uint8


@dataclass
class WhepViewer:
    """``POST`` an offer to ``url``, receive the answer's video, ``DELETE`` at the end."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    frames: list[Received] = field(default_factory=list)
    location: str = ""
    answer: str = ""
    _peer: RTCPeerConnection = field(default_factory=RTCPeerConnection)
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def connect(self) -> int:
        """The HTTP status of the offer; 201 means connected (or connecting)."""
        self._peer.addTransceiver("video", direction="recvonly")
        self._peer.on("track", self._on_track)
        await self._peer.setLocalDescription(await self._peer.createOffer())
        headers = {"Content-Type": "application/sdp", **self.headers}
        offer = self._peer.localDescription.sdp.encode()
        status, reply_headers, body = await asyncio.to_thread(
            http_request, self.url, "POST", offer, headers
        )
        if status == 201:
            self.location = reply_headers["Location"]
            self.answer = body.decode()
            await self._peer.setRemoteDescription(RTCSessionDescription(self.answer, "answer"))
        return status

    def _on_track(self, track: Any) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(self._receive(track)))

    async def _receive(self, track: Any) -> None:
        while True:
            try:
                frame: av.VideoFrame = await track.recv()
            except Exception:  # aiortc's MediaStreamError: the peer ended
                return
            self.frames.append(
                Received(
                    time.monotonic(), frame.width, frame.height, frame.to_ndarray(format="bgr24")
                )
            )
            self._arrived.set()

    async def wait_frames(self, count: int, timeout: float) -> list[Received]:
        """Wait until ``count`` frames arrived in all; fails saying how many did."""
        deadline = time.monotonic() + timeout
        while len(self.frames) < count:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"{len(self.frames)} of {count} frames within {timeout:g} s from {self.url} "
                    f"(peer state {self._peer.connectionState})"
                )
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                pass
        return self.frames

    @property
    def state(self) -> str:
        state: str = self._peer.connectionState
        return state

    async def delete(self) -> int:
        base = self.url.split("/whep/")[0]
        status, _, _ = await asyncio.to_thread(
            http_request, base + self.location, "DELETE", None, self.headers
        )
        return status

    async def close(self) -> None:
        await self._peer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
