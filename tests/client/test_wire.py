"""mediastream.wire: the control protocol, and its error names (mediastream.errors).

Every inbound message is untrusted: anything that is not a valid request must
come out of `decode_request` as a `ProtocolError` (also a ValueError), never as
another exception, whatever the bytes.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediabroker.constraint_parsing import parse_track_constraints
from mediabroker.constraints import PROPERTIES_OF_KIND
from mediastream import errors
from mediastream.errors import (
    ConstraintTypeError,
    MediaStreamError,
    ProtocolError,
    error_from_wire,
)
from mediastream.wire import (
    AUDIO_CONSTRAINTS,
    COMMON_CONSTRAINTS,
    MAX_CONTAINER_ITEMS,
    MAX_MESSAGE_BYTES,
    MAX_STRING_BYTES,
    OPS,
    PROTOCOL_VERSION,
    SUPPORTED_CONSTRAINTS,
    VIDEO_CONSTRAINTS,
    Reply,
    Request,
    decode_reply,
    decode_request,
    encode_error,
    encode_reply,
    encode_request,
)

DOM_EXCEPTION_NAMES = [
    "AbortError",
    "InvalidStateError",
    "NotAllowedError",
    "NotFoundError",
    "NotReadableError",
    "OverconstrainedError",
]
MISSING = object()
SAMPLE_VALUES: dict[type, object] = {
    str: "x", int: 1, dict: {}, list: [], bool: True, float: 1.0, bytes: b"\x80"
}


def pack(obj: object) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def request(**fields: object) -> bytes:
    """A valid stopTrack request with ``fields`` replaced (MISSING removes one)."""
    message: dict[str, object] = {"v": 1, "id": 7, "op": "stopTrack", "args": {"trackId": "t1"}}
    message.update(fields)
    return pack({key: value for key, value in message.items() if value is not MISSING})


def nested_arrays(depth: int, leaf: bytes = b"\x01") -> bytes:
    """msgpack for ``[[...[leaf]...]]``, ``depth`` arrays deep (packb stops at 512)."""
    return b"\x91" * depth + leaf


def nested_maps(depth: int) -> bytes:
    """msgpack for ``{"a": {"a": ... 1}}``, ``depth`` maps deep."""
    return b"\x81\xa1a" * depth + b"\x01"


def raw_request(op: bytes, args: bytes, request_id: bytes = b"\x07") -> bytes:
    """A request map assembled from msgpack pieces: v, id, op, args."""
    return b"\x84\xa1v\x01\xa2id" + request_id + b"\xa2op" + op + b"\xa4args" + args


def reject(data: bytes, match: str | None = None) -> ProtocolError:
    with pytest.raises(ProtocolError, match=match) as excinfo:
        decode_request(data)
    return excinfo.value


# --- round trips ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("hello", {"name": "inference-worker", "version": PROTOCOL_VERSION}),
        ("heartbeat", {}),
        ("bye", {}),
        ("enumerateDevices", {}),
        (
            "getUserMedia",
            {
                "constraints": {
                    "video": {"width": {"ideal": 1280}, "advanced": [{"frameRate": {"exact": 30}}]},
                    "audio": False,
                }
            },
        ),
        ("stopTrack", {"trackId": "b2d7"}),
        ("cloneTrack", {"trackId": "b2d7"}),
    ],
)
def test_request_round_trip(op: str, args: dict[str, Any]) -> None:
    assert decode_request(encode_request(7, op, args)) == Request(7, op, args)


@pytest.mark.parametrize("op", sorted(OPS))
def test_every_op_decodes_with_its_required_arguments(op: str) -> None:
    args = {
        name: SAMPLE_VALUES[kind[0] if isinstance(kind, tuple) else kind]
        for name, (kind, required) in OPS[op].items()
        if required
    }
    assert decode_request(encode_request(1, op, args)) == Request(1, op, args)


@pytest.mark.parametrize("request_id", [0, 1, 2**31, 2**64 - 1])
def test_request_ids_round_trip(request_id: int) -> None:
    assert decode_request(encode_request(request_id, "bye")).id == request_id


def test_request_without_args_has_empty_args() -> None:
    assert decode_request(encode_request(3, "enumerateDevices")) == Request(
        3, "enumerateDevices", {}
    )


def test_reply_round_trip() -> None:
    result = {
        "devices": [{"deviceId": "cam0", "kind": "videoinput", "label": "Fake", "groupId": "g"}]
    }
    assert decode_reply(encode_reply(7, result)) == Reply(7, True, result)


@pytest.mark.parametrize("constraint", ["width", None])
def test_error_reply_round_trip(constraint: str | None) -> None:
    reply = decode_reply(encode_error(7, "OverconstrainedError", "no mode is 8K wide", constraint))
    assert reply == Reply(7, False, {}, "OverconstrainedError", "no mode is 8K wide", constraint)


@pytest.mark.parametrize("char", ["x", "é", "字", "🎥"])
def test_long_error_message_is_truncated_to_something_decodable(char: str) -> None:
    message = char * MAX_STRING_BYTES
    reply = decode_reply(encode_error(1, "NotReadableError", message))
    assert reply.error_name == "NotReadableError"
    assert 0 < len(reply.error_message.encode()) <= MAX_STRING_BYTES // 2
    assert message.startswith(reply.error_message)


def test_error_message_with_undecodable_path_bytes_is_sent() -> None:
    message = "cannot open /dev/video\udcff"  # os.fsdecode of a non-UTF-8 name
    reply = decode_reply(encode_error(1, "NotReadableError", message))
    assert reply.error_message.startswith("cannot open /dev/video")


@pytest.mark.parametrize(
    ("message", "match"),
    [
        ({"v": 1, "id": 7, "result": {}}, "'ok'"),
        ({"v": 1, "id": 7, "ok": 1, "result": {}}, "'ok'"),
        ({"v": 1, "id": 7, "ok": True, "result": []}, "'result'"),
        ({"v": 1, "id": 7, "ok": False}, "'error'"),
        ({"v": 1, "id": 7, "ok": False, "error": {"message": "m"}}, "'name'"),
        ({"v": 2, "id": 7, "ok": True, "result": {}}, "protocol version 2"),
        ({"v": 1, "id": True, "ok": True, "result": {}}, "'id'"),
    ],
)
def test_decode_reply_rejects(message: dict[str, Any], match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_reply(pack(message))


# --- decode_request rejects ----------------------------------------------------


def test_protocol_error_is_a_value_error() -> None:
    error = reject(b"\xc1")
    assert isinstance(error, ValueError)
    assert isinstance(error, MediaStreamError)
    assert error.name == "ProtocolError"


@pytest.mark.parametrize("version", [MISSING, 0, 2, "1", None, True, 1.0, [1]])
def test_rejects_wrong_version(version: object) -> None:
    reject(request(v=version), match="protocol version")


@pytest.mark.parametrize("op", [MISSING, "getDisplayMedia", "", "STOPTRACK", 5, None, b"stopTrack"])
def test_rejects_unknown_or_malformed_op(op: object) -> None:
    reject(request(op=op), match="op")


@pytest.mark.parametrize("request_id", [MISSING, "7", True, False, 1.5, None, [7]])
def test_rejects_missing_or_non_integer_id(request_id: object) -> None:
    reject(request(id=request_id), match="'id'")


@pytest.mark.parametrize("args", [MISSING, [], None, "trackId", 1])
def test_rejects_args_that_are_not_a_map(args: object) -> None:
    reject(request(args=args), match="'args'")


@pytest.mark.parametrize(
    ("op", "args", "match"),
    [
        ("stopTrack", {"trackId": "t1", "force": True}, "unknown argument 'force'"),
        ("bye", {"now": 1}, "unknown argument 'now'"),
        ("stopTrack", {b"trackId": "t1"}, "unknown argument"),
        ("stopTrack", {b"x": 1, "y": 2}, "unknown argument"),
        ("stopTrack", {}, "'trackId'"),
        ("hello", {"name": "w"}, "'version'"),
        ("hello", {"version": 1}, "'name'"),
        ("getUserMedia", {}, "'constraints'"),
    ],
    ids=[
        "extra",
        "extra-no-schema",
        "bytes-key",
        "mixed-key-types",
        "missing-1",
        "missing-2",
        "missing-3",
        "missing-4",
    ],
)
def test_rejects_unknown_or_missing_arguments(op: str, args: dict[Any, Any], match: str) -> None:
    reject(pack({"v": 1, "id": 1, "op": op, "args": args}), match=match)


@pytest.mark.parametrize(
    ("op", "args", "field"),
    [
        ("hello", {"name": "w", "version": "1"}, "version"),
        ("hello", {"name": "w", "version": True}, "version"),
        ("hello", {"name": "w", "version": False}, "version"),
        ("hello", {"name": "w", "version": 1.0}, "version"),
        ("hello", {"name": 5, "version": 1}, "name"),
        ("hello", {"name": None, "version": 1}, "name"),
        ("stopTrack", {"trackId": b"t1"}, "trackId"),
        ("stopTrack", {"trackId": ["t1"]}, "trackId"),
        ("getUserMedia", {"constraints": []}, "constraints"),
        ("getUserMedia", {"constraints": "video"}, "constraints"),
        ("getUserMedia", {"constraints": True}, "constraints"),
    ],
)
def test_rejects_wrongly_typed_arguments(op: str, args: dict[str, Any], field: str) -> None:
    reject(pack({"v": 1, "id": 1, "op": op, "args": args}), match=f"field '{field}' must be")


@pytest.mark.parametrize("message", [[1, 2], 7, "hello", None, True, b"bytes", 1.5])
def test_rejects_a_top_level_that_is_not_a_map(message: object) -> None:
    reject(pack(message), match="expected a map")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",  # a type byte msgpack never uses
        request()[:-3],  # truncated
        request() + b"\x00",  # trailing bytes
        pack({1: 2}),  # non-string map key
        pack({"v": 1, "id": 7, "op": "stopTrack", "args": {7: "t1"}}),
        pack(msgpack.ExtType(5, b"abcd")),
        pack({"v": 1, "id": 7, "op": "stopTrack", "args": {"trackId": msgpack.ExtType(1, b"x")}}),
        b"\x81\xa1v\xd9\x02\xff\xfe",  # invalid UTF-8 in a string
    ],
    ids=[
        "empty",
        "reserved",
        "truncated",
        "trailing",
        "int-key",
        "int-arg-key",
        "ext",
        "ext-arg",
        "bad-utf8",
    ],
)
def test_rejects_undecodable_bytes(data: bytes) -> None:
    reject(data)


# --- decode_request limits -----------------------------------------------------


def test_rejects_oversized_message() -> None:
    constraints = {f"k{i}": "x" * 4000 for i in range(17)}
    data = pack({"v": 1, "id": 1, "op": "getUserMedia", "args": {"constraints": constraints}})
    assert len(data) > MAX_MESSAGE_BYTES
    reject(data, match=f"{len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")


def test_accepts_a_large_message_under_the_limit() -> None:
    constraints = {f"k{i}": "x" * 4000 for i in range(15)}
    data = pack({"v": 1, "id": 1, "op": "getUserMedia", "args": {"constraints": constraints}})
    assert len(data) <= MAX_MESSAGE_BYTES
    assert decode_request(data).args["constraints"] == constraints


def test_encoding_an_oversized_message_raises() -> None:
    with pytest.raises(ProtocolError, match="exceeds"):  # requests: 64 KiB
        encode_request(1, "getUserMedia", {f"k{i}": "x" * 4000 for i in range(17)})


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        ("x" * MAX_STRING_BYTES, True),
        ("x" * (MAX_STRING_BYTES + 1), False),
        ("é" * (MAX_STRING_BYTES // 2), True),
        ("é" * (MAX_STRING_BYTES // 2 + 1), False),  # the limit is in bytes
    ],
    ids=["at-limit", "over", "utf8-at-limit", "utf8-over"],
)
def test_string_length_limit(value: str, accepted: bool) -> None:
    data = request(args={"trackId": value})
    if accepted:
        assert decode_request(data).args["trackId"] == value
    else:
        reject(data, match="max_str_len")


def test_bytes_over_the_string_limit_are_refused() -> None:
    constraints = {"blob": b"\x00" * (MAX_STRING_BYTES + 1)}
    reject(pack({"v": 1, "id": 1, "op": "getUserMedia", "args": {"constraints": constraints}}))


@pytest.mark.parametrize("size", [16 * 1024, 16 * 1024 + 1])
def test_a_result_may_be_16_kib_of_bytes_and_nothing_else_may(size: int) -> None:
    """sendResult's ``data`` (a packed map) may be up to 16 KiB; bytes over
    the string limit anywhere else, even in a sendResult, are refused."""
    args = {"channel": "p1", "captureSeq": 1, "captureNs": 2, "sentNs": 3, "data": b"\0" * size}
    data = pack({"v": 1, "id": 1, "op": "sendResult", "args": args})
    if size <= 16 * 1024:
        assert decode_request(data).args["data"] == args["data"]
    else:
        reject(data)
    sneaky = {**args, "data": b"\0" * size, "channel": "p1"}
    smuggled = {"v": 1, "id": 1, "op": "sendResult", "args": sneaky, "x": b"\0" * 5000}
    reject(pack(smuggled))


@pytest.mark.parametrize("items", [MAX_CONTAINER_ITEMS, MAX_CONTAINER_ITEMS + 1])
@pytest.mark.parametrize("container", ["map", "array"])
def test_container_item_limit(container: str, items: int) -> None:
    content: object = (
        {f"k{i}": i for i in range(items)} if container == "map" else list(range(items))
    )
    data = pack({"v": 1, "id": 1, "op": "getUserMedia", "args": {"constraints": {"c": content}}})
    if items <= MAX_CONTAINER_ITEMS:
        assert decode_request(data).args["constraints"]["c"] == content
    else:
        reject(data, match=f"max_{container}_len")


@pytest.mark.parametrize("depth", [64, 200, 900, 1000, 1020, 1100, 5000])
def test_rejects_deeply_nested_constraints(depth: int) -> None:
    data = raw_request(b"\xacgetUserMedia", b"\x81\xabconstraints" + nested_maps(depth))
    reject(data)


@pytest.mark.parametrize("depth", [64, 200, 900, 1000, 1020, 1100, 5000])
def test_rejects_deeply_nested_fields(depth: int) -> None:
    """A nested value where a scalar belongs must not take the error path's
    repr() into Python's recursion limit."""
    reject(raw_request(b"\xa3bye", b"\x80", request_id=nested_arrays(depth)))


def test_accepts_realistically_nested_constraints() -> None:
    constraints = {
        "video": {
            "deviceId": {"exact": ["cam0", "cam1"]},
            "advanced": [{"width": {"min": 640, "max": 1920}}, {"aspectRatio": {"exact": 1.777}}],
        }
    }
    data = encode_request(1, "getUserMedia", {"constraints": constraints})
    assert decode_request(data).args == {"constraints": constraints}


# --- properties ----------------------------------------------------------------


def _assert_request_or_protocol_error(data: bytes) -> None:
    try:
        result = decode_request(data)
    except ProtocolError:
        return
    assert isinstance(result, Request)
    assert result.op in OPS and isinstance(result.args, dict)


PROPERTY_SETTINGS = settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(st.binary(max_size=1024))
def test_arbitrary_bytes_decode_or_raise_protocol_error(data: bytes) -> None:
    _assert_request_or_protocol_error(data)


_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=16)
    | st.binary(max_size=16)
)
_keys = st.sampled_from(["v", "id", "op", "args", "trackId", "name", "version", "constraints"])
_values = st.recursive(
    _scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(_keys | st.text(max_size=6) | st.binary(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)
_messages = st.fixed_dictionaries(
    {},
    optional={
        "v": st.just(PROTOCOL_VERSION) | _values,
        "id": st.integers(min_value=0, max_value=2**64 - 1) | _values,
        "op": st.sampled_from(sorted(OPS)) | _values,
        "args": st.dictionaries(_keys | st.binary(max_size=6), _values, max_size=3) | _values,
    },
)


@PROPERTY_SETTINGS
@given(_messages)
def test_structured_messages_decode_or_raise_protocol_error(message: dict[str, Any]) -> None:
    _assert_request_or_protocol_error(pack(message))


@PROPERTY_SETTINGS
@given(_messages, st.integers(min_value=0), st.integers(min_value=0, max_value=255))
def test_mutated_requests_decode_or_raise_protocol_error(
    message: dict[str, Any], position: int, byte: int
) -> None:
    data = bytearray(pack(message))
    if data:
        data[position % len(data)] = byte
    _assert_request_or_protocol_error(bytes(data))


# --- error names -----------------------------------------------------------------


@pytest.mark.parametrize("name", DOM_EXCEPTION_NAMES)
def test_error_from_wire_maps_dom_exception_names(name: str) -> None:
    error = error_from_wire(
        name, "the message", "width" if name == "OverconstrainedError" else None
    )
    assert type(error) is getattr(errors, name)
    assert isinstance(error, MediaStreamError)
    assert error.name == name
    assert str(error) == "the message"


def test_error_from_wire_type_error_is_a_constraint_type_error() -> None:
    """The spec's TypeError: still caught by ``except TypeError``."""
    error = error_from_wire("TypeError", "constraints must be a dictionary", None)
    assert type(error) is ConstraintTypeError
    assert isinstance(error, TypeError) and error.name == "TypeError"
    assert str(error) == "constraints must be a dictionary"


@pytest.mark.parametrize(("constraint", "expected"), [("width", "width"), (None, ""), ("", "")])
def test_error_from_wire_keeps_the_constraint(constraint: str | None, expected: str) -> None:
    error = error_from_wire("OverconstrainedError", "no such mode", constraint)
    assert isinstance(error, errors.OverconstrainedError)
    assert error.constraint == expected
    assert str(error) == "no such mode"


def test_error_from_wire_protocol_error() -> None:
    assert type(error_from_wire("ProtocolError", "bad request", None)) is ProtocolError


@pytest.mark.parametrize(
    "name", ["SecurityError", "Bogus", "", "ValueError", "__class__", "notfounderror"]
)
def test_error_from_wire_unknown_names_become_protocol_errors(name: str) -> None:
    error = error_from_wire(name, "something new", None)
    assert type(error) is ProtocolError
    assert repr(name) in str(error) and "something new" in str(error)


@pytest.mark.parametrize("name", [*DOM_EXCEPTION_NAMES, "TypeError"])
def test_error_reply_to_exception_end_to_end(name: str) -> None:
    reply = decode_reply(encode_error(9, name, "failed", "height"))
    error = error_from_wire(reply.error_name, reply.error_message, reply.error_constraint)
    assert error.name == name
    if isinstance(error, errors.OverconstrainedError):
        assert error.constraint == "height"


def test_daemon_replies_may_be_larger_than_requests_but_not_unbounded() -> None:
    """Requests are held to 64 KiB and 256 items; the daemon's replies (device
    lists, stats) to 4 MiB and 65,536 items; past that, encoding refuses."""
    from mediastream.wire import DAEMON_LIMITS, decode_reply, encode_reply

    big = {"ids": [f"{i:036d}" for i in range(5000)]}  # ~200 KiB, 5000 items
    assert decode_reply(encode_reply(1, big)).result == big
    with pytest.raises(ProtocolError, match="exceeds"):
        encode_reply(2, {"blob": ["x" * 60_000] * 80})  # over 4 MiB
    assert DAEMON_LIMITS.message_bytes == 4 * 1024 * 1024


# --- the constraint vocabulary ------------------------------------------------


def test_supported_constraints_are_the_kinds_vocabularies_each_once() -> None:
    assert SUPPORTED_CONSTRAINTS == COMMON_CONSTRAINTS + VIDEO_CONSTRAINTS + AUDIO_CONSTRAINTS
    assert len(set(SUPPORTED_CONSTRAINTS)) == len(SUPPORTED_CONSTRAINTS)
    assert "pixelFormat" in VIDEO_CONSTRAINTS  # ours; the daemon accepts it, so it is claimed
    assert "backgroundBlur" not in SUPPORTED_CONSTRAINTS  # refused when required, never claimed


def test_the_daemons_constraint_names_are_exactly_the_supported_ones() -> None:
    assert set().union(*PROPERTIES_OF_KIND.values()) == set(SUPPORTED_CONSTRAINTS)
    assert PROPERTIES_OF_KIND["video"] == set(COMMON_CONSTRAINTS + VIDEO_CONSTRAINTS)
    assert PROPERTIES_OF_KIND["audio"] == set(COMMON_CONSTRAINTS + AUDIO_CONSTRAINTS)


@pytest.mark.parametrize(
    ("kind", "own"),
    [("video", VIDEO_CONSTRAINTS), ("audio", AUDIO_CONSTRAINTS)],
)
def test_the_daemon_keeps_the_supported_names_of_a_kind(kind: str, own: tuple[str, ...]) -> None:
    """What the daemon narrows, seen from outside: every supported name of the
    track's kind is kept; the other kind's, and names nobody supports, are dropped."""
    everything = (*SUPPORTED_CONSTRAINTS, "volume", "torch")
    values: dict[str, Any] = {name: {"ideal": 1} for name in everything}
    values["normalize"] = {"mean": [0, 0, 0], "std": [1, 1, 1]}  # a value, not a range
    kept = parse_track_constraints(kind, values)
    assert set(kept) == set(COMMON_CONSTRAINTS + own)
