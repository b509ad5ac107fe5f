"""MediaStream conformance: checklist 1A (SPEC-CHECKLIST.md #1-#27).

Numbers in docstrings are the checklist's. Tracks are real daemon tracks
from the ``make_track`` fixture (conftest.py).
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Callable, Iterable

import pytest

from mediastream.events import Event, MediaStreamTrackEvent, TrackLike
from mediastream.stream import MediaStream
from mediastream.track import MediaStreamTrack

ID_CHARS = re.compile(r"^[\x21\x23-\x27\x2A-\x2B\x2D-\x2E\x30-\x39\x41-\x5A\x5E-\x7E]*$")



MakeTrack = Callable[[str], MediaStreamTrack]


def record(stream: MediaStream, type_: str) -> list[Event]:
    """Every ``type_`` event the stream fires from now on, by listener and handler."""
    seen: list[Event] = []
    stream.addEventListener(type_, seen.append)
    setattr(stream, "on" + type_, seen.append)
    return seen


def same_members(stream: MediaStream, tracks: Iterable[TrackLike]) -> bool:
    """Whether the stream holds exactly these track objects, in any order."""
    got, want = stream.getTracks(), list(tracks)
    return len(got) == len(want) and all(any(g is t for g in got) for t in want)


# Construction and id


def test_empty_constructor() -> None:
    """#1: MediaStream() is empty, inactive and has an id."""
    stream = MediaStream()
    assert stream.getTracks() == []
    assert stream.active is False
    assert isinstance(stream.id, str) and stream.id


def test_ids_differ(make_track: MakeTrack) -> None:
    """#2: every new stream has its own id."""
    streams = [MediaStream(), MediaStream(), MediaStream([make_track("video")])]
    assert len({s.id for s in streams}) == 3


def test_copy_constructor_shares_track_objects(make_track: MakeTrack) -> None:
    """#3: MediaStream(stream) has a new id and the same track objects, not clones."""
    audio, video = make_track("audio"), make_track("video")
    stream = MediaStream([audio, video])
    stream2 = MediaStream(stream)
    assert stream2.id != stream.id
    assert stream2.getAudioTracks()[0] is audio
    assert stream2.getVideoTracks()[0] is video
    assert len(stream2.getTracks()) == 2


def test_copy_constructor_is_a_snapshot(make_track: MakeTrack) -> None:
    """#3: the copy takes the track set at construction; later changes stay apart."""
    stream = MediaStream([make_track("audio")])
    stream2 = MediaStream(stream)
    stream.addTrack(make_track("video"))
    assert len(stream2.getTracks()) == 1


def test_list_constructor(make_track: MakeTrack) -> None:
    """#4: MediaStream([t, ...]) holds exactly those objects; getTrackById(t.id) is t."""
    tracks = [make_track("audio"), make_track("video"), make_track("video")]
    stream = MediaStream(tracks)
    assert same_members(stream, tracks)
    for track in tracks:
        assert stream.getTrackById(track.id) is track


def test_list_constructor_accepts_any_iterable(make_track: MakeTrack) -> None:
    """#4: a tuple or a generator of tracks works like a list."""
    tracks = [make_track("audio"), make_track("video")]
    assert same_members(MediaStream(tuple(tracks)), tracks)
    assert same_members(MediaStream(t for t in tracks), tracks)


def test_constructor_duplicates_added_once(make_track: MakeTrack) -> None:
    """#5: a track given twice is in the stream once."""
    audio, video = make_track("audio"), make_track("video")
    stream = MediaStream([audio, video, audio, audio])
    assert same_members(stream, [audio, video])


def test_constructor_accepts_ended_tracks(make_track: MakeTrack) -> None:
    """#6: MediaStream([ended, live]) holds both and is active."""
    ended, live = make_track("video"), make_track("audio")
    ended.stop()
    stream = MediaStream([ended, live])
    assert same_members(stream, [ended, live])
    assert stream.active is True


def test_constructor_all_ended_is_inactive(make_track: MakeTrack) -> None:
    """#7: MediaStream([ended]) is created with active False."""
    ended = make_track("video")
    ended.stop()
    assert MediaStream([ended]).active is False


@pytest.mark.parametrize(
    "argument",
    [42, "video", b"video", object(), [object()], ["not a track"], {"track": None}],
    ids=repr,
)
def test_constructor_rejects_non_tracks(argument: object) -> None:
    """#4 (IDL): anything but a stream or a sequence of tracks is a builtin TypeError."""
    with pytest.raises(TypeError):
        MediaStream(argument)  # type: ignore[arg-type]


def test_constructor_rejects_a_bare_track(make_track: MakeTrack) -> None:
    """#4 (IDL): a track must come in a sequence."""
    with pytest.raises(TypeError):
        MediaStream(make_track("video"))  # type: ignore[arg-type]


def test_constructor_rejects_a_mixed_list_whole(make_track: MakeTrack) -> None:
    """#4 (IDL): one non-track in the list rejects the call; nothing is half built."""
    with pytest.raises(TypeError):
        MediaStream([make_track("audio"), None])  # type: ignore[list-item]


def test_id_format() -> None:
    """#8: the id is 36 characters of the allowed set, and a UUID."""
    stream = MediaStream()
    assert len(stream.id) == 36
    assert ID_CHARS.match(stream.id)
    assert str(uuid.UUID(stream.id)) == stream.id


def test_id_read_only_and_stable(make_track: MakeTrack) -> None:
    """#9: id rejects assignment and keeps its value through track changes."""
    stream = MediaStream()
    original = stream.id
    with pytest.raises(AttributeError):
        stream.id = "other"  # type: ignore[misc]
    track = make_track("audio")
    stream.addTrack(track)
    stream.removeTrack(track)
    assert stream.id == original


# Track access


def test_track_lists_are_new_snapshots(make_track: MakeTrack) -> None:
    """#10: each getter returns a new list; changing it leaves the stream alone."""
    stream = MediaStream([make_track("audio"), make_track("video")])
    for getter in (stream.getTracks, stream.getAudioTracks, stream.getVideoTracks):
        first = getter()
        assert getter() is not first
        first.clear()
        assert getter() != []
    assert len(stream.getTracks()) == 2


def test_track_lists_filter_by_kind(make_track: MakeTrack) -> None:
    """#10: getAudioTracks only audio, getVideoTracks only video."""
    audio = [make_track("audio"), make_track("audio")]
    video = [make_track("video")]
    stream = MediaStream(audio + video)
    assert all(t.kind == "audio" for t in stream.getAudioTracks())
    assert all(t.kind == "video" for t in stream.getVideoTracks())
    assert len(stream.getAudioTracks()) == 2
    assert len(stream.getVideoTracks()) == 1


def test_audio_only_and_video_only_streams(make_track: MakeTrack) -> None:
    """#10: a stream of one kind has an empty list for the other."""
    assert MediaStream([make_track("audio")]).getVideoTracks() == []
    assert MediaStream([make_track("video")]).getAudioTracks() == []


def test_get_track_by_id(make_track: MakeTrack) -> None:
    """#11: getTrackById finds members and returns None for an unknown id."""
    audio, video = make_track("audio"), make_track("video")
    stream = MediaStream([audio, video])
    assert stream.getTrackById(audio.id) is audio
    assert stream.getTrackById(video.id) is video
    assert stream.getTrackById(video.id + "foo") is None
    assert MediaStream().getTrackById(audio.id) is None


def test_get_track_by_id_after_removal(make_track: MakeTrack) -> None:
    """#11: a removed track is no longer found."""
    track = make_track("video")
    stream = MediaStream([track])
    stream.removeTrack(track)
    assert stream.getTrackById(track.id) is None


# addTrack / removeTrack


def test_add_track_is_idempotent(make_track: MakeTrack) -> None:
    """#12: addTrack adds once; adding the same track again changes nothing and raises nothing."""
    stream = MediaStream()
    track = make_track("audio")
    stream.addTrack(track)
    assert stream.getTracks() == [track]
    stream.addTrack(track)
    assert len(stream.getTracks()) == 1
    assert stream.getAudioTracks()[0] is track


def test_add_track_of_other_kind(make_track: MakeTrack) -> None:
    """#13: an audio stream can gain a video track."""
    audio, video = make_track("audio"), make_track("video")
    stream = MediaStream([audio])
    stream.addTrack(video)
    assert stream.getVideoTracks()[0] is video
    assert stream.getAudioTracks()[0] is audio


def test_add_track_fires_no_event(make_track: MakeTrack) -> None:
    """#14: the script's addTrack fires no addtrack, new track or not."""
    track = make_track("audio")
    stream = MediaStream()
    seen = record(stream, "addtrack")
    stream.addTrack(track)
    stream.addTrack(track)
    assert seen == []


def test_remove_track(make_track: MakeTrack) -> None:
    """#15: removeTrack takes the count 2 -> 1 -> 0."""
    audio, video = make_track("audio"), make_track("video")
    stream = MediaStream([audio, video])
    stream.removeTrack(audio)
    assert stream.getTracks() == [video]
    assert stream.getAudioTracks() == []
    stream.removeTrack(video)
    assert stream.getTracks() == []


def test_remove_non_member_is_a_no_op(make_track: MakeTrack) -> None:
    """#15: removing a track that is not a member does not raise or change anything."""
    member, stranger = make_track("audio"), make_track("audio")
    stream = MediaStream([member])
    stream.removeTrack(stranger)
    stream.removeTrack(member)
    stream.removeTrack(member)
    assert stream.getTracks() == []


def test_remove_track_fires_no_event(make_track: MakeTrack) -> None:
    """#16: the script's removeTrack fires no removetrack, member or not."""
    member, stranger = make_track("audio"), make_track("video")
    stream = MediaStream([member])
    seen = record(stream, "removetrack")
    stream.removeTrack(member)
    stream.removeTrack(stranger)
    assert seen == []


@pytest.mark.parametrize("method", ["addTrack", "removeTrack"])
@pytest.mark.parametrize("argument", [None, "track", 7, object()], ids=repr)
def test_add_remove_reject_non_tracks(method: str, argument: object) -> None:
    """#12/#15 (IDL): a non-track argument is a builtin TypeError."""
    stream = MediaStream()
    with pytest.raises(TypeError):
        getattr(stream, method)(argument)
    assert stream.getTracks() == []


def test_source_add_fires_addtrack(make_track: MakeTrack) -> None:
    """#17: the UA's "add a track" fires one MediaStreamTrackEvent, to listener and handler.

    1. The source adds a new track: the stream holds it, both listeners see one
       `addtrack` with `.track` set, target the stream, not bubbling, not cancelable.
    2. The source adds it again: no change, no event.
    """
    track = make_track("video")
    stream = MediaStream()
    seen = record(stream, "addtrack")
    assert stream._add_track_by_source(track) is True
    assert stream.getTracks() == [track]
    assert len(seen) == 2
    for event in seen:
        assert isinstance(event, MediaStreamTrackEvent)
        assert (event.type, event.track, event.target) == ("addtrack", track, stream)
        assert event.bubbles is False and event.cancelable is False
    assert stream._add_track_by_source(track) is False
    assert len(seen) == 2


def test_source_remove_fires_removetrack(make_track: MakeTrack) -> None:
    """#17: the UA's "remove a track" fires removetrack for a member, nothing otherwise.

    1. The source removes a member: it is gone, one event per listener, `.track` set.
    2. The source removes it again, and a stranger: no change, no event.
    """
    track, stranger = make_track("audio"), make_track("audio")
    stream = MediaStream([track])
    seen = record(stream, "removetrack")
    assert stream._remove_track_by_source(track) is True
    assert stream.getTracks() == []
    assert all(isinstance(e, MediaStreamTrackEvent) and e.track is track for e in seen)
    assert [e.type for e in seen] == ["removetrack"] * 2
    assert stream._remove_track_by_source(track) is False
    assert stream._remove_track_by_source(stranger) is False
    assert len(seen) == 2


def test_source_changes_fire_only_their_own_type(make_track: MakeTrack) -> None:
    """#17: an add fires no removetrack, and a remove no addtrack."""
    track = make_track("video")
    stream = MediaStream()
    added, removed = record(stream, "addtrack"), record(stream, "removetrack")
    stream._add_track_by_source(track)
    assert removed == []
    added.clear()
    stream._remove_track_by_source(track)
    assert added == []


def test_add_and_remove_on_inactive_stream(make_track: MakeTrack) -> None:
    """#18: an inactive stream accepts addTrack and removeTrack."""
    ended = make_track("audio")
    ended.stop()
    stream = MediaStream([ended])
    assert stream.active is False
    other = make_track("video")
    other.stop()
    stream.addTrack(other)
    assert len(stream.getTracks()) == 2
    stream.removeTrack(ended)
    assert stream.getTracks() == [other]
    assert stream.active is False


# active


def test_active_is_computed_not_cached(make_track: MakeTrack) -> None:
    """#19: active follows the tracks' readyState on every read."""
    audio, video = make_track("audio"), make_track("video")
    stream = MediaStream([audio, video])
    assert stream.active is True
    audio.stop()
    assert stream.active is True
    video.stop()
    assert stream.active is False


def test_stop_only_track_makes_inactive_at_once(make_track: MakeTrack) -> None:
    """#20: stopping the only track makes active False synchronously."""
    track = make_track("video")
    stream = MediaStream([track])
    assert stream.active is True
    track.stop()
    assert stream.active is False


def test_stop_audio_only_leaves_active(make_track: MakeTrack) -> None:
    """#21: with audio and video, stopping only the audio keeps the stream active."""
    audio, video = make_track("audio"), make_track("video")
    stream = MediaStream([audio, video])
    audio.stop()
    assert stream.active is True
    assert video.readyState == "live"


def test_adding_live_track_reactivates(make_track: MakeTrack) -> None:
    """#22: after every track stopped, addTrack(live clone) makes the stream active."""
    track = make_track("video")
    live_clone = track.clone()
    stream = MediaStream([track])
    track.stop()
    assert stream.active is False
    stream.addTrack(live_clone)
    assert stream.active is True


def test_removing_last_live_track_deactivates(make_track: MakeTrack) -> None:
    """#19: removing the only live track leaves only ended ones: inactive."""
    ended, live = make_track("audio"), make_track("video")
    ended.stop()
    stream = MediaStream([ended, live])
    stream.removeTrack(live)
    assert stream.active is False


def test_all_tracks_ended_makes_inactive(make_track: MakeTrack) -> None:
    """#23 (the stream's half): once every track has ended, active is False.

    The track's own `ended` event on a source-side end is a track test.
    """
    tracks = [make_track("audio"), make_track("video"), make_track("video")]
    stream = MediaStream(tracks)
    for track in tracks:
        assert stream.active is True
        track.stop()
    assert stream.active is False


def test_api_surface() -> None:
    """#24: every IDL member is there; the only handlers are onaddtrack/onremovetrack.

    The legacy `ended` attribute and `onended` handler of obsolete drafts are absent.
    """
    stream = MediaStream()
    for name in ("id", "active", "getTracks", "getAudioTracks", "getVideoTracks",
                 "getTrackById", "addTrack", "removeTrack", "clone",
                 "addEventListener", "removeEventListener", "dispatchEvent"):
        assert hasattr(stream, name), name
    assert stream.onaddtrack is None and stream.onremovetrack is None
    assert not hasattr(stream, "ended") and not hasattr(stream, "onended")
    with pytest.raises(AttributeError):
        stream.active = True  # type: ignore[misc]


def test_handler_attributes_take_callables_or_none() -> None:
    """#24: onaddtrack/onremovetrack read back what was set; None clears; others raise."""
    stream = MediaStream()

    def handler(event: MediaStreamTrackEvent) -> None:
        pass

    stream.onaddtrack = handler
    assert stream.onaddtrack is handler and stream.onremovetrack is None
    stream.onaddtrack = None
    assert stream.onaddtrack is None
    with pytest.raises(TypeError):
        stream.onremovetrack = "not callable"  # type: ignore[assignment]


# clone()


def test_clone(make_track: MakeTrack) -> None:
    """#25: clone() has a new id and clones of each track: new ids, same kinds and counts."""
    audio, video = make_track("audio"), make_track("video")
    stream = MediaStream([audio, video])
    clone = stream.clone()
    assert isinstance(clone, MediaStream)
    assert clone.id != stream.id
    assert len(clone.getAudioTracks()) == 1 and len(clone.getVideoTracks()) == 1
    clone_audio, clone_video = clone.getAudioTracks()[0], clone.getVideoTracks()[0]
    assert clone_audio is not audio and clone_video is not video
    assert clone_audio.id != audio.id and clone_video.id != video.id
    assert stream.getTrackById(clone_audio.id) is None


def test_clone_of_empty_stream() -> None:
    """#25: an empty stream clones to an empty, inactive stream with a new id."""
    stream = MediaStream()
    clone = stream.clone()
    assert clone.getTracks() == [] and clone.active is False and clone.id != stream.id


def test_clones_are_independent(make_track: MakeTrack) -> None:
    """#26: stopping the originals ends them and the original stream, not the clone."""
    originals = [make_track("audio"), make_track("video")]
    stream = MediaStream(originals)
    clone = stream.clone()
    for track in originals:
        track.stop()
    assert stream.active is False
    assert all(t.readyState == "ended" for t in stream.getTracks())
    assert clone.active is True
    assert all(t.readyState == "live" for t in clone.getTracks())


def test_clone_membership_is_independent(make_track: MakeTrack) -> None:
    """#26: adding to or removing from the clone leaves the original's set alone."""
    stream = MediaStream([make_track("audio")])
    clone = stream.clone()
    clone.addTrack(make_track("video"))
    clone.removeTrack(clone.getAudioTracks()[0])
    assert len(stream.getAudioTracks()) == 1 and stream.getVideoTracks() == []


def test_clone_of_ended_tracks(make_track: MakeTrack) -> None:
    """#27: ended tracks clone ended; an all-ended stream clones inactive.

    1. Stop the only track and clone the stream: the clone's track is ended and
       the clone inactive.
    2. Clone again from the clone, and from a clone of the track: every id differs.
    """
    track = make_track("video")
    stream = MediaStream([track])
    track.stop()
    clone = stream.clone()
    assert clone.getTracks()[0].readyState == "ended"
    assert clone.active is False
    grandchild = clone.clone()
    ids = [track.id, clone.getTracks()[0].id, grandchild.getTracks()[0].id,
           track.clone().id]
    assert len(set(ids)) == len(ids)
    assert len({stream.id, clone.id, grandchild.id}) == 3


# Python-side extras


def test_repr_shows_id_state_and_count(make_track: MakeTrack) -> None:
    """__repr__ shows the id, active or inactive, and the track count."""
    video, audio = make_track("video"), make_track("audio")
    stream = MediaStream([video, audio])
    assert repr(stream) == f"<MediaStream {stream.id!r} active tracks=2>"
    stream.removeTrack(video)
    audio.stop()
    assert repr(stream) == f"<MediaStream {stream.id!r} inactive tracks=1>"


def test_concurrent_add_and_remove(make_track: MakeTrack) -> None:
    """Thread safety: tracks added and removed from many threads end up counted exactly.

    1. 8 threads each add 24 tracks of their own (started together by a barrier;
       a process may hold 256 tracks).
    2. 8 threads each remove the first 12 of theirs.
    """
    stream = MediaStream()
    batches: list[list[TrackLike]] = [[make_track("video") for _ in range(24)] for _ in range(8)]

    def run_all(action: Callable[[list[TrackLike]], None]) -> None:
        barrier = threading.Barrier(len(batches))

        def work(batch: list[TrackLike]) -> None:
            barrier.wait()
            action(batch)

        threads = [threading.Thread(target=work, args=(b,)) for b in batches]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def add_all(batch: list[TrackLike]) -> None:
        for track in batch:
            stream.addTrack(track)

    def remove_first_half(batch: list[TrackLike]) -> None:
        for track in batch[:12]:
            stream.removeTrack(track)

    run_all(add_all)
    assert len(stream.getTracks()) == 192
    run_all(remove_first_half)
    assert same_members(stream, [t for batch in batches for t in batch[12:]])


def test_source_add_from_background_thread(make_track: MakeTrack) -> None:
    """#17: the daemon's add, done on the client's event thread, reaches listeners there."""
    track = make_track("audio")
    stream = MediaStream()
    threads: list[threading.Thread] = []
    stream.onaddtrack = lambda event: threads.append(threading.current_thread())
    worker = threading.Thread(target=stream._add_track_by_source, args=(track,))
    worker.start()
    worker.join()
    assert threads == [worker]
    assert stream.getTracks() == [track]
