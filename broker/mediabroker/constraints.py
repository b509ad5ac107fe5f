"""The spec's constrainable pattern: SelectSettings over a device's capabilities.

Design note. The spec lets an implementation track each property's possible
values as a range instead of enumerating settings dictionaries. Here every
property of a device is a `Domain`: a numeric range or a set of choices.
Required constraints (``exact``, ``min``, ``max``; bare values inside
``advanced``) narrow the domains; an empty domain means the constraint
cannot be satisfied. ``advanced`` sets narrow all together or are skipped.
Then each property takes the value closest to its ``ideal`` (or the device
default), and the fitness distance of those choices ranks devices.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mediastream.errors import OverconstrainedError
from mediastream.wire import AUDIO_CONSTRAINTS, COMMON_CONSTRAINTS, VIDEO_CONSTRAINTS

__all__ = [
    "Choice",
    "Domain",
    "NumberRange",
    "PROPERTIES_OF_KIND",
    "Selection",
    "domains_from_capabilities",
    "select_settings",
    "unmet_constraints",
]

# The vocabulary is the contract's (mediastream.wire), so that what
# getSupportedConstraints() claims is what this module narrows.
PROPERTIES_OF_KIND = {
    "video": frozenset(COMMON_CONSTRAINTS + VIDEO_CONSTRAINTS),
    "audio": frozenset(COMMON_CONSTRAINTS + AUDIO_CONSTRAINTS),
}
# Spec properties we do not support, and that getUserMedia may not require:
# requiring one is a TypeError there, not an unsatisfiable constraint.
NOT_FOR_DEVICE_SELECTION = frozenset({"backgroundBlur"})
INTEGER_PROPERTIES = frozenset({"width", "height", "sampleRate", "sampleSize", "channelCount"})
NUMBER_PROPERTIES = INTEGER_PROPERTIES | {"aspectRatio", "frameRate", "latency"}
NUMBER_KEYS = frozenset({"min", "max", "exact", "ideal"})
ASPECT_TOLERANCE = 0.005  # whole pixels cannot hit every ratio exactly
UNITS = {"frameRate": " fps", "sampleRate": " Hz", "latency": " s", "sampleSize": " bits"}


@dataclass(frozen=True, slots=True)
class NumberRange:
    low: float
    high: float
    integer: bool = False

    @property
    def empty(self) -> bool:
        return self.low > self.high

    def restrict(self, constraint: Any) -> NumberRange:
        low, high = self.low, self.high
        if isinstance(constraint, Mapping):
            low = max(low, _number(constraint.get("min"), low))
            high = min(high, _number(constraint.get("max"), high))
            exact = constraint.get("exact")
            if exact is not None:
                low, high = max(low, _number(exact, low)), min(high, _number(exact, high))
        elif _is_number(constraint):  # a bare value where the spec makes it exact
            low, high = max(low, constraint), min(high, constraint)
        return NumberRange(low, high, self.integer)

    def pick(self, ideal: float) -> float:
        value = min(max(ideal, self.low), self.high)
        return float(round(value)) if self.integer else float(value)

    def __str__(self) -> str:
        return f"{self.low:g}" if self.low == self.high else f"{self.low:g} to {self.high:g}"


@dataclass(frozen=True, slots=True)
class Choice:
    values: tuple[Any, ...]

    @property
    def empty(self) -> bool:
        return not self.values

    def restrict(self, constraint: Any) -> Choice:
        wanted = constraint.get("exact") if isinstance(constraint, Mapping) else constraint
        if wanted is None:
            return self
        allowed = wanted if isinstance(wanted, list) else [wanted]
        return Choice(tuple(v for v in self.values if v in allowed and type(v) is type(allowed[0])))

    def pick(self, ideal: Any) -> Any:
        ideals = ideal if isinstance(ideal, list) else [ideal]
        return next((v for v in ideals if v in self.values), self.values[0])

    def __str__(self) -> str:
        return "one of " + ", ".join(map(repr, self.values))


Domain = NumberRange | Choice


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Any, default: float) -> float:
    return float(value) if _is_number(value) else default


def domains_from_capabilities(capabilities: Mapping[str, Any]) -> dict[str, Domain]:
    """Capabilities in the spec's shapes ({min, max} or a list) as domains."""
    domains: dict[str, Domain] = {}
    for name, capability in capabilities.items():
        if isinstance(capability, Mapping):
            integer = name in INTEGER_PROPERTIES
            domains[name] = NumberRange(capability["min"], capability["max"], integer)
        elif isinstance(capability, list):
            domains[name] = Choice(tuple(capability))
        else:
            domains[name] = Choice((capability,))
    return domains


@dataclass(frozen=True, slots=True)
class Selection:
    settings: dict[str, Any]
    distance: float


def select_settings(
    capabilities: Mapping[str, Any], defaults: Mapping[str, Any], constraints: Mapping[str, Any]
) -> Selection:
    """The spec's SelectSettings for one device.

    Raises `OverconstrainedError` naming the first required constraint that no
    possible setting satisfies.
    """
    domains = domains_from_capabilities(capabilities)
    basic = {k: v for k, v in constraints.items() if k != "advanced"}
    for name, constraint in basic.items():
        _narrow(domains, name, _required_part(constraint))
    _narrow_aspect(domains)
    given = _sides_given(basic, ideals=True)
    for advanced in constraints.get("advanced") or []:
        if _try_advanced(domains, advanced):
            given |= _sides_given(advanced, ideals=False)
    given |= _sides_forced(domains, defaults)
    selection = _choose(domains, defaults, basic)
    ratio = _aspect_goal(_ideal(basic.get("aspectRatio")), given, defaults)
    _fit_aspect(selection.settings, domains, ratio, keep_height=given == {"height"})
    return selection


def unmet_constraints(capabilities: Mapping[str, Any], constraints: Mapping[str, Any]) -> list[str]:
    """The required constraints of the basic set that no setting of these
    capabilities meets, each taken alone (the spec: "fitness distance
    infinity for all settings dictionaries examined"), in request order."""
    domains = domains_from_capabilities(capabilities)
    unmet = []
    for name, constraint in constraints.items():
        required = _required_part(constraint) if name != "advanced" else None
        if name in domains and required and domains[name].restrict(required).empty:
            unmet.append(name)
    return unmet


def _sides_given(constraint_set: Mapping[str, Any], *, ideals: bool) -> set[str]:
    """Which of width and height the set asks a value of (not just a range):
    exact values, and ideal ones where ``ideals`` (the basic set; in an
    advanced set a bare value is exact and an ideal counts for nothing)."""
    given = set()
    for side in ("width", "height"):
        constraint = constraint_set.get(side)
        if isinstance(constraint, Mapping):
            keys = ("exact", "ideal") if ideals else ("exact",)
            if any(_is_number(constraint.get(k)) for k in keys):
                given.add(side)
        elif _is_number(constraint):
            given.add(side)
    return given


def _sides_forced(domains: Mapping[str, Domain], defaults: Mapping[str, Any]) -> set[str]:
    """Which of width and height a required range moved off the device's
    default: ``{"width": {"min": 1920}}`` asks for a width as surely as
    ``{"width": 1920}`` does, and the height follows it the same way."""
    forced = set()
    for side in ("width", "height"):
        domain, default = domains.get(side), defaults.get(side)
        if isinstance(domain, NumberRange) and isinstance(default, (int, float)):
            if not domain.low <= default <= domain.high:
                forced.add(side)
    return forced


def _narrow_aspect(domains: dict[str, Domain]) -> None:
    """Width, height and aspectRatio are one property seen three ways: only the
    ratios the width and height ranges can make are possible. When each
    constraint can be met alone but not together, no single one is to blame,
    and the spec's failedConstraint is ""."""
    width, height, aspect = (domains.get(k) for k in ("width", "height", "aspectRatio"))
    if not all(isinstance(d, NumberRange) for d in (width, height, aspect)):
        return
    assert isinstance(width, NumberRange) and isinstance(height, NumberRange)
    assert isinstance(aspect, NumberRange)
    low = max(aspect.low, width.low / height.high)
    high = min(aspect.high, width.high / max(height.low, 1))
    if low > high * (1 + ASPECT_TOLERANCE):
        raise OverconstrainedError(
            "",
            f"no size within width {width} and height {height} has an aspect ratio within {aspect}",
        )
    domains["aspectRatio"] = NumberRange(low, max(low, high))


def _fit_aspect(
    settings: dict[str, Any],
    domains: Mapping[str, Domain],
    goal: float | None,
    *,
    keep_height: bool,
) -> None:
    """Make the chosen width and height agree with one aspect ratio, ``goal``
    (`_aspect_goal`; None: the one chosen). The width is kept and the height
    follows, or the other way round with ``keep_height`` (the request gave
    only the height); if that side cannot give the ratio, the kept one moves
    instead."""
    aspect, width, height = (domains.get(k) for k in ("aspectRatio", "width", "height"))
    if (
        not (
            isinstance(aspect, NumberRange)
            and isinstance(width, NumberRange)
            and isinstance(height, NumberRange)
        )
        or "width" not in settings
    ):
        return
    current = settings["width"] / settings["height"]
    target = aspect.pick(current if goal is None else goal)
    outside = not aspect.low <= current <= aspect.high  # a required range is never missed
    if outside or abs(target - current) > ASPECT_TOLERANCE * target:
        order = ("height", "width") if keep_height else ("width", "height")
        for kept, moved in (order, order[::-1]):
            value = _follow(settings[kept], kept, domains[moved], aspect, target)
            if value is not None:
                settings[moved] = value
                break
        else:  # neither side alone can: the moved one as near as it goes, then the kept one
            kept, moved = order
            settings[moved] = _nearest(settings[kept], kept, domains[moved], target)
            settings[kept] = _nearest(settings[moved], moved, domains[kept], target)
    settings["aspectRatio"] = round(settings["width"] / settings["height"], 10)


def _aspect_goal(ideal: Any, given: set[str], defaults: Mapping[str, Any]) -> float | None:
    """The ratio to fit: the ideal aspectRatio, else the device's own (its
    default mode's) when the request gives only one side, as browsers do."""
    if _is_number(ideal):
        return float(ideal)
    width, height = defaults.get("width"), defaults.get("height")
    if len(given) == 1 and _is_number(width) and _is_number(height) and height:
        return float(width / height)
    return None


def _follow(
    kept_value: int, kept: str, domain: Domain, aspect: NumberRange, target: float
) -> int | None:
    """The other side for ``kept_value`` at ratio ``target``: of the two whole
    numbers around the exact value, within its own range, the one whose
    ratio is inside the required aspect range and closest to ``target``;
    None when neither is."""
    candidates = _whole_candidates(kept_value, kept, domain, target)

    def ratio(n: int) -> float:
        return _ratio(kept_value, kept, n)

    valid = [n for n in candidates if aspect.low <= ratio(n) <= aspect.high]
    if not valid:  # whole pixels miss the range: the nearest within the tolerance
        slack = ASPECT_TOLERANCE * target
        valid = [n for n in candidates if abs(ratio(n) - target) <= slack]
    return min(valid, key=lambda n: abs(ratio(n) - target)) if valid else None


def _nearest(kept_value: int, kept: str, domain: Domain, target: float) -> int:
    """The other side whose ratio with ``kept_value`` is nearest ``target``."""
    candidates = _whole_candidates(kept_value, kept, domain, target)
    return min(candidates, key=lambda n: abs(_ratio(kept_value, kept, n) - target))


def _whole_candidates(kept_value: int, kept: str, domain: Domain, target: float) -> set[int]:
    """The whole numbers either side of the exact other side, within its range."""
    assert isinstance(domain, NumberRange)
    exact = kept_value / target if kept == "width" else kept_value * target
    low, high = max(1, math.ceil(domain.low)), max(1, math.floor(domain.high))
    return {min(max(n, low), high) for n in (math.floor(exact), math.ceil(exact))}


def _ratio(kept_value: int, kept: str, other: int) -> float:
    return kept_value / other if kept == "width" else other / kept_value


def _required_part(constraint: Any) -> Any:
    """What a basic-set constraint requires: bare values there are only ideal."""
    if isinstance(constraint, Mapping):
        return {k: v for k, v in constraint.items() if k != "ideal"}
    return None


def _narrow(domains: dict[str, Domain], name: str, required: Any) -> None:
    if name not in domains or not required:
        return  # the spec ignores constraints a device does not have
    narrowed = domains[name].restrict(required)
    if narrowed.empty:
        offered = f"{domains[name]}{UNITS.get(name, '')}"
        raise OverconstrainedError(
            name, f"{name} {required!r} cannot be met: the device offers {name} {offered}"
        )
    domains[name] = narrowed


def _try_advanced(domains: dict[str, Domain], advanced: Mapping[str, Any]) -> bool:
    """Narrow by ``advanced`` if it can be met (True), else leave it (False).
    Bare values of an advanced set are exact; an explicit ideal there is
    still only ideal (its fitness distance is finite), so it never makes the
    set unsatisfiable."""
    trial = dict(domains)
    try:
        for name, constraint in advanced.items():
            required = _required_part(constraint) if isinstance(constraint, Mapping) else constraint
            _narrow(trial, name, required)
        _narrow_aspect(trial)
    except OverconstrainedError:
        return False  # an unsatisfiable advanced set is skipped, not an error
    domains.update(trial)
    return True


def _choose(
    domains: Mapping[str, Domain], defaults: Mapping[str, Any], basic: Mapping[str, Any]
) -> Selection:
    settings: dict[str, Any] = {}
    distance = 0.0
    for name, domain in domains.items():
        if domain.empty:
            continue  # a property the device cannot report (facingMode unknown)
        ideal = _ideal(basic.get(name))
        target = ideal if ideal is not None else defaults.get(name, _lowest(domain))
        value = domain.pick(target)
        settings[name] = int(value) if name in INTEGER_PROPERTIES else value
        if ideal is not None:
            distance += _distance(value, ideal)
    return Selection(settings, distance)


def _ideal(constraint: Any) -> Any:
    if isinstance(constraint, Mapping):
        return constraint.get("ideal")
    return constraint


def _lowest(domain: Domain) -> Any:
    return domain.low if isinstance(domain, NumberRange) else domain.values[0]


def _distance(value: Any, ideal: Any) -> float:
    """The spec's fitness distance for one property."""
    if _is_number(value) and _is_number(ideal):
        if value == ideal:
            return 0.0
        return float(abs(value - ideal) / max(abs(value), abs(ideal)))
    ideals = ideal if isinstance(ideal, list) else [ideal]
    return 0.0 if value in ideals else 1.0
