"""Shared streams, our extension: publishStream in one process, attachStream in
another, and the addtrack/removetrack/inactive events that follow."""

from __future__ import annotations

import pytest

from mediabroker.capture.fake import verify_pattern
from mediastream import InvalidStateError, MediaDevices, MediaStreamTrackEvent, NotFoundError
from support import ClientProcess, Daemon, wait_until


def test_attached_stream_follows_the_publisher(daemon: Daemon) -> None:
    """1. A publisher publishes a video stream; a subscriber attaches and reads it.
    2. The publisher adds a microphone: the attached stream fires addtrack with
       a new audio track.
    3. The publisher removes it: removetrack fires with that track.
    4. The publisher stops its camera: the mirror ends and the attached stream
       fires inactive."""
    with MediaDevices(daemon.run_dir, name="pub") as pub, MediaDevices(daemon.run_dir) as sub:
        published = pub.getUserMedia({"video": True})
        pub.publishStream(published, "front-door")
        attached = sub.attachStream("front-door")
        assert [t.kind for t in attached.getTracks()] == ["video"]
        assert attached.getVideoTracks()[0].id != published.getVideoTracks()[0].id
        assert verify_pattern(attached.getVideoTracks()[0].read(timeout=5).data)

        events: list[tuple[str, str | None]] = []

        def record(event: object) -> None:
            track = event.track if isinstance(event, MediaStreamTrackEvent) else None
            events.append((event.type, track.kind if track else None))  # type: ignore[attr-defined]

        for name in ("addtrack", "removetrack", "active", "inactive"):
            attached.addEventListener(name, record)

        microphone = pub.getUserMedia({"audio": True}).getAudioTracks()[0]
        published.addTrack(microphone)
        wait_until(lambda: ("addtrack", "audio") in events, 5, "addtrack", lambda: events)
        assert attached.getAudioTracks()[0].read(timeout=5).numberOfFrames > 0

        published.removeTrack(microphone)
        wait_until(lambda: ("removetrack", "audio") in events, 5, "removetrack", lambda: events)
        assert attached.getAudioTracks() == []

        published.getVideoTracks()[0].stop()
        wait_until(lambda: ("inactive", None) in events, 5, "inactive", lambda: events)
        assert not attached.active
        assert events == [("addtrack", "audio"), ("removetrack", "audio"), ("inactive", None)]
        microphone.stop()


def test_a_publisher_that_dies_ends_the_attached_tracks(daemon: Daemon) -> None:
    holder = ClientProcess("publish", daemon.run_dir, "lobby")
    try:
        assert holder.next()["event"] == "published"
        with MediaDevices(daemon.run_dir) as devices:
            attached = devices.attachStream("lobby")
            ended: list[str] = []
            attached.addEventListener("inactive", lambda ev: ended.append(ev.type))
            holder.kill()
            wait_until(lambda: ended == ["inactive"], 5, "the stream to turn inactive",
                       lambda: ended)
            assert all(t.readyState == "ended" for t in attached.getTracks())
    finally:
        holder.close()


def test_attaching_to_an_unknown_name_is_not_found(shared_devices: MediaDevices) -> None:
    with pytest.raises(NotFoundError):
        shared_devices.attachStream("nobody-published-this")


def test_a_name_belongs_to_its_publisher(daemon: Daemon) -> None:
    with MediaDevices(daemon.run_dir) as first, MediaDevices(daemon.run_dir) as second:
        first.publishStream(first.getUserMedia({"video": True}), "taken")
        with pytest.raises(InvalidStateError):
            second.publishStream(second.getUserMedia({"video": True}), "taken")


def test_unpublish_ends_the_attached_tracks(daemon: Daemon) -> None:
    with MediaDevices(daemon.run_dir) as pub, MediaDevices(daemon.run_dir) as sub:
        pub.publishStream(pub.getUserMedia({"audio": True}), "radio")
        attached = sub.attachStream("radio")
        pub.unpublishStream("radio")
        track = attached.getAudioTracks()[0]
        wait_until(lambda: track.readyState == "ended", 5, "the mirror to end")
