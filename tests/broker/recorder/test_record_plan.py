"""`mediabroker.recorder.plan` and `encoders`: what is checked before the
daemon is asked, and how options map onto the codecs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from mediabroker.errors import CommandError
from mediabroker.recorder import Request, make_plan
from mediabroker.recorder.encoders import x264_options

HAVE_PYAV = importlib.util.find_spec("av") is not None


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("clip.mov", {}, "cannot record to .mov files: use .mp4, .mkv or .avi"),
        ("clip", {}, "cannot record to extension-less files"),
        ("clip.mp4", {"keep": 3}, "--keep removes old segments: it needs --segment"),
        ("tone.wav", {"fps": 10.0, "codec": "h264"}, "--codec, --fps: video only"),
        ("clip.mkv", {"codec": "mjpeg"}, "a .mkv file cannot hold mjpeg; it takes h264"),
        ("clip.avi", {"bitrate": 2_000_000}, "--bitrate does not apply to Motion JPEG"),
        ("clip.mp4", {"codec": "mpeg4", "quality": 50}, "--quality does not apply to MPEG-4"),
    ],
)
def test_mistakes_are_usage_errors(
    tmp_path: Path, name: str, options: dict[str, object], message: str
) -> None:
    with pytest.raises(CommandError) as caught:
        make_plan(Request(tmp_path / name, **options))  # type: ignore[arg-type]
    assert caught.value.status == 2
    assert message in str(caught.value)


def test_the_container_picks_the_codec(tmp_path: Path) -> None:
    plans = {s: make_plan(Request(tmp_path / f"x{s}")) for s in (".avi", ".wav")}
    assert plans[".avi"].codec is not None and plans[".avi"].codec.name == "mjpeg"
    assert plans[".wav"].kind == "audioinput" and plans[".wav"].codec is None
    mp4 = make_plan(Request(tmp_path / "x.mp4")).codec
    assert mp4 is not None and mp4.name == ("h264" if HAVE_PYAV else "mpeg4")


def test_quality_maps_onto_x264_crf() -> None:
    assert x264_options(None, None) == {"preset": "veryfast", "crf": "23"}
    assert x264_options(100, None)["crf"] == "0"
    assert x264_options(1, None)["crf"] == "50"
    assert "crf" not in x264_options(None, 2_000_000)  # the bitrate rules instead
