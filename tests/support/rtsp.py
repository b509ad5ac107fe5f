"""Drives `rtsp_server.py` (GStreamer's RTSP server, under the system python3)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from support import REPO
from support.mjpeg_server import jpeg_frames

__all__ = ["SYSTEM_PYTHON", "RtspServer", "rtsp_available"]

SYSTEM_PYTHON = "/usr/bin/python3"
SCRIPT = REPO / "tests" / "support" / "rtsp_server.py"
CHECK = (
    "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0'); "
    "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
    "assert Gst.ElementFactory.find('rtpjpegpay') and Gst.ElementFactory.find('multifilesrc')"
)


def rtsp_available() -> str:
    """Why GStreamer's RTSP server cannot run here ("" when it can)."""
    if shutil.which(SYSTEM_PYTHON) is None:
        return f"no {SYSTEM_PYTHON}"
    done = subprocess.run([SYSTEM_PYTHON, "-c", CHECK], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return (
            "GStreamer's RTSP server is missing (scripts/test installs it): " + done.stderr[-300:]
        )
    return ""


class RtspServer:
    """An RTSP camera at ``rtsp://127.0.0.1:{port}/live`` sending ``width`` x
    ``height`` JPEG frames at ``fps``, from files written into ``directory``.
    `stop` kills it; `start` again listens on the same port."""

    def __init__(
        self,
        directory: Path,
        width: int,
        height: int,
        fps: int = 20,
        auth: tuple[str, str] = ("", ""),
    ) -> None:
        self.directory = directory
        self.fps = fps
        self.auth = auth
        self.port = 0
        self.process: subprocess.Popen[str] | None = None
        for index, frame in enumerate(jpeg_frames(width, height)):
            (directory / f"frame{index:03d}.jpg").write_bytes(frame)

    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/live"

    def start(self) -> RtspServer:
        assert self.process is None, "already serving"
        args = [str(self.directory / "frame%03d.jpg"), str(self.fps), str(self.port)]
        self.process = subprocess.Popen(
            [SYSTEM_PYTHON, str(SCRIPT), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # blocks until it listens (or dies)
        if not line.startswith("READY "):
            self.stop()
            raise AssertionError(f"the RTSP server did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL) and reap it. Idempotent."""
        process, self.process = self.process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        for stream in (process.stdin, process.stdout, process.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
