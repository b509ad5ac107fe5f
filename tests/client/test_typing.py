"""Typed for the user's own ``mypy --strict`` (issue 12): reading a video
track gives a `VideoFrame` and an audio track `AudioData`, with no casts.

A small user program is written to a temporary directory and checked with
``python -m mypy --strict`` against the installed package, found the way a
user's mypy finds it (a package directory on the path, trusted because it
ships ``py.typed``). ``good.py`` must pass; it pins the types with
``typing.assert_type``, which fails on a looser type (``Any`` included).
``bad.py`` holds wrong uses, each marked ``# E``: each must be an error, on
its own line, so the test fails if the types went loose. Both are checked in
one mypy run (a cold run takes seconds).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

import mediastream
from conftest import Gum
from mediastream import AudioData, MediaStreamTrack, VideoFrame

MYPY_TIMEOUT_S = 300.0

HEADER = """\
from __future__ import annotations

from typing import assert_type

from mediastream import (
    AudioData,
    AudioTrack,
    MediaDevices,
    MediaStream,
    MediaStreamTrack,
    MediaStreamTrackEvent,
    VideoFrame,
    VideoTrack,
)
"""

GOOD = '''
def from_get_user_media() -> tuple[VideoFrame, AudioData]:
    with MediaDevices() as md:
        stream = md.getUserMedia({"video": True, "audio": True})
        assert_type(stream, MediaStream)
        camera, microphone = stream.getVideoTracks()[0], stream.getAudioTracks()[0]
        assert_type(camera, VideoTrack)
        assert_type(microphone, AudioTrack)
        frame = camera.read(timeout=1.0)
        block = microphone.read(timeout=1.0)
        assert_type(frame, VideoFrame)
        assert_type(block, AudioData)
        assert_type(stream.getVideoTracks()[0].read(), VideoFrame)
        return frame.copy(), block


def attributes(frame: VideoFrame, block: AudioData) -> tuple[str, int, int]:
    return frame.format, frame.seq, block.sampleRate + block.numberOfFrames


def disabled(camera: VideoTrack, microphone: AudioTrack) -> None:
    camera.enabled = microphone.enabled = False  # black frames and silence
    assert_type(camera.read(), VideoFrame)
    assert_type(microphone.read(), AudioData)


def iterate(camera: VideoTrack, microphone: AudioTrack) -> None:
    for frame in camera.frames(timeout=1.0):
        assert_type(frame, VideoFrame)
    for block in microphone.frames():
        assert_type(block, AudioData)


async def iterate_async(camera: VideoTrack, microphone: AudioTrack) -> None:
    assert_type(await camera.aread(timeout=1.0), VideoFrame)
    assert_type(await microphone.aread(), AudioData)
    async for frame in camera:
        assert_type(frame, VideoFrame)
    async for block in microphone:
        assert_type(block, AudioData)


def clone(camera: VideoTrack, microphone: AudioTrack) -> None:
    assert_type(camera.clone(), VideoTrack)
    assert_type(camera.clone().read(), VideoFrame)
    assert_type(microphone.clone().read(), AudioData)


def track_lists(stream: MediaStream, camera: VideoTrack, microphone: AudioTrack) -> None:
    assert_type(stream.getVideoTracks(), list[VideoTrack])
    assert_type(stream.getAudioTracks(), list[AudioTrack])
    assert_type(stream.getTracks(), list[VideoTrack | AudioTrack])
    assert_type(stream.getTrackById("id"), VideoTrack | AudioTrack | None)
    item = stream.getTracks()[0].read()
    assert_type(item, VideoFrame | AudioData)
    if isinstance(item, VideoFrame):
        assert_type(item, VideoFrame)
    stream.addTrack(camera)
    stream.removeTrack(microphone)
    both = MediaStream([camera, microphone])
    assert_type(both.clone().getVideoTracks()[0].read(), VideoFrame)
    assert_type(MediaStream(both), MediaStream)


def either_kind(track: MediaStreamTrack) -> VideoFrame | AudioData:
    """A bare MediaStreamTrack is a track of either kind."""
    assert isinstance(track, MediaStreamTrack)
    return track.read()


def pass_either(camera: VideoTrack, microphone: AudioTrack) -> None:
    either_kind(camera)
    either_kind(microphone)


def on_addtrack(event: MediaStreamTrackEvent) -> None:
    assert_type(event.track.read(), VideoFrame | AudioData)
'''

BAD = """
def wrong(stream: MediaStream, camera: VideoTrack, microphone: AudioTrack) -> None:
    print(stream.getVideoTracks()[0].read().sampleRate)  # E
    print(camera.read().numberOfFrames)  # E
    print(microphone.read().format)  # E
    frame: VideoFrame = stream.getAudioTracks()[0].read()  # E
    assert_type(microphone.read(), VideoFrame)  # E
    print(camera.clone().read().sampleRate)  # E
    for block in microphone.frames(): print(block.seq)  # E
    only_video: VideoTrack = stream.getTracks()[0]  # E
    audio: list[AudioTrack] = stream.getVideoTracks()  # E
    print(stream.getTracks()[0].read().sampleRate)  # E


async def wrong_async(camera: VideoTrack, microphone: AudioTrack) -> None:
    print((await microphone.aread()).format)  # E
    async for frame in camera: print(frame.sampleRate)  # E
"""


@dataclass(frozen=True)
class MypyRun:
    output: str
    errors: dict[str, set[int]]  # file name -> lines with an error


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> MypyRun:
    """One ``mypy --strict`` run over good.py and bad.py."""
    pytest.importorskip("mypy", reason="mypy is in the dev extra")
    package = Path(mediastream.__file__).parent
    assert (package / "py.typed").is_file(), f"{package} ships no py.typed"
    work = tmp_path_factory.mktemp("user_program")
    (work / "good.py").write_text(HEADER + textwrap.dedent(GOOD))
    (work / "bad.py").write_text(HEADER + textwrap.dedent(BAD))
    (work / "mypy.ini").write_text("[mypy]\n")  # not the repository's configuration
    env = {k: v for k, v in os.environ.items() if k != "MYPYPATH"}
    env["PYTHONPATH"] = str(package.parent)  # as installed; an editable install hides it
    command = [sys.executable, "-m", "mypy", "--strict", "--config-file", "mypy.ini"]
    command += ["--cache-dir", str(work / ".mypy_cache"), "good.py", "bad.py"]
    result = subprocess.run(
        command, cwd=work, env=env, capture_output=True, text=True, timeout=MYPY_TIMEOUT_S
    )
    output = result.stdout + result.stderr
    errors: dict[str, set[int]] = {"good.py": set(), "bad.py": set()}
    for match in re.finditer(r"^(\w+\.py):(\d+): error:", output, re.MULTILINE):
        errors.setdefault(match[1], set()).add(int(match[2]))
    assert result.returncode in (0, 1), output  # 2: mypy itself failed
    return MypyRun(output, errors)


def marked_lines(source: str) -> set[int]:
    lines = (HEADER + textwrap.dedent(source)).splitlines()
    return {number for number, line in enumerate(lines, 1) if line.endswith("# E")}


def test_a_users_program_passes_mypy_strict_with_reads_typed_by_kind(checked: MypyRun) -> None:
    assert checked.errors["good.py"] == set(), checked.output
    assert "import-untyped" not in checked.output and "import-not-found" not in checked.output


def test_reading_a_track_as_the_other_kind_fails_mypy(checked: MypyRun) -> None:
    expected = marked_lines(BAD)
    assert len(expected) == 12
    assert checked.errors["bad.py"] == expected, checked.output


def test_no_file_but_the_users_has_errors(checked: MypyRun) -> None:
    assert set(checked.errors) == {"good.py", "bad.py"}, checked.output


def test_both_kinds_are_one_class_at_run_time(gum: Gum) -> None:
    """The type parameter is for type checkers only: ``type()``, ``isinstance``
    and what a read returns are as before, for tracks, clones and disabled tracks."""
    stream = gum({"video": True, "audio": True})
    camera, microphone = stream.getVideoTracks()[0], stream.getAudioTracks()[0]
    clones: list[MediaStreamTrack] = [camera.clone(), microphone.clone()]
    for track in [camera, microphone, *clones]:
        assert type(track) is MediaStreamTrack and isinstance(track, MediaStreamTrack)
    assert isinstance(clones[0].read(timeout=5.0), VideoFrame)
    microphone.enabled = False
    assert isinstance(microphone.read(timeout=5.0), AudioData)
    for clone in clones:
        clone.stop()
