"""``examples/annotate.py`` against a real daemon: it reads the fake camera,
draws into its generator and publishes it; another process (this test)
opens the annotated device at a derived size and sees the drawing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from mediastream import MediaDevices
from support import REPO, child_env, wait_until
from support.hostile import serving

EXAMPLE = REPO / "examples" / "annotate.py"


def test_the_annotate_example_republishes_the_camera(tmp_path: Path) -> None:
    """1. annotate.py prints the device it published. 2. A reader gets that
    device at 320x240 gray8: the box's green line shows (its pixels differ
    from the test pattern's there). 3. SIGTERM: it exits 0 and the device
    disappears."""
    with serving(tmp_path, "") as daemon:
        command = [sys.executable, str(EXAMPLE), "--width", "640", "--height", "480"]
        env = child_env(MEDIABROKER_RUNDIR=str(daemon.run_dir))
        worker = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        try:
            assert worker.stdout is not None
            published = json.loads(worker.stdout.readline())
            assert published["label"].startswith("Annotated camera (from annotate.py, ")
            with MediaDevices(daemon.run_dir, name="test") as md:
                video = {"deviceId": {"exact": published["deviceId"]}, "width": 320, "height": 240}
                track = md.getUserMedia({"video": video}).getVideoTracks()[0]
                frame = track.read(timeout=5.0).copy()
                assert frame.data.shape == (240, 320, 3)
                # The box's left edge at x = 640/4 camera px = 80 px here is green.
                edge = frame.data[80:160, 80].astype(int)
                assert np.all(edge[:, 1] > 150) and np.all(edge[:, 2] < 100), edge[:4]
                worker.send_signal(signal.SIGTERM)
                assert worker.wait(15) == 0
                wait_until(
                    lambda: (
                        published["deviceId"] not in [d.deviceId for d in md.enumerateDevices()]
                    ),
                    5,
                    "the annotated device to disappear",
                )
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(5)
            if worker.stdout is not None:
                worker.stdout.close()
