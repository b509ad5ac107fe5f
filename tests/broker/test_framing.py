"""mediabroker.framing: crop and letterbox rectangles, their composition along
a chain of sources, the settings that report them, and normalize."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediabroker.framing import (
    CROP_AND_SCALE,
    Framing,
    Layout,
    Normalize,
    Rect,
    compose,
    frame_layout,
    framing_for,
    framing_settings,
    parse_normalize,
    source_layout,
    tensor_settings,
)
from mediastream.errors import ConstraintTypeError
from mediastream.ring import RingFormat, VideoFormat
from mediastream.wire import SUPPORTED_CONSTRAINTS

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}

# -- frame_layout ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "target", "mode", "crop", "content"),
    [
        # crop-and-scale: the centred part with the target's aspect, the whole output
        ((1280, 720), (640, 640), "crop-and-scale", (280, 0, 720, 720), (0, 0, 640, 640)),
        ((640, 480), (320, 180), "crop-and-scale", (0, 60, 640, 360), (0, 0, 320, 180)),
        ((1920, 1080), (1280, 720), "crop-and-scale", (0, 0, 1920, 1080), (0, 0, 1280, 720)),
        # letterbox: the whole input, bands where the aspect differs
        ((1280, 720), (640, 640), "letterbox", (0, 0, 1280, 720), (0, 140, 640, 360)),
        ((640, 480), (320, 320), "letterbox", (0, 0, 640, 480), (0, 40, 320, 240)),
        ((480, 640), (320, 320), "letterbox", (0, 0, 480, 640), (40, 0, 240, 320)),
        ((1920, 1080), (1280, 720), "letterbox", (0, 0, 1920, 1080), (0, 0, 1280, 720)),
        # rounding: sizes to the nearest pixel, offsets floored (centred within 1/2 px)
        ((1280, 720), (333, 333), "letterbox", (0, 0, 1280, 720), (0, 73, 333, 187)),
        ((1280, 720), (101, 100), "crop-and-scale", (276, 0, 727, 720), (0, 0, 101, 100)),
    ],
)
def test_layout_rectangles(
    size: tuple[int, int],
    target: tuple[int, int],
    mode: str,
    crop: tuple[int, ...],
    content: tuple[int, ...],
) -> None:
    layout = frame_layout(*size, *target, mode)
    assert layout.crop == Rect(*crop)
    assert layout.content == Rect(*content)
    assert (layout.input_size, layout.output_size) == (size, target)


def test_a_narrow_letterbox_keeps_one_pixel_of_image() -> None:
    """A 640x480 frame into 640x1: the image is 1 pixel wide (of 1.33), never 0."""
    assert frame_layout(640, 480, 640, 1, "letterbox").content == Rect(319, 0, 1, 1)


sizes = st.integers(min_value=1, max_value=4000)


@given(sizes, sizes, st.data(), st.sampled_from(["crop-and-scale", "letterbox"]))
def test_layouts_stay_inside_and_keep_the_aspect(
    width: int, height: int, data: st.DataObject, mode: str
) -> None:
    """For any frame and any smaller target: the crop lies in the input, the
    content in the output, either is whole on one side at least, and the
    two have the same aspect ratio to within a pixel's rounding."""
    target_w = data.draw(st.integers(1, width))
    target_h = data.draw(st.integers(1, height))
    layout = frame_layout(width, height, target_w, target_h, mode)
    crop, content = layout.crop, layout.content
    assert _inside(crop, width, height) and _inside(content, target_w, target_h)
    assert crop.width == width or crop.height == height
    assert content.width == target_w or content.height == target_h
    assert content.width <= crop.width and content.height <= crop.height  # never up
    if mode == "letterbox":
        assert crop == Rect(0, 0, width, height)
        assert abs(content.x * 2 + content.width - target_w) <= 1  # centred
        assert abs(content.y * 2 + content.height - target_h) <= 1
        wider = width * target_h > height * target_w
        exact = (
            (target_w, height * target_w / width)
            if wider
            else (width * target_h / height, target_h)
        )
        _assert_rounded((content.width, content.height), exact)
    else:
        assert content == Rect(0, 0, target_w, target_h)
        assert abs(crop.x * 2 + crop.width - width) <= 1
        assert abs(crop.y * 2 + crop.height - height) <= 1
        wider = width * target_h > height * target_w
        exact = (
            (height * target_w / target_h, height)
            if wider
            else (width, width * target_h / target_w)
        )
        _assert_rounded((crop.width, crop.height), exact)


def _assert_rounded(got: tuple[int, int], exact: tuple[float, float]) -> None:
    """Each side is the exact one to the nearest pixel, and at least 1."""
    for side, want in zip(got, exact, strict=True):
        assert abs(side - want) <= 0.5 or (want < 1 and side == 1), (got, exact)


def _inside(r: Rect, width: int, height: int) -> bool:
    return 0 <= r.x and 0 <= r.y and r.x + r.width <= width and r.y + r.height <= height


def map_back(box: tuple[float, float, float, float], settings: dict[str, Any]) -> tuple[float, ...]:
    """The README's two lines: a box in a frame, in camera pixels."""
    crop, content = settings["cropRect"], settings["contentRect"]
    sx, sy = crop["width"] / content["width"], crop["height"] / content["height"]
    bx, by, bw, bh = box
    return (
        crop["x"] + (bx - content["x"]) * sx,
        crop["y"] + (by - content["y"]) * sy,
        bw * sx,
        bh * sy,
    )


@pytest.mark.parametrize("mode", ["crop-and-scale", "letterbox"])
def test_a_box_maps_back_to_camera_pixels(mode: str) -> None:
    """The whole content maps onto the whole crop; its centre onto the crop's."""
    layout = frame_layout(1280, 720, 640, 640, mode)
    settings = {"cropRect": layout.crop.to_wire(), "contentRect": layout.content.to_wire()}
    c = layout.content
    assert map_back((c.x, c.y, c.width, c.height), settings) == pytest.approx(
        (layout.crop.x, layout.crop.y, layout.crop.width, layout.crop.height)
    )
    centre = map_back((c.x + c.width / 2, c.y + c.height / 2, 0, 0), settings)
    assert centre[:2] == pytest.approx((640, 360))


# -- compose: a derived source of a derived source ------------------------------------


def test_compose_with_a_whole_frame_changes_nothing() -> None:
    inner = frame_layout(640, 480, 320, 320, "letterbox")
    whole = frame_layout(640, 480, 640, 480, "crop-and-scale")
    assert compose(whole, inner) == inner


def test_compose_maps_the_inner_crop_into_camera_pixels() -> None:
    """1920x1080 cropped to 4:3 and scaled to 640x480 (the old native mode),
    then cropped to 16:9 at 320x180: camera x 240 + 0, y 0 + 60 * 2.25."""
    outer = frame_layout(1920, 1080, 640, 480, "crop-and-scale")
    assert outer.crop == Rect(240, 0, 1440, 1080)
    inner = frame_layout(640, 480, 320, 180, "crop-and-scale")
    assert compose(outer, inner) == Layout(
        Rect(240, 135, 1440, 810), Rect(0, 0, 320, 180), (1920, 1080), (320, 180)
    )


def test_compose_counts_no_padding_as_image() -> None:
    """A crop of a letterboxed frame: only its image part has camera pixels."""
    outer = frame_layout(1280, 720, 640, 640, "letterbox")  # image at y 140..500
    inner = frame_layout(640, 640, 320, 320, "crop-and-scale")  # the whole 640x640
    composed = compose(outer, inner)
    assert composed.crop == Rect(0, 0, 1280, 720)
    assert composed.content == Rect(0, 70, 320, 180)


@dataclasses.dataclass
class FakePlan:
    framing: Framing = CROP_AND_SCALE


@dataclasses.dataclass
class FakeSource:
    """What `source_layout` reads of a source."""

    format: RingFormat
    parent: FakeSource | None = None
    plan: FakePlan = dataclasses.field(default_factory=FakePlan)


def test_source_layout_walks_the_chain() -> None:
    camera = FakeSource(VideoFormat(1920, 1080))
    old = FakeSource(VideoFormat(640, 480), camera)
    child = FakeSource(VideoFormat(320, 320), old, FakePlan(Framing("letterbox")))
    assert source_layout(camera) == (frame_layout(1920, 1080, 1920, 1080, "letterbox"), None)
    layout, mode = source_layout(child)
    assert mode == "letterbox"
    assert layout.crop == Rect(240, 0, 1440, 1080) and layout.content == Rect(0, 40, 320, 240)
    same_size = FakeSource(VideoFormat(1920, 1080, "rgbf32"), camera)
    assert source_layout(same_size)[1] is None  # colour only: not resized


# -- settings -----------------------------------------------------------------------


SELECTED = {"width": 640, "height": 480, "resizeMode": "none", "pixelFormat": "bgr24"}


def test_native_settings_are_the_whole_frame() -> None:
    settings = framing_settings(SELECTED, {}, FakeSource(VideoFormat(640, 480)))
    whole = {"x": 0, "y": 0, "width": 640, "height": 480}
    assert settings == {"resizeMode": "none", "cropRect": whole, "contentRect": whole}


@pytest.mark.parametrize("mode", ["crop-and-scale", "letterbox"])
def test_resized_settings_name_the_mode(mode: str) -> None:
    camera = FakeSource(VideoFormat(1280, 720))
    derived = FakeSource(VideoFormat(640, 480), camera, FakePlan(Framing(mode)))
    settings = framing_settings({**SELECTED, "resizeMode": mode}, {}, derived)
    layout = frame_layout(1280, 720, 640, 480, mode)
    assert settings == {
        "resizeMode": mode,
        "cropRect": layout.crop.to_wire(),
        "contentRect": layout.content.to_wire(),
    }


@pytest.mark.parametrize(
    ("constraints", "expected"),
    [
        ({}, "none"),
        ({"resizeMode": "letterbox"}, "none"),  # only ideal: the truth wins
        ({"resizeMode": {"exact": "crop-and-scale"}}, "crop-and-scale"),
        ({"resizeMode": {"exact": ["none", "letterbox"]}}, "none"),
    ],
    ids=repr,
)
def test_unresized_pixels_are_none_unless_a_requirement_excludes_it(
    constraints: dict[str, Any], expected: str
) -> None:
    camera = FakeSource(VideoFormat(640, 480))
    colour = FakeSource(VideoFormat(640, 480, "rgb24"), camera)
    selected = {**SELECTED, "resizeMode": "crop-and-scale" if expected != "none" else "letterbox"}
    assert framing_settings(selected, constraints, colour)["resizeMode"] == expected


def test_framing_for_selected_settings() -> None:
    assert framing_for(SELECTED) == CROP_AND_SCALE
    assert framing_for({**SELECTED, "resizeMode": "letterbox"}) == Framing("letterbox")
    tensor = {**SELECTED, "pixelFormat": "rgbf32", "normalize": IMAGENET}
    assert framing_for(tensor).normalize == parse_normalize(IMAGENET)


def test_framing_crosses_the_spawn_boundary_as_params() -> None:
    framing = Framing("letterbox", parse_normalize(IMAGENET))
    assert Framing.from_params(framing.to_params()) == framing
    assert Framing.from_params({}) == CROP_AND_SCALE


def test_normalize_is_a_setting_of_tensor_formats_only() -> None:
    constraints = {"normalize": IMAGENET}
    assert tensor_settings({"pixelFormat": "rgbf32planar"}, constraints) == {"normalize": IMAGENET}
    assert tensor_settings({"pixelFormat": "bgr24"}, constraints) == {}
    assert tensor_settings({"pixelFormat": "rgbf32"}, {}) == {}


def test_normalize_is_a_supported_constraint() -> None:
    assert "normalize" in SUPPORTED_CONSTRAINTS


# -- normalize ------------------------------------------------------------------------


def test_normalize_scale_and_offset_are_the_formula() -> None:
    n = parse_normalize(IMAGENET)
    for x in (0, 1, 128, 255):
        for c in range(3):
            want = (x / 255 - n.mean[c]) / n.std[c]
            assert math.isclose(x * n.scale[c] + n.offset[c], want, rel_tol=1e-12, abs_tol=1e-12)
    assert parse_normalize({"mean": [0, 0, 0], "std": [1, 1, 1]}) == Normalize(
        (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    )


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ([0.5, 0.5, 0.5], "normalize"),
        ({"mean": [0.5, 0.5, 0.5]}, "normalize"),
        ({"mean": [0.5] * 3, "std": [1] * 3, "max": 1}, "normalize"),
        ({"mean": [0.5, 0.5], "std": [1, 1, 1]}, "mean [0.5, 0.5]"),
        ({"mean": [0.5] * 4, "std": [1, 1, 1]}, "mean [0.5, 0.5, 0.5, 0.5]"),
        ({"mean": "0.5", "std": [1, 1, 1]}, "mean '0.5'"),
        ({"mean": [0.5, "0.5", 0.5], "std": [1, 1, 1]}, "mean [0.5, '0.5', 0.5]"),
        ({"mean": [0.5, True, 0.5], "std": [1, 1, 1]}, "mean [0.5, True, 0.5]"),
        ({"mean": [0.5] * 3, "std": [1, float("nan"), 1]}, "std [1, nan, 1]"),
        ({"mean": [0.5] * 3, "std": [1, 0, 1]}, "std [1.0, 0.0, 1.0]"),
        ({"mean": [0.5] * 3, "std": [1, -1, 1]}, "std [1.0, -1.0, 1.0]"),
    ],
    ids=repr,
)
def test_a_malformed_normalize_is_a_type_error_naming_key_and_value(value: Any, named: str) -> None:
    with pytest.raises(ConstraintTypeError, match="normalize") as caught:
        parse_normalize(value)
    assert isinstance(caught.value, TypeError)
    assert named in str(caught.value)
