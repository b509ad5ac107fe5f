"""mediastream.errors: the tree, and the spec's TypeError kept apart from bugs."""

from __future__ import annotations

import re

import pytest

import mediastream
from mediastream import errors
from mediastream.errors import ConstraintTypeError, MediaStreamError, error_from_wire
from mediastream.wire import decode_reply, encode_error


def test_constraint_type_error_is_a_type_error_and_a_media_stream_error() -> None:
    """Users' ``except TypeError`` still catches it; the daemon's ``except
    MediaStreamError`` tells it from a TypeError that is a bug."""
    error = ConstraintTypeError("advanced must be a list of constraint sets")
    assert isinstance(error, TypeError) and isinstance(error, MediaStreamError)
    assert error.name == "TypeError"
    assert error.message == str(error) == "advanced must be a list of constraint sets"
    assert not hasattr(error, "constraint")  # not an OverconstrainedError


def test_constraint_type_error_travels_as_type_error() -> None:
    """What the daemon sends (``exc.name``) comes back as the same class."""
    sent = ConstraintTypeError("width: 'wide' is not a valid constraint value")
    reply = decode_reply(encode_error(3, sent.name, str(sent)))
    assert reply.error_name == "TypeError"
    received = error_from_wire(reply.error_name, reply.error_message, reply.error_constraint)
    assert type(received) is ConstraintTypeError and str(received) == str(sent)


def test_a_builtin_type_error_is_not_a_media_stream_error() -> None:
    """The split the daemon relies on: a bug's TypeError is not deliberate."""
    assert not issubclass(TypeError, MediaStreamError)


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_class_is_in_the_tree_and_exported(name: str) -> None:
    value = getattr(errors, name)
    if not isinstance(value, type):
        return  # error_from_wire
    assert issubclass(value, MediaStreamError)
    tree = errors.__doc__ or ""
    assert re.search(rf"^ +(\+-- )?{name}\b", tree, re.MULTILINE), f"{name} is not in the tree"
    assert getattr(mediastream, name) is value
