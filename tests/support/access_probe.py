"""What another user can do with a daemon:
``python tests/support/access_probe.py USER GROUP[,GROUP...] RUN_DIR SEGMENT`` (as root).

Started as root by tests/broker/daemon/test_access.py, it imports everything it needs,
then becomes USER with primary group GROUP and the other GROUPs as
supplementary groups (setgroups, setgid, setuid: what ``setpriv --reuid
--regid --groups`` does), so it is a genuine process of that user to the
kernel and to the daemon. It drops in-process, after its imports, because the
interpreter and its packages may live where that user cannot read them (a
pyenv under /root). Prints one JSON line: who it became, whether it could
connect and read a frame (or the error it got), and whether it could map the
ring segment SEGMENT.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import sys

from mediabroker.capture.fake import verify_pattern
from mediastream import MediaDevices, MediaStreamError, VideoFrame
from mediastream.ring import Ring


def become(user: str, groups: list[str]) -> None:
    gids = [grp.getgrnam(g).gr_gid for g in groups]
    os.setgroups(gids[1:])
    os.setgid(gids[0])
    os.setuid(pwd.getpwnam(user).pw_uid)  # real, effective and saved: no way back


def connect(run_dir: str) -> dict[str, object]:
    try:
        with MediaDevices(run_dir, name="access-probe") as devices:
            track = devices.getUserMedia({"video": True}).getVideoTracks()[0]
            frame = track.read(timeout=5.0)
            assert isinstance(frame, VideoFrame)
            intact = verify_pattern(frame.copy().data)
            track.stop()
            return {"connect": "ok", "frame": frame.seq, "intact": intact,
                    "fake_device": plug_fake_device(devices)}
    except MediaStreamError as exc:
        return {"connect": exc.name, "message": str(exc)}
    except PermissionError as exc:  # the file system refused before the daemon could
        return {"connect": "PermissionError", "message": str(exc)}


def plug_fake_device(devices: MediaDevices) -> str:
    """Only root and the daemon's own user may plug fake devices in."""
    try:
        devices.add_fake_device("videoinput", "intruder")
    except MediaStreamError as exc:
        return exc.name
    return "ok"


def map_ring(name: str) -> dict[str, object]:
    try:
        with Ring.open(name):
            return {"ring": "ok"}
    except (OSError, MediaStreamError) as exc:
        return {"ring": type(exc).__name__, "ring_message": str(exc)}


if __name__ == "__main__":
    user, groups, run_dir, segment = sys.argv[1:]
    become(user, groups.split(","))
    who = {"uid": os.getuid(), "gid": os.getgid(), "groups": sorted(os.getgroups())}
    print(json.dumps({**who, **connect(run_dir), **map_ring(segment)}), flush=True)
