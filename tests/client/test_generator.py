"""`mediastream.generator`'s checks, which both sides run on a generator's init."""

from __future__ import annotations

from typing import Any

import pytest

from mediastream import ConstraintTypeError
from mediastream.generator import check_generator_init, staging_name
from mediastream.ring import VideoFormat

GOOD = {"width": 640, "height": 480, "frameRate": 30, "pixelFormat": "rgb24", "label": "Blur"}


def test_a_good_init_gives_format_rate_and_label() -> None:
    assert check_generator_init(GOOD) == (VideoFormat(640, 480, "rgb24"), 30.0, "Blur")
    fmt, _, label = check_generator_init({"width": 8, "height": 8, "frameRate": 1})
    assert fmt.pixel_format == "bgr24" and label == "Generated video"


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"width": 0}, "frame size"),
        ({"height": 20000}, "frame size"),
        ({"width": 1.5}, "width"),
        ({"width": True}, "width"),
        ({"frameRate": 0.5}, "frameRate"),
        ({"frameRate": 1000}, "frameRate"),
        ({"frameRate": "30"}, "frameRate"),
        ({"pixelFormat": "rgbf32"}, "pixelFormat"),
        ({"label": ""}, "label"),
        ({"label": "a\nb"}, "printable"),
        ({"fps": 30}, "unknown generator option 'fps'"),
    ],
)
def test_a_bad_init_is_a_type_error_naming_what(change: dict[str, Any], named: str) -> None:
    with pytest.raises(ConstraintTypeError, match=named):
        check_generator_init({**GOOD, **change})


def test_staging_names_are_fresh_and_under_the_prefix() -> None:
    first, second = staging_name("mb."), staging_name("mb.")
    assert first.startswith("mb.gen.") and first != second
