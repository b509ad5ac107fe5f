"""How a derived video frame is framed, and the tensor formats' arithmetic.

Design note. One pure module that both sides import: the daemon reports a
track's ``cropRect`` and ``contentRect`` from `frame_layout` (composed along
the chain of sources with `compose`), and the derived capture process cuts
and places the pixels by the same call, so the two cannot disagree.

- ``crop-and-scale`` (the spec's): the centred part of the input with the
  output's aspect ratio, scaled to fill the whole output.
- ``letterbox`` (ours): the whole input scaled to fit inside the output,
  aspect kept, centred; the bands around it are black.

Neither scales up: a derived source is never larger than its parent in
either side. Rectangles are whole pixels; the crop's size is rounded to the
nearest pixel and its offset floored, so that it stays centred to within
half a pixel. A worker maps a box (bx, by, bw, bh) found in a frame back to
camera pixels with the two rectangles::

    sx, sy = crop["width"] / content["width"], crop["height"] / content["height"]
    x, y = crop["x"] + (bx - content["x"]) * sx, crop["y"] + (by - content["y"]) * sy  # w: bw * sx

Tensor formats (``rgbf32``, ``rgbf32planar``) hold RGB as float32 in [0, 1],
or ``(x / 255 - mean) / std`` per channel with ``normalize``; a derived
process applies that as ``x * scale + offset`` (`Normalize.scale`,
`Normalize.offset`), computed once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from mediastream.errors import ConstraintTypeError
from mediastream.ring import FLOAT_PIXEL_FORMATS, RingFormat, VideoFormat

__all__ = [
    "CROP_AND_SCALE",
    "DERIVED_RESIZE_MODES",
    "Framing",
    "Layout",
    "Normalize",
    "Rect",
    "compose",
    "frame_layout",
    "framing_for",
    "framing_settings",
    "parse_normalize",
    "source_layout",
    "tensor_settings",
    "whole_frame",
]

DERIVED_RESIZE_MODES = ("crop-and-scale", "letterbox")
CHANNELS = 3  # normalize's mean and std: one per RGB channel


@dataclass(frozen=True, slots=True)
class Rect:
    """A rectangle of whole pixels; ``x``, ``y`` its top left corner."""

    x: int
    y: int
    width: int
    height: int

    def to_wire(self) -> dict[str, int]:
        return {"x": self.x, "y": self.y, "width": self.width, "height": self.height}


@dataclass(frozen=True, slots=True)
class Layout:
    """Where a frame's pixels come from: ``crop`` of the input (in input
    pixels) lies at ``content`` in the output (in output pixels); the rest
    of the output is padding."""

    crop: Rect
    content: Rect
    input_size: tuple[int, int]
    output_size: tuple[int, int]

    @property
    def resized(self) -> bool:
        """False when the output is the input, pixel for pixel."""
        whole = Rect(0, 0, *self.input_size)
        return self.crop != whole or self.content != whole or self.input_size != self.output_size

    @property
    def scaled(self) -> bool:
        """True when the crop's pixels are resized to fit the content."""
        return (self.crop.width, self.crop.height) != (self.content.width, self.content.height)


def whole_frame(width: int, height: int) -> Layout:
    """A frame as the camera delivers it."""
    whole = Rect(0, 0, width, height)
    return Layout(whole, whole, (width, height), (width, height))


def frame_layout(width: int, height: int, target_w: int, target_h: int, mode: str) -> Layout:
    """The layout of a ``target_w`` x ``target_h`` frame made from a
    ``width`` x ``height`` one by ``mode`` ("crop-and-scale" or "letterbox")."""
    whole_in, whole_out = Rect(0, 0, width, height), Rect(0, 0, target_w, target_h)
    sizes = ((width, height), (target_w, target_h))
    if mode == "letterbox":
        if width * target_h > height * target_w:  # the input is wider: bands above and below
            h = min(target_h, max(1, round(height * target_w / width)))
            content = Rect(0, (target_h - h) // 2, target_w, h)
        else:
            w = min(target_w, max(1, round(width * target_h / height)))
            content = Rect((target_w - w) // 2, 0, w, target_h)
        return Layout(whole_in, content, *sizes)
    if width * target_h > height * target_w:  # the input is wider: crop the sides
        w = min(width, max(1, round(height * target_w / target_h)))
        return Layout(Rect((width - w) // 2, 0, w, height), whole_out, *sizes)
    h = min(height, max(1, round(width * target_h / target_w)))
    return Layout(Rect(0, (height - h) // 2, width, h), whole_out, *sizes)


def compose(outer: Layout, inner: Layout) -> Layout:
    """``inner`` applied to frames that ``outer`` laid out: a derived source
    of a derived source. The result's crop is in ``outer``'s input pixels
    (the camera's); only the part of ``inner``'s crop that shows content of
    ``outer`` counts, padding is not image."""
    seen = _intersect(inner.crop, outer.content)
    crop = _map(seen, outer.content, outer.crop)
    content = _map(seen, inner.crop, inner.content)
    return Layout(crop, content, outer.input_size, inner.output_size)


def _intersect(a: Rect, b: Rect) -> Rect:
    x, y = max(a.x, b.x), max(a.y, b.y)
    right, bottom = min(a.x + a.width, b.x + b.width), min(a.y + a.height, b.y + b.height)
    return Rect(x, y, max(0, right - x), max(0, bottom - y))


def _map(r: Rect, source: Rect, target: Rect) -> Rect:
    """``r`` (inside ``source``) in the coordinates of ``target``, which
    ``source`` is scaled to; edges rounded to whole pixels."""
    sx, sy = target.width / source.width, target.height / source.height
    left, top = round(target.x + (r.x - source.x) * sx), round(target.y + (r.y - source.y) * sy)
    right = round(target.x + (r.x + r.width - source.x) * sx)
    bottom = round(target.y + (r.y + r.height - source.y) * sy)
    return Rect(left, top, right - left, bottom - top)


@dataclass(frozen=True, slots=True)
class Normalize:
    """Per-channel (R, G, B) normalisation of a tensor format."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def scale(self) -> tuple[float, float, float]:
        """Multiplies an 8-bit sample: ``x * scale + offset == (x / 255 - mean) / std``."""
        s0, s1, s2 = (1.0 / (255.0 * s) for s in self.std)
        return s0, s1, s2

    @property
    def offset(self) -> tuple[float, float, float]:
        o0, o1, o2 = (-m / s for m, s in zip(self.mean, self.std, strict=True))
        return o0, o1, o2

    def to_wire(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}


UNIT = Normalize((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))  # plain [0, 1]


def parse_normalize(value: Any) -> Normalize:
    """``{"mean": [m0, m1, m2], "std": [s0, s1, s2]}`` as a `Normalize`.
    Raises `ConstraintTypeError` naming the key and the value for anything
    else: other keys, not three finite numbers, a std not above 0."""
    if not isinstance(value, Mapping) or set(value) != {"mean", "std"}:
        raise ConstraintTypeError(
            f'normalize: {value!r:.80} is not {{"mean": [m0, m1, m2], "std": [s0, s1, s2]}}'
        )
    mean, std = _triple("mean", value["mean"]), _triple("std", value["std"])
    if not all(s > 0 for s in std):
        raise ConstraintTypeError(f"normalize: std {list(std)!r} must be above 0 in every channel")
    return Normalize(mean, std)


def _triple(key: str, value: Any) -> tuple[float, float, float]:
    numbers = isinstance(value, (list, tuple)) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
    )
    if not numbers or len(value) != CHANNELS:
        raise ConstraintTypeError(
            f"normalize: {key} {value!r:.60} is not a list of {CHANNELS} finite numbers (R, G, B)"
        )
    a, b, c = (float(v) for v in value)
    return a, b, c


@dataclass(frozen=True, slots=True)
class Framing:
    """What a derived source does besides its size, rate and pixel format;
    part of its identity (two tracks share a source only when equal)."""

    resize_mode: str = "crop-and-scale"
    normalize: Normalize | None = None  # tensor formats only; None: [0, 1]

    def to_params(self) -> dict[str, Any]:
        """For the derived capture process's `BackendSpec` params."""
        normalize = self.normalize.to_wire() if self.normalize is not None else None
        return {"resizeMode": self.resize_mode, "normalize": normalize}

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Framing:
        normalize = params.get("normalize")
        return cls(
            str(params.get("resizeMode", "crop-and-scale")),
            parse_normalize(normalize) if normalize is not None else None,
        )

    def levels(self) -> Normalize:
        """The normalisation the pixels get (tensor formats)."""
        return self.normalize or UNIT


CROP_AND_SCALE = Framing()  # the spec's resizing, as every source had before letterbox


def framing_for(settings: Mapping[str, Any]) -> Framing:
    """The framing a track with these (selected) settings needs."""
    mode = "letterbox" if settings.get("resizeMode") == "letterbox" else "crop-and-scale"
    normalize = settings.get("normalize")
    return Framing(mode, parse_normalize(normalize) if normalize is not None else None)


def tensor_settings(settings: Mapping[str, Any], constraints: Mapping[str, Any]) -> dict[str, Any]:
    """``normalize`` as a setting: the basic set's, when the track's pixel
    format is a tensor one (with any other it has nothing to act on and is
    ignored, as the spec ignores a property a source does not have)."""
    normalize = constraints.get("normalize")
    if normalize is None or settings.get("pixelFormat") not in FLOAT_PIXEL_FORMATS:
        return {}
    return {"normalize": parse_normalize(normalize).to_wire()}


# -- what a source's frames show -------------------------------------------------


class _FramedPlan(Protocol):
    @property
    def framing(self) -> Framing: ...


class FramedSource(Protocol):
    """What `source_layout` reads of a `mediabroker.sources.Source`."""

    @property
    def parent(self) -> FramedSource | None: ...

    @property
    def format(self) -> RingFormat: ...

    @property
    def plan(self) -> _FramedPlan: ...


def source_layout(source: FramedSource) -> tuple[Layout, str | None]:
    """The layout of a video source's frames in camera pixels, composed along
    its parents (a source the camera was re-opened under derives twice), and
    the resize mode of the nearest step that resizes (None: none does)."""
    fmt = source.format
    assert isinstance(fmt, VideoFormat)
    parent = source.parent
    if parent is None:
        return whole_frame(fmt.width, fmt.height), None
    outer, outer_mode = source_layout(parent)
    have = parent.format
    assert isinstance(have, VideoFormat)
    mode = source.plan.framing.resize_mode
    inner = frame_layout(have.width, have.height, fmt.width, fmt.height, mode)
    return compose(outer, inner), mode if inner.resized else outer_mode


def framing_settings(
    settings: Mapping[str, Any], constraints: Mapping[str, Any], source: FramedSource
) -> dict[str, Any]:
    """``resizeMode``, ``cropRect`` and ``contentRect`` as the source's pixels
    are: the mode that resized them, else "none" (the camera's own pixels,
    perhaps in another colour or rate). When a required resizeMode excludes
    "none", unresized pixels report the selected mode instead: an identity
    crop or letterbox is one too, and a setting never breaks a requirement."""
    layout, mode = source_layout(source)
    if mode is None:
        allowed = _allows_none(constraints.get("resizeMode"))
        mode = "none" if allowed else str(settings.get("resizeMode", "none"))
    return {
        "resizeMode": mode,
        "cropRect": layout.crop.to_wire(),
        "contentRect": layout.content.to_wire(),
    }


def _allows_none(constraint: Any) -> bool:
    exact = constraint.get("exact") if isinstance(constraint, Mapping) else None
    if exact is None:
        return True
    return "none" in (exact if isinstance(exact, list) else [exact])
