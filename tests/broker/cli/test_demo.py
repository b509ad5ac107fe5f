"""``mediabroker demo``: the demo from the README's quick start."""

from __future__ import annotations

from mediastream.ring import SHM_DIR
from support import run_mediabroker


def test_demo_runs_consumers_on_one_camera_and_leaves_nothing() -> None:
    """Three consumer processes report frames, rate and latency; the demo exits 0
    and nothing is left in /dev/shm under its prefix."""
    result = run_mediabroker("demo", "--duration", "2", "--width", "320", "--height", "240")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [
        line.split() for line in result.stdout.splitlines() if line.strip().endswith("zero-copy")
    ]
    assert {row[0] for row in rows} == {"0", "1", "2"}, result.stdout
    assert all(float(row[3]) > 10 for row in rows), result.stdout  # fps column
    assert "segments left in /dev/shm: 0" in result.stdout
    assert not list(SHM_DIR.glob("mbdemo*"))
