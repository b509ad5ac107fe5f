"""One camera frame into a derived slot: crop or letterbox, scale, colour, tensor.

Design note. A `FrameConverter` is built once per derived capture process
for one parent size, target format and `Framing`: the layout
(`mediabroker.framing.frame_layout`, the same call that gives the track's
``cropRect`` and ``contentRect``), the slices, the per-channel scale and
offset, and the scratch buffers. Per frame it allocates nothing: OpenCV
writes through ``dst=`` into the scratch or straight into the slot's view.

- Scaling runs on the 8-bit image (INTER_AREA: it only ever shrinks), before
  any float work, so the float passes touch the output's pixels only.
- ``rgbf32``: the 8-bit result widened into a float scratch, then one
  `cv2.transform` with a 3x4 matrix swaps BGR to RGB and applies scale and
  offset, writing into the slot (about 4x faster than numpy's broadcast
  multiply-add over the channel axis).
- ``rgbf32planar``: `cv2.split` into three 8-bit planes, then one
  `cv2.addWeighted` per plane (``x * scale + offset``, float32 out) into
  the slot's plane.
- Letterbox bands are black in the format's own terms (0, or the
  normalised value of 0), written once per slot: only this process writes
  the ring, and the bands never move while it runs.
"""

from __future__ import annotations

import numpy as np

from mediabroker.errors import CaptureError
from mediabroker.framing import Framing, Rect, frame_layout
from mediastream.ring import FLOAT_PIXEL_FORMATS, VideoFormat

__all__ = ["FrameConverter"]

_COLOUR_CODES = {"rgb24": "COLOR_BGR2RGB", "gray8": "COLOR_BGR2GRAY"}


class FrameConverter:
    """Converts bgr24 frames of ``parent``'s size into slots of ``target``.
    Raises `CaptureError` for a parent that is not bgr24."""

    def __init__(self, parent: VideoFormat, target: VideoFormat, framing: Framing) -> None:
        import cv2  # only capture processes (and the bench) load OpenCV

        if parent.pixel_format != "bgr24":
            raise CaptureError(f"a derived source reads bgr24 frames, not {parent.pixel_format}")
        self._cv2 = cv2
        self.target = target
        self.layout = frame_layout(
            parent.width, parent.height, target.width, target.height, framing.resize_mode
        )
        crop, content = self.layout.crop, self.layout.content
        self._crop = (slice(crop.y, crop.y + crop.height), slice(crop.x, crop.x + crop.width))
        rows = slice(content.y, content.y + content.height)
        cols = slice(content.x, content.x + content.width)
        self._planar = target.pixel_format == "rgbf32planar"
        self._rows, self._cols = rows, cols
        self._content = (slice(None), rows, cols) if self._planar else (rows, cols)
        self._size = (content.width, content.height)
        self._scaled = self.layout.scaled
        levels = framing.levels()
        self._scale, self._offset = levels.scale, levels.offset
        self._black = self._black_value(target)
        self._banded = content != Rect(0, 0, target.width, target.height)
        self._padded: set[int] = set()  # slots (by address) whose bands are written
        self._make_scratch(target)

    def _make_scratch(self, target: VideoFormat) -> None:
        h, w = self._size[1], self._size[0]
        fmt = target.pixel_format
        needs_bgr = self._scaled and (fmt != "bgr24")
        self._bgr = np.empty((h, w, 3), np.uint8) if needs_bgr else None
        self._wide = np.empty((h, w, 3), np.float32) if fmt == "rgbf32" else None
        self._planes = [np.empty((h, w), np.uint8) for _ in range(3)] if self._planar else []
        self._matrix = np.zeros((3, 4), np.float32)
        for c in range(3):  # output channel c (R, G, B) from input channel 2 - c (B, G, R)
            self._matrix[c, 2 - c], self._matrix[c, 3] = self._scale[c], self._offset[c]
        code = _COLOUR_CODES.get(fmt)
        self._colour = getattr(self._cv2, code) if code is not None else None

    def _black_value(self, target: VideoFormat) -> np.ndarray:
        if target.pixel_format in FLOAT_PIXEL_FORMATS:
            return np.array(self._offset, np.float32)  # 0 * scale + offset
        return np.zeros((), np.uint8)

    def __call__(self, src: np.ndarray, view: np.ndarray) -> None:
        """Convert the parent frame ``src`` into the slot ``view``."""
        self._pad(view)
        crop = src[self._crop]
        fmt = self.target.pixel_format
        if fmt == "rgbf32":
            self._to_interleaved_float(crop, view[self._content])
        elif fmt == "rgbf32planar":
            self._to_planar_float(crop, view)
        else:
            self._to_bytes(crop, view[self._content])

    def _bytes(self, crop: np.ndarray, dst: np.ndarray | None) -> np.ndarray:
        """The crop at the content's size, 8-bit BGR: scaled into ``dst``
        (or into the scratch), or the crop itself when no scaling is needed."""
        if not self._scaled:
            return crop
        out = dst if dst is not None else self._bgr
        assert out is not None
        self._cv2.resize(crop, self._size, dst=out, interpolation=self._cv2.INTER_AREA)
        return out

    def _to_bytes(self, crop: np.ndarray, dst: np.ndarray) -> None:
        if self._colour is None:  # bgr24: scale straight into the slot
            if self._scaled:
                self._bytes(crop, dst)
            else:
                np.copyto(dst, crop)
            return
        self._cv2.cvtColor(self._bytes(crop, None), self._colour, dst=dst)

    def _to_interleaved_float(self, crop: np.ndarray, dst: np.ndarray) -> None:
        assert self._wide is not None
        np.copyto(self._wide, self._bytes(crop, None), casting="unsafe")
        self._cv2.transform(self._wide, self._matrix, dst=dst)

    def _to_planar_float(self, crop: np.ndarray, view: np.ndarray) -> None:
        cv2 = self._cv2
        cv2.split(self._bytes(crop, None), self._planes)
        for c in range(3):
            plane = self._planes[2 - c]  # RGB from BGR
            dst = view[c, self._rows, self._cols]
            cv2.addWeighted(
                plane, self._scale[c], plane, 0.0, self._offset[c], dst=dst, dtype=cv2.CV_32F
            )

    def _pad(self, view: np.ndarray) -> None:
        """Black bands around a letterboxed image, once per slot."""
        address = view.__array_interface__["data"][0]
        if not self._banded or address in self._padded:
            return
        self._padded.add(address)
        if self._planar:
            view[...] = self._black[:, None, None]
        else:
            view[...] = self._black
