"""WHEP sessions (RFC 9725): an SDP offer in, an answer out, one peer per viewer.

Design note. Non-trickle, as the WHEP players (OBS, MediaMTX's and
go2rtc's pages) and our page do it: the offer holds every ICE candidate,
and aiortc gathers its own before it answers. Each peer's track yields
packets of its source's shared encoder (`PacketTrack`), so its
`RTCRtpSender` only packetizes them; the sender's keyframe hook (PLI or FIR
from the browser) is pointed at the shared encoder, which aiortc would
otherwise send to an encoder of its own that does not exist here. H.264 is
put first in the answer: that is what the shared encoder makes
(`setCodecPreferences` works only between ``addTrack`` and
``setRemoteDescription``, DESIGN-NEXT A2).

A session ends on ``DELETE``, when its peer connection fails or closes, or
when it never connects within `CONNECT_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import dataclass

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError as PeerTrackEnded
from aiortc.mediastreams import MediaStreamTrack as PeerTrack

from mediabroker.web.encoder import EncoderKey, SharedEncoder
from mediabroker.web.fanout import Viewer, ViewerClosed
from mediabroker.web.h264 import EncodedPacket
from mediabroker.web.hub import EncoderHub

__all__ = ["OfferError", "PacketTrack", "TooManyViewers", "WhepSessions"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 30.0
MAX_OFFER_BYTES = 64 * 1024  # a real offer is 2-6 KiB


class OfferError(ValueError):
    """The offer cannot be answered (not SDP, no video, no H.264)."""


class TooManyViewers(RuntimeError):
    """The gateway's ``[web] max_viewers`` are all taken."""


class PacketTrack(PeerTrack):
    """An aiortc video track whose ``recv`` gives the shared encoder's packets."""

    kind = "video"

    def __init__(self, viewer: Viewer[EncodedPacket]) -> None:
        super().__init__()
        self._viewer = viewer

    async def recv(self) -> EncodedPacket:
        try:
            return await self._viewer.next()
        except ViewerClosed:
            self.stop()
            raise PeerTrackEnded from None

    def stop(self) -> None:
        super().stop()
        self._viewer.close()


@dataclass
class Session:
    id: str
    encoder: SharedEncoder
    viewer: Viewer[EncodedPacket]
    peer: RTCPeerConnection
    remote: str  # the HTTP client's address, for the log
    answer: str = ""


class WhepSessions:
    """Every viewer's peer connection, by session id."""

    def __init__(self, hub: EncoderHub, max_viewers: int) -> None:
        self.hub = hub
        self.max_viewers = max_viewers
        self._sessions: dict[str, Session] = {}
        self._answering = 0  # offers being answered now
        self.started = 0  # sessions ever answered

    def __len__(self) -> int:
        return len(self._sessions)

    async def start(self, key: EncoderKey, offer: str, remote: str) -> tuple[str, str]:
        """(session id, SDP answer) for ``offer`` on ``key``'s encoder. Raises
        `OfferError`, `TooManyViewers` or the hub's `NotFoundError`."""
        if len(self._sessions) + self._answering >= self.max_viewers:
            raise TooManyViewers(f"all {self.max_viewers} viewers ([web] max_viewers) are taken")
        if "m=video" not in offer:
            raise OfferError("the offer has no video section (m=video)")
        self._answering += 1  # a flood of offers in flight counts against the limit too
        try:
            session = await self._open(key, offer, remote)
        finally:
            self._answering -= 1
        self._sessions[session.id] = session
        self.started += 1
        log.info("viewer %s (%s) watches %s", session.id, remote, key)
        asyncio.get_running_loop().call_later(CONNECT_TIMEOUT_S, self._end_if_unconnected, session)
        return session.id, session.answer

    async def _open(self, key: EncoderKey, offer: str, remote: str) -> Session:
        encoder = await self.hub.acquire(key)
        viewer = encoder.fanout.join()
        peer = RTCPeerConnection()
        session = Session(secrets.token_urlsafe(12), encoder, viewer, peer, remote)
        try:
            session.answer = await self._answer(session, offer)
        except BaseException:
            await self._close(session)
            raise
        return session

    async def _answer(self, session: Session, offer: str) -> str:
        peer = session.peer
        sender = peer.addTrack(PacketTrack(session.viewer))
        sender._send_keyframe = session.encoder.request_keyframe  # type: ignore[method-assign]
        transceiver = next(t for t in peer.getTransceivers() if t.sender is sender)
        h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.name == "H264"]
        transceiver.setCodecPreferences(h264)

        @peer.on("connectionstatechange")
        async def on_state() -> None:
            if peer.connectionState in ("failed", "closed"):
                await self.end(session.id)

        try:
            await peer.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            await peer.setLocalDescription(await peer.createAnswer())
        except (ValueError, KeyError, AssertionError) as exc:  # aiortc's parse errors
            raise OfferError(f"cannot answer this offer: {exc or type(exc).__name__}") from None
        answer: str = peer.localDescription.sdp
        if "H264" not in answer:
            raise OfferError("the offer does not accept H.264 video, all this gateway sends")
        return answer

    def _end_if_unconnected(self, session: Session) -> None:
        if session.id in self._sessions and session.peer.connectionState != "connected":
            log.info("viewer %s never connected; ended", session.id)
            asyncio.get_running_loop().create_task(self.end(session.id))

    async def end(self, session_id: str) -> bool:
        """End a session; False when there is no such session (any more)."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        log.info("viewer %s left %s", session.id, session.encoder.key)
        await self._close(session)
        return True

    async def _close(self, session: Session) -> None:
        session.viewer.close()
        self.hub.release(session.encoder)
        await session.peer.close()

    async def close(self) -> None:
        await asyncio.gather(*(self.end(sid) for sid in list(self._sessions)))

    def viewers_of(self, encoder: SharedEncoder) -> int:
        return sum(1 for s in self._sessions.values() if s.encoder is encoder)
