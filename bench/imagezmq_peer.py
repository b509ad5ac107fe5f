"""imagezmq (PyPI), set up as its docs show for PUB/SUB, with bounded queues.

Its sockets keep ZeroMQ's default high-water mark of 1000 messages, which
lets a slow reader queue gigabytes of frames; the bench caps both ends at
`FRAME_HWM` so a flat-out run stays in memory. ZeroMQ copies a socket's
options into its listener at bind time, so the sender's mark must be set
before imagezmq binds: both classes redo imagezmq's ``init_pubsub`` with the
mark set first. Nothing else is changed.
"""

from __future__ import annotations

from typing import Any

import imagezmq
import zmq

from .receivers import FRAME_HWM, bounded_socket

__all__ = ["open_hub", "open_sender"]


class _BoundedImageHub(imagezmq.ImageHub):  # type: ignore[misc]
    def init_pubsub(self, address: str) -> None:
        self.zmq_context = imagezmq.SerializingContext()
        self.zmq_socket = bounded_socket(self.zmq_context, zmq.SUB, FRAME_HWM)
        self.zmq_socket.connect(address)


class _BoundedImageSender(imagezmq.ImageSender):  # type: ignore[misc]
    def init_pubsub(self, address: str) -> None:
        self.zmq_context = imagezmq.SerializingContext()
        self.zmq_socket = bounded_socket(self.zmq_context, zmq.PUB, FRAME_HWM)
        self.zmq_socket.bind(address)
        self.send_image = self.send_image_pubsub
        self.send_jpg = self.send_jpg_pubsub


def open_hub(endpoint: str) -> Any:
    """A SUB hub connected to ``endpoint``: ``recv_image()`` gives (message, array)."""
    return _BoundedImageHub(open_port=endpoint, REQ_REP=False)


def open_sender(endpoint: str) -> tuple[Any, str]:
    """A PUB sender bound to ``endpoint`` (a ``*`` port is allowed) and the
    endpoint it got."""
    sender = _BoundedImageSender(connect_to=endpoint, REQ_REP=False)
    bound = sender.zmq_socket.getsockopt_string(zmq.LAST_ENDPOINT)
    return sender, bound
