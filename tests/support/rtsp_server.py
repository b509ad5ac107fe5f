"""An RTSP camera on loopback: GStreamer's RTSP server streaming JPEG files, looped.

Runs under the *system* python3 (``/usr/bin/python3``: python3-gi,
gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-good; the venv has no
GObject bindings), as a process of its own:

    /usr/bin/python3 rtsp_server.py PATTERN FPS [PORT]

streams the JPEG files ``PATTERN`` (printf-style, "frame%03d.jpg") as RTP
JPEG at ``/live``, prints ``READY <port>`` once it listens, and runs until
stdin closes or SIGTERM. JPEG files are decoded and encoded again
(``jpegdec ! jpegenc``): the payloader needs the size in the caps, which
``jpegparse`` (plugins-bad) would give too. `RtspServer` in `support.rtsp` drives it from tests.
"""

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

MOUNT = "/live"


def _pipeline(pattern, fps):
    return (
        f"( multifilesrc location={pattern} loop=true index=0 "
        f'caps="image/jpeg,framerate={fps}/1" ! jpegdec ! jpegenc ! rtpjpegpay name=pay0 pt=26 )'
    )


def main(argv):
    pattern, fps = argv[0], int(argv[1])
    port = argv[2] if len(argv) > 2 else "0"
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(port)
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(_pipeline(pattern, fps))
    factory.set_shared(True)  # one pipeline for every client, as a camera
    server.get_mount_points().add_factory(MOUNT, factory)
    if server.attach(None) == 0:
        print("cannot listen", file=sys.stderr)
        return 1
    loop = GLib.MainLoop()
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, signal.SIGTERM, loop.quit)
    GLib.io_add_watch(0, GLib.IO_HUP | GLib.IO_IN, lambda *_: loop.quit())  # stdin closed
    print(f"READY {server.get_bound_port()}", flush=True)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
