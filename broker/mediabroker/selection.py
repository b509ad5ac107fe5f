"""Which device and settings a track gets: pure functions over devices and sources.

Selection follows the spec's getUserMedia steps for one kind: the devices of
that kind are the candidates (none: `NotFoundError`); SelectSettings runs on
each (`constraints.select_settings`); the device with the smallest fitness
distance wins, and if none can satisfy the required constraints, the
`OverconstrainedError` names one that failed. A device already running is
offered as it runs when it cannot change mode: a microphone in use keeps its
rate and channels. A camera in use can be asked for anything it supports:
the source manager re-opens it in a mode that covers every track.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from mediabroker.constraint_parsing import refuse_required_outside_selection
from mediabroker.constraints import select_settings, unmet_constraints
from mediabroker.devices import Device
from mediabroker.framing import framing_settings, tensor_settings
from mediastream.errors import NotFoundError, OverconstrainedError
from mediastream.ring import AudioFormat, RingFormat, VideoFormat

if TYPE_CHECKING:
    from mediabroker.sources import Source

__all__ = [
    "choose_device",
    "requires",
    "ring_format",
    "select_for_device",
    "settings_for_source",
    "settle_settings",
]

RunningSettings = Callable[[Device], dict[str, Any] | None]
IDENTITY = frozenset({"deviceId", "groupId"})  # which device, not how it runs


def choose_device(
    devices: list[Device], kind: str, constraint_set: dict[str, Any], running: RunningSettings
) -> tuple[Device, dict[str, Any]]:
    """The best device of ``kind`` for ``constraint_set`` and the settings it
    would run the track with. Raises `NotFoundError`, `OverconstrainedError`."""
    candidates = [d for d in devices if d.media_kind == kind]
    if not candidates:
        raise NotFoundError(f"no {kind} input device is available")
    refuse_required_outside_selection(constraint_set)
    best: tuple[float, Device, dict[str, Any]] | None = None
    failures: list[tuple[OverconstrainedError, set[str]]] = []
    for device in candidates:
        now = running(device)
        try:
            settings, distance = select_for_device(device, constraint_set, now)
        except OverconstrainedError as exc:
            unmet = unmet_constraints(_capabilities(device, now), constraint_set)
            failures.append((exc, set(unmet)))
            continue
        if best is None or distance < best[0]:
            best = (distance, device, settings)
    if best is None:
        raise _common_failure(failures, constraint_set)
    return best[1], best[2]


def select_for_device(
    device: Device, constraint_set: dict[str, Any], running: dict[str, Any] | None
) -> tuple[dict[str, Any], float]:
    """SelectSettings on one device, as it runs now. Returns (settings, distance).
    Raises `OverconstrainedError` naming the device and what it offers."""
    try:
        selection = select_settings(_capabilities(device, running), device.defaults, constraint_set)
    except OverconstrainedError as exc:
        busy = " (it runs in that mode for other tracks)" if running is not None else ""
        raise OverconstrainedError(exc.constraint, f"{device.label}: {exc}{busy}") from None
    settings = dict(selection.settings)
    settings["deviceId"], settings["groupId"] = device.device_id, device.group_id
    settings.update(tensor_settings(settings, constraint_set))
    return settings, selection.distance


def settle_settings(
    settings: dict[str, Any], constraints: dict[str, Any], source: Source
) -> dict[str, Any]:
    """``resizeMode``, ``cropRect`` and ``contentRect`` once the source is
    known (`mediabroker.framing.framing_settings`: "none" for the camera's
    own pixels, the mode that resized them for a derived source's). Raises
    `OverconstrainedError` when "none" is required but the camera runs in
    another mode for other tracks."""
    if source.device.kind != "videoinput":
        return _audio_settings(settings, source)
    framed = framing_settings(settings, constraints, source)
    if source.parent is not None and framed["resizeMode"] != "none":
        if requires(constraints.get("resizeMode"), "none"):
            fmt = source.parent.format
            assert isinstance(fmt, VideoFormat)
            raise OverconstrainedError(
                "resizeMode",
                f"the camera runs at {fmt.width}x{fmt.height} "
                f"{source.parent.frame_rate:g} fps for other tracks; resizeMode 'none' "
                "allows only that",
            )
    return {**settings, **framed}


MEASURED_AUDIO_SETTINGS = ("latency", "blockSize")


def _audio_settings(settings: dict[str, Any], source: Source) -> dict[str, Any]:
    """The stream's real latency (seconds) and block size (sample frames per
    callback, our extension) as the capture process measured them."""
    measured = {name: source.counters.get(name) for name in MEASURED_AUDIO_SETTINGS}
    return {**settings, **{k: v for k, v in measured.items() if v is not None}}


def requires(constraint: Any, value: str) -> bool:
    """Whether ``constraint`` requires exactly ``value``."""
    if not isinstance(constraint, dict) or "exact" not in constraint:
        return False
    exact = constraint["exact"]
    return exact == value or (isinstance(exact, list) and exact == [value])


def _capabilities(device: Device, running: dict[str, Any] | None) -> dict[str, Any]:
    return device.capabilities if running is None else device.capabilities_in_use(running)


def _common_failure(
    failures: list[tuple[OverconstrainedError, set[str]]], constraint_set: dict[str, Any]
) -> OverconstrainedError:
    """The spec's failedConstraint: a required constraint that no device
    examined could meet, or "" when there is none (each device failed on
    something else, or only on constraints together). Devices a required
    deviceId or groupId rules out are not examined: the request named
    others, so neither their failures nor their ids are in the answer.
    ``failures``: each device's error and the constraints it cannot meet."""
    asked = [(exc, names) for exc, names in failures if not names & IDENTITY] or failures
    common = set.intersection(*(names for _, names in asked))
    name = next((n for n in constraint_set if n in common), "")
    if name in IDENTITY:
        return OverconstrainedError(name, _no_such_device(constraint_set))
    if len(asked) == 1:
        return OverconstrainedError(name, str(asked[0][0]))
    reasons = "; ".join(str(exc) for exc, _ in asked)
    if name:
        return OverconstrainedError(name, f"no device can meet {name}: {reasons}")
    return OverconstrainedError("", f"no device meets these constraints together: {reasons}")


def _no_such_device(constraint_set: dict[str, Any]) -> str:
    required = {n: constraint_set[n] for n in IDENTITY & set(constraint_set)}
    return f"no device has {' and '.join(f'{n} {v!r}' for n, v in sorted(required.items()))}"


def ring_format(device: Device, settings: dict[str, Any]) -> tuple[RingFormat, float]:
    """The ring format and frame rate a track with these settings reads."""
    if device.kind == "videoinput":
        pixel_format = settings.get("pixelFormat", "bgr24")
        fmt = VideoFormat(settings["width"], settings["height"], pixel_format)
        return fmt, float(settings["frameRate"])
    return AudioFormat(settings["sampleRate"], settings["channelCount"]), 0.0


def settings_for_source(source: Source) -> dict[str, Any]:
    """The mode a running native source is in, as settings."""
    fmt = source.format
    if isinstance(fmt, VideoFormat):
        return {"width": fmt.width, "height": fmt.height, "frameRate": source.frame_rate}
    return {"sampleRate": fmt.sample_rate, "channelCount": fmt.channels}
