"""mediastream.lint: constraint names the spec would silently ignore."""

from __future__ import annotations

from typing import Any

import pytest

from mediastream.lint import unknown_constraints
from mediastream.wire import SUPPORTED_CONSTRAINTS


@pytest.mark.parametrize(
    ("constraints", "unknown"),
    [
        ({"video": {"width": 640, "fps": 30}}, ["video.fps"]),
        ({"video": {"pixel_format": "gray8"}, "audio": True}, ["video.pixel_format"]),
        ({"video": {"advanced": [{"width": 1}, {"rate": 5}]}}, ["video.advanced[1].rate"]),
        ({"video": True, "vidoe": True}, ["vidoe"]),
        ({"fps": 30, "width": 640}, ["fps"]),  # one track's set, for applyConstraints
        ({"video": {name: {"ideal": 1} for name in SUPPORTED_CONSTRAINTS}}, []),
        ({"video": {"backgroundBlur": False}}, []),  # a spec property the daemon handles
    ],
    ids=repr,
)
def test_unknown_names_are_listed_as_paths(constraints: dict[str, Any], unknown: list[str]) -> None:
    assert unknown_constraints(constraints) == unknown
