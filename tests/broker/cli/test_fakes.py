"""``mediabroker fake-device add|remove`` against a real daemon."""

from __future__ import annotations

from support import Daemon, run_mediabroker


def on(daemon: Daemon, *args: str) -> str:
    """The stdout of a client command against ``daemon``, which must succeed."""
    result = run_mediabroker(*args, "--run-dir", str(daemon.run_dir))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    return result.stdout


def test_fake_device_plugs_and_unplugs_at_run_time(daemon: Daemon) -> None:
    device_id = on(daemon, "fake-device", "add", "--kind", "videoinput", "--label", "Door cam")
    device_id = device_id.strip()
    assert "Door cam" in on(daemon, "devices")
    removed = on(daemon, "fake-device", "remove", device_id[:8])
    assert "removed 'Door cam'" in removed
    assert device_id not in on(daemon, "devices")
    on(daemon, "fake-device", "remove", "test pattern")  # built-in fakes unplug too
    assert "Fake camera" not in on(daemon, "devices")


def test_an_added_device_is_labelled_by_its_kind_and_count(daemon: Daemon) -> None:
    """A kind word as the argument; the label counts the devices of that kind."""
    device_id = on(daemon, "fake-device", "add", "microphone").strip()
    listing = on(daemon, "devices")
    [row] = [line for line in listing.splitlines() if device_id in line]
    assert row.startswith("audioinput") and "Fake microphone 2" in row
