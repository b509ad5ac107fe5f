"""The torn-read stress on aarch64, under qemu-user.

What this proves, exactly: the ring code, with its aarch64 fences
(``dmb ish`` run from a page of machine code, mediastream.fences), runs on
an aarch64 CPython with aarch64 numpy and hands out no torn frame there.
What it cannot prove: qemu-user on this x86-64 host executes the guest's
loads and stores in the host's order (TSO), so ARM's reorderings never
happen here and the fences are never put to the test. That the fences
are where the ordering needs them is argued step by step in the ring
module's design note; the arm64 machine code itself is what this runs.

The aarch64 Python comes from scripts/aarch64-sysroot (Debian's arm64
python3.11 unpacked, PyPI's aarch64 wheels), which ./scripts/test builds
as root into $MEDIABROKER_AARCH64_ROOT.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from mediastream.ring import Ring, VideoFormat
from support import REPO, add_figure, unique_prefix

SYSROOT = Path(os.environ.get("MEDIABROKER_AARCH64_ROOT", "/var/cache/mediabroker/aarch64"))
QEMU = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
FRAMES = 20_000
LIMIT_S = 120.0
HOLD_RACE_S = 5.0

pytestmark = pytest.mark.skipif(
    QEMU is None or not (SYSROOT / "complete").exists(),
    reason=f"needs qemu-user-static and an aarch64 Python in {SYSROOT} "
    "(./scripts/test builds both as root)",
)


@pytest.mark.parametrize("slots", [8, 3])
def test_no_torn_frame_on_aarch64(slots: int) -> None:
    """1. The ring is made here (x86-64); an aarch64 Python under qemu forks
       a writer and a reader on it, as test_integrity.py's stress does.
    2. It really is aarch64 code, with the dmb fence in use.
    3. The reader checked 20,000 frames: none torn while valid, no torn copy,
       every frame the writer lapped said valid False."""
    ring = Ring.create(unique_prefix() + "arm64", VideoFormat(64, 48), slots)
    try:
        report = _run_aarch64(ring.name, str(FRAMES), str(LIMIT_S))
    finally:
        ring.close()
        Ring.unlink(ring.name)
    counts = report["counts"]
    assert report["machine"] == "aarch64" and report["fence"] == "dmb ish", report
    assert report["exit_codes"] == [0, 0], report
    assert counts.get("accepted", 0) >= FRAMES and not report["torn"], report
    assert counts.get("torn", 0) == 0 and counts.get("copies_torn", 0) == 0, report
    assert counts.get("still_valid", 0) == 0, report
    add_figure("aarch64 (qemu-user) stress: frames checked", counts["accepted"])


def test_held_frames_hold_on_aarch64(tmp_path: Path) -> None:
    """The held-frame race (tests/client/test_holds.py) as aarch64 code: the
    writer never changes a frame the reader's table holds."""
    ring = Ring.create(unique_prefix() + "arm64holds", VideoFormat(64, 48, "gray8"), 5)
    try:
        report = _run_aarch64("holds", ring.name, str(tmp_path), str(HOLD_RACE_S))
    finally:
        ring.close()
        Ring.unlink(ring.name)
    assert report["machine"] == "aarch64" and report["exit_codes"] == [0], report
    assert report["changed"] == [] and int(report["checked"]) > 50, report  # type: ignore[call-overload]
    add_figure("aarch64 (qemu-user) held frames checked", int(report["checked"]))  # type: ignore[call-overload]


def _run_aarch64(*args: str) -> dict[str, object]:
    assert QEMU is not None
    paths = [SYSROOT / "site", REPO / "client", REPO / "broker", REPO / "tests" / "support"]
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join(map(str, paths)),
        "PYTHONNOUSERSITE": "1",
        "QEMU_LD_PREFIX": str(SYSROOT / "root"),
    }
    python = SYSROOT / "root" / "usr" / "bin" / "python3.11"
    script = REPO / "tests" / "support" / "aarch64_stress.py"
    command = [QEMU, str(python), str(script), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=LIMIT_S + 120)
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return report
