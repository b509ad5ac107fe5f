"""One encoder's packets to many viewers, with no queue that can grow.

Design note. A shared encoder makes one H.264 stream; every viewer gets the
same packets. A viewer whose sender falls behind (its peer's task is not
scheduled in time, the loop is busy) must not make the others wait or make
memory grow, as go2rtc's and MediaMTX's users have seen. So each viewer has
room for `VIEWER_BACKLOG` packets; one more and its backlog is dropped, and
it skips to the next keyframe (a P-frame after a gap would decode as smeared
garbage until then). A viewer that joins starts at a keyframe too. Both ask
the encoder for one (`request_keyframe`), which rate-limits them, so a
viewer that lags again and again cannot make every viewer's stream all
keyframes.

Pure asyncio, no codec: tests drive it with any object as a packet.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["VIEWER_BACKLOG", "Fanout", "Viewer", "ViewerClosed"]

VIEWER_BACKLOG = 3  # packets: 100 ms at 30 fps, enough to absorb a busy loop's jitter

PacketT = TypeVar("PacketT")


class ViewerClosed(Exception):
    """The viewer left, or its encoder stopped: no more packets."""


class Viewer(Generic[PacketT]):
    """One peer's view of a shared encoder: the packets it has yet to send."""

    def __init__(self, fanout: Fanout[PacketT]) -> None:
        self._fanout = fanout
        self._backlog: deque[PacketT] = deque()
        self._ready = asyncio.Event()
        self._closed = False
        self.waiting_for_keyframe = True
        self.delivered = 0  # packets handed to the sender
        self.skipped = 0  # packets dropped for this viewer: lag, or before its first keyframe
        self.lags = 0  # times its backlog overflowed

    async def next(self) -> PacketT:
        """The oldest packet not yet sent; waits for one. Raises `ViewerClosed`."""
        while not self._backlog:
            if self._closed:
                raise ViewerClosed
            self._ready.clear()
            await self._ready.wait()
        self.delivered += 1
        return self._backlog.popleft()

    def offer(self, packet: PacketT, keyframe: bool) -> bool:
        """Queue ``packet``; False when the viewer needs a keyframe first."""
        if self._closed:
            return True
        if len(self._backlog) >= VIEWER_BACKLOG:
            self.lags += 1
            self.skipped += len(self._backlog)
            self._backlog.clear()
            self.waiting_for_keyframe = True
        if self.waiting_for_keyframe and not keyframe:
            self.skipped += 1
            return False
        self.waiting_for_keyframe = False
        self._backlog.append(packet)
        self._ready.set()
        return True

    def close(self) -> None:
        """Leave the fanout; a waiting `next` raises `ViewerClosed`."""
        if not self._closed:
            self._closed = True
            self._backlog.clear()
            self._ready.set()
            self._fanout.leave(self)

    @property
    def closed(self) -> bool:
        return self._closed


class Fanout(Generic[PacketT]):
    """The viewers of one encoder. ``request_keyframe`` asks the encoder to
    make its next frame a keyframe."""

    def __init__(self, request_keyframe: Callable[[], None]) -> None:
        self._request_keyframe = request_keyframe
        self._viewers: list[Viewer[PacketT]] = []
        self.joined = 0  # viewers that ever joined
        self.skipped = 0  # packets dropped for viewers that left

    def join(self) -> Viewer[PacketT]:
        viewer = Viewer(self)
        self._viewers.append(viewer)
        self.joined += 1
        self._request_keyframe()
        return viewer

    def leave(self, viewer: Viewer[PacketT]) -> None:
        if viewer in self._viewers:
            self._viewers.remove(viewer)
            self.skipped += viewer.skipped

    def publish(self, packet: PacketT, keyframe: bool) -> None:
        """Give ``packet`` to every viewer; one that needs a keyframe asks for it."""
        wanting = [v for v in self._viewers if not v.offer(packet, keyframe)]
        if wanting:
            self._request_keyframe()

    def close(self) -> None:
        for viewer in list(self._viewers):
            viewer.close()

    @property
    def viewers(self) -> int:
        return len(self._viewers)

    @property
    def skipped_total(self) -> int:
        """Packets dropped for viewers, present and past."""
        return self.skipped + sum(v.skipped for v in self._viewers)

    def __repr__(self) -> str:
        return f"<Fanout viewers={self.viewers} joined={self.joined}>"
