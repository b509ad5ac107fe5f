"""Names of what processes publish (shared streams, result channels): the
rule they follow, who publishes them, and the closest names to a typo."""

from __future__ import annotations

import difflib
import os
from typing import Any

from mediabroker.daemon.access import describe_uid
from mediabroker.daemon.sessions import Session
from mediastream.errors import ConstraintTypeError, NotFoundError

__all__ = ["MAX_NAME_CHARS", "check_name", "not_found", "publisher_info"]

MAX_NAME_CHARS = 200
CLOSEST_NAMES = 3  # suggested in a NotFoundError
LISTED_NAMES = 10  # listed instead when none is close


def check_name(name: str, what: str = "a stream name") -> str:
    """``name`` if it is 1 to `MAX_NAME_CHARS` printable characters, else
    `ConstraintTypeError`."""
    if not 0 < len(name) <= MAX_NAME_CHARS or not name.isprintable():
        raise ConstraintTypeError(
            f"{what} is 1 to {MAX_NAME_CHARS} printable characters, not {name!r:.60}"
        )
    return name


def not_found(name: str, names: list[str], what: str) -> NotFoundError:
    """A `NotFoundError` for ``name`` listing the closest of ``names``
    (`difflib.get_close_matches`), else some of those published."""
    close = difflib.get_close_matches(name, names, n=CLOSEST_NAMES, cutoff=0.5)
    if close:
        hint = "; did you mean " + " or ".join(repr(n) for n in close) + "?"
    elif names:
        shown = ", ".join(repr(n) for n in sorted(names)[:LISTED_NAMES])
        hint = f"; published: {shown}"
    else:
        hint = "; none is published"
    return NotFoundError(f"no {what} is published as {name!r}{hint}")


def publisher_info(session: Session, viewer: Session) -> dict[str, Any]:
    """Who publishes, as ``viewer`` may see it: the process name, uid and
    user always (a generated device's label shows as much), the pid only to
    the same user, root and the daemon's user (as ``stats`` shows sessions)."""
    peer = session.peer
    info: dict[str, Any] = {
        "process": session.name,
        "uid": peer.uid,
        "user": describe_uid(peer.uid),
    }
    if viewer.peer.uid in (peer.uid, 0, os.getuid()):
        info["pid"] = peer.pid
    return info
