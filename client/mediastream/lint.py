"""Constraint names no device understands, for linting a program's requests.

The spec ignores an unknown constraint name, so a misspelt ``fps`` or
``pixel_format`` silently does nothing. `unknown_constraints` lists them;
the daemon also logs each once per client at debug level.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .wire import SUPPORTED_CONSTRAINTS

__all__ = ["unknown_constraints"]

KINDS = ("audio", "video")


def unknown_constraints(constraints: Mapping[str, Any]) -> list[str]:
    """The unknown names in ``constraints``, as paths: getUserMedia's
    argument (``"video.fps"``, ``"video.advanced[0].pixel_format"``) or one
    track's constraint set for applyConstraints (``"fps"``)."""
    if any(kind in constraints for kind in KINDS):
        found = [f"{key}" for key in constraints if key not in KINDS]
        for kind in KINDS:
            value = constraints.get(kind)
            if isinstance(value, Mapping):
                found += [f"{kind}.{name}" for name in _unknown_in_set(value)]
        return found
    return _unknown_in_set(constraints)


def _unknown_in_set(constraint_set: Mapping[str, Any]) -> list[str]:
    found = [name for name in constraint_set if name not in SUPPORTED_CONSTRAINTS]
    found = [name for name in found if name not in ("advanced", "backgroundBlur")]
    advanced = constraint_set.get("advanced")
    if isinstance(advanced, list):
        for index, entry in enumerate(advanced):
            if isinstance(entry, Mapping):
                found += [f"advanced[{index}].{name}" for name in _unknown_in_set(entry)]
    return found
