"""A real MJPEG-over-HTTP camera on loopback, for tests: what many IP cameras serve.

`MjpegServer` answers ``GET /`` (any path) with ``multipart/x-mixed-replace``
JPEG frames made with ``cv2.imencode``, at a steady rate, from a thread per
client. `stop` closes every connection (the camera "drops"); `start` again
serves on the same port. ``password``, when set, is required with basic
auth (user "admin", as in ``http://admin:PASSWORD@host/``; a 401 otherwise),
so tests can check it never leaks. Only the test process runs it.
"""

from __future__ import annotations

import base64
import http.server
import threading
import time
from typing import Any

import cv2
import numpy as np

__all__ = ["MjpegServer", "jpeg_frames"]

BOUNDARY = "mediabrokerframe"


def jpeg_frames(width: int, height: int, count: int = 8) -> list[bytes]:
    """``count`` JPEG images of a gradient with a moving bar (frames differ)."""
    y, x = np.mgrid[:height, :width]
    frames = []
    for index in range(count):
        image = np.zeros((height, width, 3), np.uint8)
        image[..., 0] = (x * 255 // width).astype(np.uint8)
        image[..., 1] = (y * 255 // height).astype(np.uint8)
        bar = index * width // count
        image[:, bar : bar + max(1, width // count), 2] = 255
        ok, data = cv2.imencode(".jpg", image)
        assert ok
        frames.append(data.tobytes())
    return frames


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        owner = self.server.owner
        wanted = "Basic " + base64.b64encode(f"admin:{owner.password}".encode()).decode()
        if owner.password and self.headers.get("Authorization") != wanted:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="camera"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        owner.clients += 1
        try:
            self._stream(owner)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away

    def _stream(self, owner: MjpegServer) -> None:
        period = 1.0 / owner.fps
        due = time.monotonic()
        index = 0
        while not owner.stopping.is_set():
            frame = owner.frames[index % len(owner.frames)]
            head = (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame)}\r\n\r\n"
            )
            self.wfile.write(head.encode() + frame + b"\r\n")
            self.wfile.flush()
            owner.sent += 1
            index += 1
            due += period
            owner.stopping.wait(max(0.0, due - time.monotonic()))  # the camera's frame rate

    def log_message(self, format: str, *args: Any) -> None:
        self.server.owner.requests.append(self.path)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close joins the streaming threads
    owner: MjpegServer


class MjpegServer:
    """An MJPEG camera at ``http://127.0.0.1:{port}/``, ``width`` x ``height`` at ``fps``.
    A context manager; `stop` and `start` again to make it drop and come back."""

    def __init__(self, width: int, height: int, fps: float = 20.0, password: str = "") -> None:
        self.frames = jpeg_frames(width, height)
        self.fps = fps
        self.password = password
        self.port = 0
        self.sent = 0  # frames written, over all clients
        self.clients = 0
        self.requests: list[str] = []
        self.stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def url(self, path: str = "/video.mjpg") -> str:
        userinfo = f"admin:{self.password}@" if self.password else ""
        return f"http://{userinfo}127.0.0.1:{self.port}{path}"

    def start(self) -> MjpegServer:
        """Serve (on the same port as before, after a `stop`)."""
        assert self._server is None, "already serving"
        self.stopping.clear()
        server = _Server(("127.0.0.1", self.port), _Handler)
        server.owner = self
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="mjpeg", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection and the listening socket. Idempotent."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        server.shutdown()
        server.server_close()  # joins the client threads (daemon_threads is False)
        assert self._thread is not None
        self._thread.join(5)

    def __enter__(self) -> MjpegServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "serving" if self._server is not None else "stopped"
        return f"<MjpegServer :{self.port} {state} clients={self.clients} sent={self.sent}>"
