"""Every error the client raises, named as the W3C spec names them.

    MediaStreamError
     +-- AbortError
     +-- InvalidStateError          you used something you closed or stopped
     +-- NotAllowedError            the daemon's access policy refused you
     +-- NotFoundError              no device of the requested kind
     +-- NotReadableError           the device or the daemon is gone or failing
     +-- OverconstrainedError       no setting satisfies a required constraint
     +-- ReadTimeoutError           also a builtin TimeoutError
     +-- FrameOverwrittenError      a zero-copy frame was reused by the writer
     +-- HoldLimitError             no more frames may be held on this track or ring
     +-- ProtocolError              a malformed message; also a ValueError
     +-- ConstraintTypeError        the spec's TypeError; also a builtin TypeError

`ConstraintTypeError` is the spec's ``TypeError`` (malformed constraints or
arguments, as WebIDL conversion would reject them): its ``name`` is
``"TypeError"``, it travels on the wire under that name, and ``except
TypeError`` catches it, as in JavaScript. Being a `MediaStreamError` keeps it
apart from a ``TypeError`` that is a bug: the daemon answers only deliberate
errors as the client's fault.
"""

from __future__ import annotations

__all__ = [
    "AbortError",
    "ConstraintTypeError",
    "FrameOverwrittenError",
    "HoldLimitError",
    "InvalidStateError",
    "MediaStreamError",
    "NotAllowedError",
    "NotFoundError",
    "NotReadableError",
    "OverconstrainedError",
    "ProtocolError",
    "ReadTimeoutError",
    "error_from_wire",
]


class MediaStreamError(Exception):
    """Base of every error this package raises on purpose.

    Carries DOMException's members: ``name``, ``message`` and ``code`` (the
    legacy numeric code, 0 for names that never had one).
    """

    code = 0

    @property
    def name(self) -> str:
        """The DOMException name, as the spec and the wire spell it."""
        return type(self).__name__

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class AbortError(MediaStreamError):
    code = 20


class InvalidStateError(MediaStreamError):
    code = 11


class NotAllowedError(MediaStreamError):
    pass


class NotFoundError(MediaStreamError):
    code = 8


class NotReadableError(MediaStreamError):
    pass


class OverconstrainedError(MediaStreamError):
    """No possible setting satisfies a required constraint.

    ``constraint`` names the constraint that failed, or is ``""``.
    """

    def __init__(self, constraint: str, message: str = "") -> None:
        super().__init__(message)
        self.constraint = constraint

    def __str__(self) -> str:
        return self.message or f"constraint {self.constraint!r} cannot be satisfied"


class ReadTimeoutError(MediaStreamError, TimeoutError):
    pass


class FrameOverwrittenError(MediaStreamError):
    """The writer reused a frame's slot before a copy of it was complete."""


class HoldLimitError(MediaStreamError):
    """``read(hold=True)`` past the frames a track or its ring may hold."""


class ProtocolError(MediaStreamError, ValueError):
    """A message that does not follow `mediastream.wire`."""


class ConstraintTypeError(MediaStreamError, TypeError):
    """The spec's TypeError: malformed constraints or arguments.

    Not a DOMException: ``name`` is ``"TypeError"``, the name it travels
    under on the wire, and there is no ``constraint``.
    """

    @property
    def name(self) -> str:
        return "TypeError"


_BY_NAME: dict[str, type[MediaStreamError]] = {
    cls.__name__: cls
    for cls in (
        AbortError,
        HoldLimitError,
        InvalidStateError,
        NotAllowedError,
        NotFoundError,
        NotReadableError,
        ProtocolError,
    )
}


def error_from_wire(name: str, message: str, constraint: str | None) -> MediaStreamError:
    """Turn an error reply's fields into the exception of the same name.

    An unknown name becomes a `ProtocolError`: a newer daemon must not make an
    older client raise something it cannot catch by the base class.
    """
    if name == "TypeError":
        return ConstraintTypeError(message)
    if name == "OverconstrainedError":
        return OverconstrainedError(constraint or "", message)
    cls = _BY_NAME.get(name)
    if cls is None:
        return ProtocolError(f"daemon replied with unknown error {name!r}: {message}")
    return cls(message)
