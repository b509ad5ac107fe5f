"""mediastream.wire: the control protocol, and its error names (mediastream.errors).

Every inbound message is untrusted: anything that is not a valid request must
come out of `decode_request` as a `ProtocolError` (also a ValueError), never as
another exception, whatever the bytes.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from mediastream.errors import (
    ProtocolError,
)
from mediastream.wire import (
    MAX_STRING_BYTES,
    OPS,
    PROTOCOL_VERSION,
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
SAMPLE_VALUES: dict[type, object] = {str: "x", int: 1, dict: {}, list: [], bool: True, float: 1.0}


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
