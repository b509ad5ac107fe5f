"""Checking what clients send as constraints before anything is selected.

The spec's IDL conversion, done by hand: a value of the wrong type is the
spec's ``TypeError`` (`ConstraintTypeError`), named with the key and the
value, never an internal error later; properties of the other kind are
dropped and unknown ones ignored, as the spec says. What survives is what
`mediabroker.constraints` selects over.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mediabroker.constraints import (
    NOT_FOR_DEVICE_SELECTION,
    NUMBER_KEYS,
    NUMBER_PROPERTIES,
    PROPERTIES_OF_KIND,
)
from mediabroker.framing import parse_normalize
from mediastream.errors import ConstraintTypeError

__all__ = [
    "parse_gum_constraints",
    "parse_track_constraints",
    "refuse_required_outside_selection",
]


def parse_gum_constraints(constraints: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Validate getUserMedia's argument; return {"audio"|"video": constraint set}.

    Raises `ConstraintTypeError` (the spec's TypeError) when nothing is
    requested, or a value or a constraint has the wrong type, as the spec's
    IDL conversion would.
    """
    requested: dict[str, dict[str, Any]] = {}
    for kind in ("audio", "video"):
        value = constraints.get(kind, False)
        if value is True:
            requested[kind] = {}
        elif isinstance(value, Mapping):
            requested[kind] = _check_constraint_set(kind, value)
        elif value is not False:
            raise ConstraintTypeError(
                f"{kind} must be a bool or a constraints dict, not {value!r:.60}"
            )
    if not requested:
        raise ConstraintTypeError("getUserMedia needs audio or video (or both) requested")
    return requested


def parse_track_constraints(kind: str, constraints: Mapping[str, Any]) -> dict[str, Any]:
    """Validate applyConstraints' argument for a track of ``kind`` ("audio" or
    "video"); raises `ConstraintTypeError` for values of the wrong type."""
    return _check_constraint_set(kind, constraints)


def refuse_required_outside_selection(value: Mapping[str, Any]) -> None:
    """getUserMedia's step after the NotFound check: a required constraint
    that may not choose a device is a `ConstraintTypeError`."""
    for name in NOT_FOR_DEVICE_SELECTION & set(value):
        required = value[name]
        if isinstance(required, Mapping) and set(required) & {"exact", "min", "max"}:
            raise ConstraintTypeError(f"{name} may not be required when choosing a device")


def _check_constraint_set(kind: str, value: Mapping[str, Any]) -> dict[str, Any]:
    # Video keeps backgroundBlur so that getUserMedia can refuse it in order.
    extra = NOT_FOR_DEVICE_SELECTION if kind == "video" else frozenset()
    own = PROPERTIES_OF_KIND[kind] | extra
    checked: dict[str, Any] = {}
    for name, constraint in value.items():
        if name == "advanced":
            checked[name] = _check_advanced(kind, constraint, own)
        elif name in own:  # the other kind's properties are dropped, per spec
            checked[name] = _check_constraint(name, constraint)
    return checked


def _check_advanced(kind: str, advanced: Any, own: frozenset[str]) -> list[dict[str, Any]]:
    if not isinstance(advanced, list) or not all(isinstance(s, Mapping) for s in advanced):
        raise ConstraintTypeError("advanced must be a list of constraint sets")
    return [{k: _check_constraint(k, v) for k, v in s.items() if k in own} for s in advanced]


def _check_constraint(name: str, constraint: Any) -> Any:
    if name == "normalize":  # a value, not a range: {"mean": [...], "std": [...]}
        return parse_normalize(constraint).to_wire()
    if isinstance(constraint, Mapping):
        unknown = set(constraint) - NUMBER_KEYS
        if unknown:
            raise ConstraintTypeError(f"{name}: unknown constraint key {sorted(unknown)[0]!r}")
        for value in constraint.values():
            _check_value(name, value)
        return dict(constraint)
    _check_value(name, constraint)
    return constraint


def _check_value(name: str, value: Any) -> None:
    """WebIDL's conversion: a ConstrainDouble or ConstrainULong holds numbers
    only (a string is a TypeError, not an unsatisfiable value)."""
    if name in NUMBER_PROPERTIES:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (str, int, float, bool)) or (
            isinstance(value, list) and all(isinstance(v, str) for v in value)
        )
    if not ok or (isinstance(value, float) and not math.isfinite(value)):
        raise ConstraintTypeError(f"{name}: {value!r:.60} is not a valid constraint value")
