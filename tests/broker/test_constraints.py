"""SelectSettings (`mediabroker.constraints`) in-process: properties, then examples.

No daemon and no Device: capabilities are written here in the spec's shapes
(``{min, max}`` for numbers, a list of choices, a bare deviceId), as the
devices package builds them. What is checked, per the spec's section 2.2:

- the settings chosen satisfy every required constraint (``min``, ``max``,
  ``exact``; bare values in ``advanced``), lie within the capabilities,
  and width, height and aspectRatio agree with one another;
- else `OverconstrainedError` names a constraint that alone cannot be met
  (its fitness distance is infinite for every setting), or ``""`` when
  each can be met alone but not all together;
- an exact value the device can give is the setting; an ideal one pulls
  the setting to the nearest value the device can give, and the fitness
  distance is the spec's.

aspectRatio is met within a whole pixel: a width and a height in pixels
cannot make every ratio (100 wide and 2.5879:1 needs 38.64 rows), so the
ratio may be off by ASPECT_TOLERANCE or by one pixel's worth, whichever is
more. Numbers and choices otherwise are exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import hypothesis
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediabroker.constraint_parsing import (
    parse_gum_constraints,
    parse_track_constraints,
    refuse_required_outside_selection,
)
from mediabroker.constraints import ASPECT_TOLERANCE, select_settings
from mediastream.errors import OverconstrainedError
from mediastream.wire import AUDIO_CONSTRAINTS, COMMON_CONSTRAINTS, VIDEO_CONSTRAINTS

CAMERA_ID, MICROPHONE_ID = "camera-id", "microphone-id"
PIXEL_FORMATS = ("bgr24", "rgb24", "gray8")
REQUIRED_KEYS = ("min", "max", "exact")
NUMBER_PROPERTIES = frozenset(
    {"width", "height", "aspectRatio", "frameRate", "sampleRate", "sampleSize", "channelCount"}
    | {"latency"}
)
INTEGER_PROPERTIES = frozenset({"width", "height", "sampleRate", "sampleSize", "channelCount"})

Caps = dict[str, Any]


def camera(
    width: tuple[int, int] = (1, 1920),
    height: tuple[int, int] = (1, 1080),
    rate: tuple[float, float] = (1.0, 30.0),
    pixel_formats: tuple[str, ...] = PIXEL_FORMATS,
) -> Caps:
    """A camera's capabilities in the devices package's shape: the aspect
    ratios are the ones its widths and heights can make."""
    return {
        "deviceId": CAMERA_ID,
        "groupId": "camera-group",
        "width": {"min": width[0], "max": width[1]},
        "height": {"min": height[0], "max": height[1]},
        "aspectRatio": {"min": width[0] / height[1], "max": width[1] / height[0]},
        "frameRate": {"min": rate[0], "max": rate[1]},
        "facingMode": [],
        "resizeMode": ["none", "crop-and-scale"],
        "pixelFormat": list(pixel_formats),
    }


CAMERA_DEFAULTS = {"width": 640, "height": 480, "frameRate": 30.0, "resizeMode": "none"}


def microphone(
    rate: tuple[int, int] = (8000, 48000),
    channels: int = 2,
    latency: tuple[float, float] = (0.01, 0.01),
    processing: tuple[bool, ...] = (False,),
) -> Caps:
    return {
        "deviceId": MICROPHONE_ID,
        "groupId": "microphone-group",
        "sampleRate": {"min": rate[0], "max": rate[1]},
        "sampleSize": {"min": 32, "max": 32},
        "channelCount": {"min": 1, "max": channels},
        "latency": {"min": latency[0], "max": latency[1]},
        "echoCancellation": list(processing),
        "autoGainControl": list(processing),
        "noiseSuppression": list(processing),
    }


MICROPHONE_DEFAULTS = {"sampleRate": 48000, "channelCount": 1}


def chosen(caps: Caps, defaults: Mapping[str, Any], constraints: Mapping[str, Any]) -> Caps:
    return select_settings(caps, defaults, constraints).settings


def failed(caps: Caps, defaults: Mapping[str, Any], constraints: Mapping[str, Any]) -> str:
    """The constraint OverconstrainedError names (fails if none is raised)."""
    with pytest.raises(OverconstrainedError) as caught:
        select_settings(caps, defaults, constraints)
    return caught.value.constraint


# -- satisfaction, as the spec defines it --------------------------------------------


def required_part(constraint: Any) -> dict[str, Any]:
    """What a basic-set constraint requires: bare values there are only ideal."""
    if not isinstance(constraint, Mapping):
        return {}
    return {k: v for k, v in constraint.items() if k in REQUIRED_KEYS}


def aspect_tolerance(settings: Mapping[str, Any]) -> float:
    """The relative error whole pixels force on a ratio (module docstring)."""
    return max(ASPECT_TOLERANCE, 1 / min(int(settings["width"]), int(settings["height"])))


def satisfies(name: str, value: Any, required: Mapping[str, Any], tolerance: float) -> bool:
    if name not in NUMBER_PROPERTIES:
        wanted = required.get("exact")
        return wanted is None or value in (wanted if isinstance(wanted, list) else [wanted])
    checks = [
        "min" not in required or value >= required["min"] * (1 - tolerance),
        "max" not in required or value <= required["max"] * (1 + tolerance),
        "exact" not in required or math.isclose(value, required["exact"], rel_tol=tolerance),
    ]
    return all(checks)


def broken_constraints(settings: Mapping[str, Any], constraints: Mapping[str, Any]) -> list[str]:
    """The required constraints ``settings`` does not satisfy."""
    broken = []
    for name, constraint in constraints.items():
        required = required_part(constraint)
        tolerance = aspect_tolerance(settings) if name == "aspectRatio" else 0.0
        if required and not satisfies(name, settings.get(name), required, tolerance):
            broken.append(f"{name}={constraint!r} but the setting is {settings.get(name)!r}")
    return broken


def outside_capabilities(settings: Mapping[str, Any], caps: Caps) -> list[str]:
    outside = []
    for name, capability in caps.items():
        value = settings.get(name)
        if isinstance(capability, Mapping):
            tolerance = aspect_tolerance(settings) if name == "aspectRatio" else 0.0
            if not satisfies(name, value, capability, tolerance):
                outside.append(f"{name}={value!r} outside {capability}")
        elif isinstance(capability, list):
            if capability and value not in capability:
                outside.append(f"{name}={value!r} not one of {capability}")
        elif value != capability:
            outside.append(f"{name}={value!r}, not {capability!r}")
    return outside


# -- strategies ------------------------------------------------------------------------


@st.composite
def bounds(draw: st.DrawFn, low: int, high: int) -> tuple[int, int]:
    first, second = draw(st.integers(low, high)), draw(st.integers(low, high))
    return min(first, second), max(first, second)


@st.composite
def cameras(draw: st.DrawFn) -> tuple[Caps, dict[str, Any]]:
    """A camera's capabilities and defaults inside them."""
    width, height = draw(bounds(1, 4096)), draw(bounds(1, 2160))
    low_rate = draw(st.floats(0.5, 60))
    rate = (low_rate, draw(st.floats(low_rate, 120)))
    formats = draw(st.lists(st.sampled_from(PIXEL_FORMATS), min_size=1, max_size=3, unique=True))
    defaults = {
        "width": draw(st.integers(*width)),
        "height": draw(st.integers(*height)),
        "frameRate": draw(st.floats(*rate)),
        "resizeMode": "none",
    }
    return camera(width, height, rate, tuple(formats)), defaults


@st.composite
def microphones(draw: st.DrawFn) -> tuple[Caps, dict[str, Any]]:
    rate = draw(bounds(8000, 96000))
    low_latency = draw(st.floats(0.001, 0.1))
    latency = (low_latency, draw(st.floats(low_latency, 0.5)))
    processing = draw(st.sampled_from([(False,), (True,), (False, True)]))
    caps = microphone(rate, draw(st.integers(1, 8)), latency, processing)
    return caps, {"sampleRate": draw(st.integers(*rate)), "channelCount": 1}


def number(capability: Mapping[str, Any], integer: bool) -> st.SearchStrategy[Any]:
    """Values from well below to well above a capability's range."""
    low, high = capability["min"], capability["max"]
    if integer:
        return st.integers(max(0, low // 2 - 1), high * 2)
    return st.floats(low / 2, high * 2, allow_nan=False, allow_infinity=False)


def number_constraint(capability: Mapping[str, Any], integer: bool) -> st.SearchStrategy[Any]:
    values = number(capability, integer)
    keyed = st.dictionaries(st.sampled_from(["min", "max", "exact", "ideal"]), values, min_size=1)
    return st.one_of(keyed, values)  # a bare value is ideal in the basic set


def choice_constraint(choices: list[Any]) -> st.SearchStrategy[Any]:
    value = st.sampled_from([*choices, "INVALID"] if choices else ["INVALID"])
    if choices and not isinstance(choices[0], bool):
        value = st.one_of(value, st.lists(st.sampled_from([*choices, "INVALID"]), min_size=1))
    keyed = st.dictionaries(st.sampled_from(["exact", "ideal"]), value, min_size=1)
    return st.one_of(keyed, value)


def constraint_sets(caps: Caps) -> st.SearchStrategy[dict[str, Any]]:
    """Constraint sets over ``caps``' properties, satisfiable or not."""
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for name, capability in caps.items():
        if isinstance(capability, Mapping):
            optional[name] = number_constraint(capability, name in INTEGER_PROPERTIES)
        elif isinstance(capability, list):
            optional[name] = choice_constraint(capability)
        else:  # deviceId, groupId: this device's or another's
            ids = st.sampled_from([capability, "another-id"])
            optional[name] = st.one_of(ids, st.fixed_dictionaries({"exact": ids}))
    return st.fixed_dictionaries({}, optional=optional)


def with_constraints(
    devices: st.SearchStrategy[tuple[Caps, dict[str, Any]]],
) -> st.SearchStrategy[tuple[Caps, dict[str, Any], dict[str, Any]]]:
    return devices.flatmap(
        lambda device: constraint_sets(device[0]).map(lambda c: (device[0], device[1], c))
    )


ANY_DEVICE = with_constraints(st.one_of(cameras(), microphones()))


# -- properties --------------------------------------------------------------------------


@hypothesis.settings(max_examples=200)
@given(ANY_DEVICE)
def test_settings_meet_every_required_constraint_or_the_error_names_one(
    case: tuple[Caps, dict[str, Any], dict[str, Any]],
) -> None:
    caps, defaults, constraints = case
    try:
        result = chosen(caps, defaults, constraints)
    except OverconstrainedError as error:
        assert_rightly_blamed(caps, defaults, constraints, error.constraint)
        return
    assert not broken_constraints(result, constraints), (result, constraints)
    assert not outside_capabilities(result, caps), (result, caps)
    if "width" in result:
        assert result["aspectRatio"] == round(result["width"] / result["height"], 10), result


def assert_rightly_blamed(
    caps: Caps, defaults: Mapping[str, Any], constraints: Mapping[str, Any], name: str
) -> None:
    """A named constraint is required and fails alone; "" means none fails alone."""
    if name:
        assert required_part(constraints.get(name)), f"{name} was not required: {constraints}"
        assert failed(caps, defaults, {name: constraints[name]}) == name
        return
    for other, constraint in constraints.items():
        select_settings(caps, defaults, {other: constraint})  # raises if it fails alone


NUMBERS_IN_RANGE = [
    ("width", cameras()),
    ("height", cameras()),
    ("frameRate", cameras()),
    ("sampleRate", microphones()),
    ("channelCount", microphones()),
    ("latency", microphones()),
]


@pytest.mark.parametrize(
    ("name", "devices"), NUMBERS_IN_RANGE, ids=[n for n, _ in NUMBERS_IN_RANGE]
)
@given(data=st.data())
def test_an_exact_value_the_device_can_give_is_the_setting(
    name: str, devices: st.SearchStrategy[tuple[Caps, dict[str, Any]]], data: st.DataObject
) -> None:
    caps, defaults = data.draw(devices)
    low, high = caps[name]["min"], caps[name]["max"]
    value = data.draw(
        st.integers(low, high) if name in INTEGER_PROPERTIES else st.floats(low, high)
    )
    result = select_settings(caps, defaults, {name: {"exact": value}})
    assert result.settings[name] == value
    assert result.distance == 0.0  # nothing ideal was asked for


HD_DEFAULTS = {"width": 1280, "height": 720, "frameRate": 30.0, "resizeMode": "none"}


@pytest.mark.parametrize(
    ("defaults", "constraints", "size"),
    [
        (HD_DEFAULTS, {"width": 640}, (640, 360)),
        (HD_DEFAULTS, {"height": 360}, (640, 360)),
        (HD_DEFAULTS, {"width": {"exact": 641}}, (641, 361)),  # the nearest whole height
        (HD_DEFAULTS, {"height": {"exact": 540}}, (960, 540)),
        # A required range that moves a side off the default gives that side
        # (it was 960x720, the middle of the picture); one that does not, none.
        (HD_DEFAULTS, {"width": {"max": 960}}, (960, 540)),
        (HD_DEFAULTS, {"width": {"min": 1920}}, (1920, 1080)),
        (HD_DEFAULTS, {"width": {"max": 2000}}, (1280, 720)),
        (CAMERA_DEFAULTS, {"width": 320}, (320, 240)),
        (CAMERA_DEFAULTS, {"width": 320, "height": 320}, (320, 320)),  # both given: as asked
        (CAMERA_DEFAULTS, {"width": 320, "aspectRatio": 2.0}, (320, 160)),
    ],
    ids=repr,
)
def test_one_side_given_the_other_follows_the_devices_aspect_ratio(
    defaults: dict[str, Any], constraints: dict[str, Any], size: tuple[int, int]
) -> None:
    """As browsers do: {"width": 640} on a 16:9 camera is 640x360, not the
    640x720 middle of the picture (the old result), and the side asked for
    is the one kept."""
    picked = chosen(camera(), defaults, constraints)
    assert (picked["width"], picked["height"]) == size, picked


@given(cameras(), st.data())
def test_rounding_never_leaves_a_required_aspect_range_a_whole_size_can_meet(
    device: tuple[Caps, dict[str, Any]], data: st.DataObject
) -> None:
    """An exact width and a narrow required aspectRatio range: whenever some
    whole height in the camera's range gives a ratio inside it, the chosen
    size does (truncating the height once missed the range)."""
    caps, defaults = device
    width = data.draw(st.integers(caps["width"]["min"], caps["width"]["max"]))
    low = data.draw(st.floats(caps["aspectRatio"]["min"], caps["aspectRatio"]["max"]))
    high = low * 1.001
    heights = range(
        max(caps["height"]["min"], math.ceil(width / high)),
        min(caps["height"]["max"], math.floor(width / low)) + 1,
    )
    if not any(low <= width / h <= high for h in heights):
        return  # no whole size meets it: nothing to promise
    constraints = {"width": {"exact": width}, "aspectRatio": {"min": low, "max": high}}
    picked = chosen(caps, defaults, constraints)
    assert picked["width"] == width and low <= width / picked["height"] <= high, picked


@given(cameras(), st.data())
def test_an_exact_aspect_ratio_the_sizes_can_make_is_met(
    device: tuple[Caps, dict[str, Any]], data: st.DataObject
) -> None:
    caps, defaults = device
    ratio = data.draw(st.floats(caps["aspectRatio"]["min"], caps["aspectRatio"]["max"]))
    picked = chosen(caps, defaults, {"aspectRatio": {"exact": ratio}})
    actual = picked["width"] / picked["height"]
    assert math.isclose(actual, ratio, rel_tol=aspect_tolerance(picked)), picked


@pytest.mark.parametrize(
    ("name", "devices"), NUMBERS_IN_RANGE, ids=[n for n, _ in NUMBERS_IN_RANGE]
)
@given(data=st.data())
def test_an_ideal_value_pulls_the_setting_to_the_nearest_possible(
    name: str, devices: st.SearchStrategy[tuple[Caps, dict[str, Any]]], data: st.DataObject
) -> None:
    """The setting is the ideal clamped into the range (rounded for whole
    units), and the distance is the spec's |actual - ideal| / max(|actual|, |ideal|)."""
    caps, defaults = data.draw(devices)
    integer = name in INTEGER_PROPERTIES
    ideal = data.draw(number(caps[name], integer).filter(lambda v: v > 0))
    result = select_settings(caps, defaults, {name: {"ideal": ideal}})
    nearest = min(max(ideal, caps[name]["min"]), caps[name]["max"])
    actual = result.settings[name]
    assert actual == (round(nearest) if integer else nearest)
    assert result.distance == pytest.approx(abs(actual - ideal) / max(actual, ideal))
    bare = select_settings(caps, defaults, {name: ideal})  # a bare value is ideal too
    assert bare.settings[name] == actual


@given(cameras(), st.data())
def test_a_closer_ideal_gives_a_smaller_distance(
    device: tuple[Caps, dict[str, Any]], data: st.DataObject
) -> None:
    """The fitness distance ranks devices: it grows as the ideal moves away
    from what the device can give."""
    caps, defaults = device
    high = caps["width"]["max"]
    near, far = sorted(data.draw(st.lists(st.integers(high, high * 4), min_size=2, max_size=2)))
    distance_near = select_settings(caps, defaults, {"width": {"ideal": near}}).distance
    distance_far = select_settings(caps, defaults, {"width": {"ideal": far}}).distance
    assert distance_near <= distance_far
    assert (distance_near < distance_far) == (near < far)


def as_required(advanced: Mapping[str, Any]) -> dict[str, Any]:
    """An advanced set as the basic set that requires the same: bare values
    are exact there, ideals are nothing."""
    return {
        k: required_part(v) if isinstance(v, Mapping) else {"exact": v} for k, v in advanced.items()
    }


@given(with_constraints(st.one_of(cameras(), microphones())))
def test_an_advanced_set_narrows_as_if_required_or_is_skipped(
    case: tuple[Caps, dict[str, Any], dict[str, Any]],
) -> None:
    """Alone, an advanced set chooses what the same constraints required
    would choose; when those cannot be met, it is skipped and the choice is
    the unconstrained one, with no error."""
    caps, defaults, advanced = case
    result = chosen(caps, defaults, {"advanced": [advanced]})
    try:
        expected = chosen(caps, defaults, as_required(advanced))
    except OverconstrainedError:
        expected = chosen(caps, defaults, {})
    assert result == expected


def test_an_ideal_inside_an_advanced_set_is_not_required() -> None:
    """Bare values of an advanced set are exact, an explicit ideal is not:
    facingMode's ideal, which this camera cannot meet, must not make the set
    unsatisfiable (hypothesis found the set skipped, frameRate 1 not 2)."""
    caps = camera()
    advanced = {"frameRate": 2.0, "facingMode": {"ideal": "user"}}
    assert chosen(caps, CAMERA_DEFAULTS, {"advanced": [advanced]})["frameRate"] == 2.0


@given(with_constraints(cameras()), st.data())
def test_an_advanced_set_never_breaks_the_basic_set(
    case: tuple[Caps, dict[str, Any], dict[str, Any]], data: st.DataObject
) -> None:
    """Appending any advanced set to a satisfiable request keeps it
    satisfiable, and the result still meets the basic set's constraints."""
    caps, defaults, basic = case
    try:
        plain = chosen(caps, defaults, basic)
    except OverconstrainedError:
        return
    advanced = data.draw(constraint_sets(caps))
    result = chosen(caps, defaults, {**basic, "advanced": [advanced]})
    assert not broken_constraints(result, basic), (result, basic)
    if broken_constraints(result, as_required(advanced)):
        assert result == plain, "a skipped advanced set must leave the choice alone"


# -- examples: numbers ----------------------------------------------------------------------


def test_a_range_takes_the_value_nearest_the_default() -> None:
    assert chosen(camera(), CAMERA_DEFAULTS, {"width": {"min": 800, "max": 1000}})["width"] == 800
    assert chosen(camera(), CAMERA_DEFAULTS, {"width": {"min": 100, "max": 700}})["width"] == 640
    assert chosen(camera(), CAMERA_DEFAULTS, {"height": {"max": 200}})["height"] == 200


def test_a_range_outside_the_capability_names_the_property() -> None:
    assert failed(camera(), CAMERA_DEFAULTS, {"frameRate": {"min": 31}}) == "frameRate"
    assert failed(camera(), CAMERA_DEFAULTS, {"width": {"min": 1000, "max": 900}}) == "width"
    with pytest.raises(OverconstrainedError, match="1 to 1920"):
        select_settings(camera(), CAMERA_DEFAULTS, {"width": {"exact": 4000}})


def test_exact_and_ideal_together_the_exact_wins() -> None:
    result = select_settings(camera(), CAMERA_DEFAULTS, {"width": {"exact": 1280, "ideal": 320}})
    assert result.settings["width"] == 1280
    assert result.distance == pytest.approx((1280 - 320) / 1280)


def test_an_ideal_beyond_the_range_stops_at_its_end() -> None:
    result = select_settings(camera(), CAMERA_DEFAULTS, {"width": {"ideal": 5000}})
    assert result.settings["width"] == 1920
    assert result.distance == pytest.approx((5000 - 1920) / 5000)


def test_a_fractional_ideal_takes_the_nearest_whole_unit() -> None:
    """Pixels, hertz and channels are whole: the nearest one, not a truncation."""
    assert chosen(camera(), CAMERA_DEFAULTS, {"width": {"ideal": 639.6}})["width"] == 640
    assert chosen(microphone(), MICROPHONE_DEFAULTS, {"channelCount": 1.7})["channelCount"] == 2


def test_an_unsupported_property_is_ignored() -> None:
    """The spec ignores constraints a device does not have, even required."""
    assert chosen(camera(), CAMERA_DEFAULTS, {"sampleRate": {"exact": 1}})["width"] == 640


# -- examples: width, height and aspect ratio together ---------------------------------------


def test_aspect_ratio_sets_the_height_for_the_width() -> None:
    result = chosen(camera(), CAMERA_DEFAULTS, {"width": {"exact": 1280}, "aspectRatio": 16 / 9})
    assert (result["width"], result["height"]) == (1280, 720)
    assert result["aspectRatio"] == round(1280 / 720, 10)


def test_aspect_ratio_moves_the_width_when_the_height_cannot() -> None:
    result = chosen(camera(), CAMERA_DEFAULTS, {"height": {"exact": 1000}, "aspectRatio": 1.5})
    assert (result["width"], result["height"]) == (1500, 1000)


def test_constraints_met_alone_but_not_together_name_no_constraint() -> None:
    """Width 1920 and ratio 1 each fit, but together need 1920 rows of 1080."""
    constraints = {"width": {"exact": 1920}, "aspectRatio": {"exact": 1}}
    assert failed(camera(), CAMERA_DEFAULTS, constraints) == ""


# -- examples: choices, lists, booleans -----------------------------------------------------


def test_an_exact_list_allows_any_of_its_values() -> None:
    result = chosen(camera(), CAMERA_DEFAULTS, {"pixelFormat": {"exact": ["gray8", "rgb24"]}})
    assert result["pixelFormat"] in ("gray8", "rgb24")
    assert chosen(camera(), CAMERA_DEFAULTS, {"pixelFormat": {"exact": "gray8"}})[
        "pixelFormat"
    ] == ("gray8")
    assert failed(
        camera(pixel_formats=("bgr24",)), CAMERA_DEFAULTS, {"pixelFormat": {"exact": ["gray8"]}}
    ) == ("pixelFormat")


def test_an_ideal_list_takes_its_first_value_the_device_has() -> None:
    caps = camera(pixel_formats=("bgr24", "gray8"))
    result = select_settings(caps, CAMERA_DEFAULTS, {"pixelFormat": {"ideal": ["rgb24", "gray8"]}})
    assert result.settings["pixelFormat"] == "gray8" and result.distance == 0.0
    missed = select_settings(caps, CAMERA_DEFAULTS, {"pixelFormat": {"ideal": "rgb24"}})
    assert missed.settings["pixelFormat"] == "bgr24" and missed.distance == 1.0


def test_an_invalid_exact_resize_mode_names_resize_mode() -> None:
    assert failed(camera(), CAMERA_DEFAULTS, {"resizeMode": {"exact": "INVALID"}}) == "resizeMode"
    picked = chosen(camera(), CAMERA_DEFAULTS, {"resizeMode": {"exact": "crop-and-scale"}})
    assert picked["resizeMode"] == "crop-and-scale"


def test_a_camera_that_does_not_know_its_facing_meets_no_exact_facing_mode() -> None:
    assert failed(camera(), CAMERA_DEFAULTS, {"facingMode": {"exact": "user"}}) == "facingMode"
    assert "facingMode" not in chosen(camera(), CAMERA_DEFAULTS, {"facingMode": "user"})


def test_booleans_required_must_be_offered_ideal_only_count() -> None:
    caps = microphone()  # no echo cancellation
    assert failed(caps, MICROPHONE_DEFAULTS, {"echoCancellation": {"exact": True}}) == (
        "echoCancellation"
    )
    assert (
        chosen(caps, MICROPHONE_DEFAULTS, {"echoCancellation": {"exact": False}})[
            "echoCancellation"
        ]
        is False
    )
    ideal = select_settings(caps, MICROPHONE_DEFAULTS, {"echoCancellation": True})
    assert ideal.settings["echoCancellation"] is False and ideal.distance == 1.0
    both = microphone(processing=(False, True))
    assert chosen(both, MICROPHONE_DEFAULTS, {"noiseSuppression": True})["noiseSuppression"] is True


def test_a_boolean_is_not_a_number_and_a_number_is_not_a_boolean() -> None:
    """True == 1 in Python; a constraint of one type never matches the other."""
    caps = microphone(processing=(False, True))
    assert failed(caps, MICROPHONE_DEFAULTS, {"autoGainControl": {"exact": 1}}) == "autoGainControl"


# -- examples: deviceId and groupId -------------------------------------------------------


def test_an_exact_device_id_is_this_device_or_fails() -> None:
    assert chosen(camera(), CAMERA_DEFAULTS, {"deviceId": {"exact": CAMERA_ID}})["deviceId"] == (
        CAMERA_ID
    )
    assert failed(camera(), CAMERA_DEFAULTS, {"deviceId": {"exact": "another"}}) == "deviceId"
    listed = {"deviceId": {"exact": ["another", CAMERA_ID]}}
    assert chosen(camera(), CAMERA_DEFAULTS, listed)["deviceId"] == CAMERA_ID
    assert failed(camera(), CAMERA_DEFAULTS, {"groupId": {"exact": "another"}}) == "groupId"


def test_an_ideal_device_id_only_ranks() -> None:
    assert select_settings(camera(), CAMERA_DEFAULTS, {"deviceId": CAMERA_ID}).distance == 0.0
    assert select_settings(camera(), CAMERA_DEFAULTS, {"deviceId": "another"}).distance == 1.0


def test_a_bare_value_is_exact_inside_advanced() -> None:
    """In the basic set a bare value is ideal; in an advanced set it is exact,
    and a set that cannot be met is skipped, in order."""
    constraints = {"advanced": [{"width": 4000}, {"width": 1280}, {"width": 320}]}
    assert chosen(camera(), CAMERA_DEFAULTS, constraints)["width"] == 1280
    assert chosen(camera(), CAMERA_DEFAULTS, {"advanced": [{"deviceId": "x"}]})["width"] == 640


# -- parsing: the spec's TypeError, before any device is looked at -------------------------


@pytest.mark.parametrize(
    "argument",
    [
        {},
        {"video": False, "audio": False},
        {"video": 1},
        {"video": "yes"},
        {"video": {"width": {"minimum": 1}}},
        {"video": {"width": float("nan")}},
        {"video": {"width": {"ideal": [1, 2]}}},
        {"video": {"advanced": {"width": 1}}},
        {"audio": {"advanced": [1]}},
        {"video": {"width": "640"}},  # once an internal error: '>' between float and str
        {"video": {"frameRate": {"min": "30"}}},
        {"video": {"advanced": [{"aspectRatio": "16:9"}]}},
        {"audio": {"sampleRate": True}},
    ],
    ids=repr,
)
def test_malformed_get_user_media_arguments_are_type_errors(argument: dict[str, Any]) -> None:
    with pytest.raises(TypeError) as caught:
        parse_gum_constraints(argument)
    assert not isinstance(caught.value, OverconstrainedError)


def test_true_is_the_empty_set_and_the_other_kinds_properties_are_dropped() -> None:
    assert parse_gum_constraints({"audio": True}) == {"audio": {}}
    parsed = parse_gum_constraints({"audio": {"width": 1, "sampleRate": 48000}, "video": True})
    assert parsed == {"audio": {"sampleRate": 48000}, "video": {}}


@pytest.mark.parametrize(
    ("kind", "own"),
    [
        ("video", COMMON_CONSTRAINTS + VIDEO_CONSTRAINTS),
        ("audio", COMMON_CONSTRAINTS + AUDIO_CONSTRAINTS),
    ],
)
def test_the_daemon_narrows_exactly_what_the_contract_lists(
    kind: str, own: tuple[str, ...]
) -> None:
    """getSupportedConstraints() reads mediastream.wire; the daemon keeps
    exactly that kind's properties of it and drops the rest and unknown ones."""
    names = [*COMMON_CONSTRAINTS, *VIDEO_CONSTRAINTS, *AUDIO_CONSTRAINTS, "noSuchProperty"]
    values: dict[str, Any] = {name: {"ideal": 1} for name in names}
    values["normalize"] = {"mean": [0, 0, 0], "std": [1, 1, 1]}  # a value, not a range
    parsed = parse_track_constraints(kind, values)
    assert set(parsed) == set(own)


def test_required_background_blur_is_a_type_error_ideal_is_not() -> None:
    with pytest.raises(TypeError):
        refuse_required_outside_selection({"backgroundBlur": {"exact": True}})
    refuse_required_outside_selection({"backgroundBlur": {"ideal": True}})
    refuse_required_outside_selection({"backgroundBlur": True})
