"""The control protocol: the one module that knows the message format.

Requests go from a client's DEALER to the daemon's control socket (ZMTP,
served by the daemon itself), one msgpack map per message; replies come
back on the same connection, and so do notices: the events of one session's
own tracks, streams and devices, sent to it alone (no subscription that
could arrive too late, and nobody sees another process's tracks), and the
notices every connection gets: the daemon's heartbeat and shutdown (topic
``broker``) and the end of a session the daemon closed (topic ``session``).
Frames need no message at all: readers wait on their ring's doorbell
(`mediastream.ring.Doorbell`).

    request  {"v": 1, "id": 7, "op": "getUserMedia", "args": {...}}
    reply    {"v": 1, "id": 7, "ok": true,  "result": {...}}
             {"v": 1, "id": 7, "ok": false, "error": {"name": ..., "message": ...,
                                                       "constraint": ...}}
    notice   {"v": 1, "notice": {"topic": "track/<id>", "type": "ended", ...}}
             {"v": 1, "notice": {"topic": "broker", "type": "heartbeat", "pid": 1234}}

Everything inbound is untrusted: decoding enforces size limits and strict
types and raises `ProtocolError` (a `ValueError`) for anything else. A
``heartbeat`` request gets no reply. No pickle anywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import msgpack

from .errors import ProtocolError

__all__ = [
    "AUDIO_CONSTRAINTS",
    "COMMON_CONSTRAINTS",
    "MAX_MESSAGE_BYTES",
    "OPS",
    "PROTOCOL_VERSION",
    "SUPPORTED_CONSTRAINTS",
    "VIDEO_CONSTRAINTS",
    "DeviceInfoDict",
    "Notice",
    "Reply",
    "Request",
    "TrackInfoDict",
    "decode_from_daemon",
    "decode_reply",
    "decode_request",
    "encode_error",
    "encode_notice",
    "encode_reply",
    "encode_request",
    "request_id_of",
]

PROTOCOL_VERSION = 1
MAX_MESSAGE_BYTES = 64 * 1024
MAX_STRING_BYTES = 4096
MAX_CONTAINER_ITEMS = 256
MAX_BIN_BYTES = 16 * 1024  # = mediastream.results.MAX_RESULT_BYTES
MAX_DEPTH = 32  # nested maps and arrays; keeps repr/copy/logging off the recursion limit


@dataclass(frozen=True, slots=True)
class Limits:
    message_bytes: int
    string_bytes: int
    items: int
    bin_bytes: int = MAX_STRING_BYTES  # a sendResult's packed map is a bin of up to 16 KiB


# Clients are untrusted: their requests are small. The daemon's replies and
# notices (device lists, stats of many sessions) may be larger, within reason.
REQUEST_LIMITS = Limits(MAX_MESSAGE_BYTES, MAX_STRING_BYTES, MAX_CONTAINER_ITEMS, MAX_BIN_BYTES)
DAEMON_LIMITS = Limits(4 * 1024 * 1024, 64 * 1024, 65536)

# op -> {argument: (type, required)}. Nested constraint maps are checked for
# shape by the decoder's limits and for meaning by the daemon's constraints.
OPS: dict[str, dict[str, tuple[type | tuple[type, ...], bool]]] = {
    "hello": {"name": (str, True), "version": (int, True)},
    "heartbeat": {"delivered": (int, False), "discarded": (int, False)},
    "bye": {},
    "enumerateDevices": {},
    "getUserMedia": {"constraints": (dict, True)},
    "stopTrack": {"trackId": (str, True)},
    "cloneTrack": {"trackId": (str, True)},
    "holdFrames": {"trackId": (str, True), "table": (str, True)},
    "registerDoorbell": {"fifo": (str, True)},
    "applyConstraints": {"trackId": (str, True), "constraints": (dict, True)},
    "stats": {},
    "addFakeDevice": {"kind": (str, True), "label": (str, True)},
    "removeFakeDevice": {"deviceId": (str, True)},
    "publishStream": {"name": (str, True), "trackIds": (list, True)},
    "unpublishStream": {"name": (str, True)},
    "attachStream": {"name": (str, True)},
    # Video track generators (mediastream.generator): ours
    "createGenerator": {
        "width": (int, True),
        "height": (int, True),
        "frameRate": ((int, float), True),
        "pixelFormat": (str, True),
        "label": (str, True),
        "staging": (str, True),
        "publish": (bool, False),
    },
    "muteGenerator": {"generatorId": (str, True), "muted": (bool, True)},
    "closeGenerator": {"generatorId": (str, True)},
    "publishDevice": {"generatorId": (str, True)},
    # Per-frame results channels (mediastream.result_channels): ours
    "publishResults": {"name": (str, True), "trackId": (str, True)},
    "unpublishResults": {"channel": (str, True)},
    "subscribeResults": {"name": (str, True)},
    "unsubscribeResults": {"subscription": (str, True)},
    "sendResult": {
        "channel": (str, True),
        "captureSeq": (int, True),
        "captureNs": (int, True),
        "sentNs": (int, True),
        "data": (bytes, True),
    },
    "listStreams": {},
    "listResults": {},
}
# No reply, also no error reply: the daemon handles them as it reads them.
NO_REPLY_OPS = frozenset({"heartbeat", "sendResult"})
LARGE_BIN_ARGS = {"sendResult": "data"}  # op -> the argument that may be MAX_BIN_BYTES

# The constrainable properties the daemon understands, by the kind of track
# they belong to: getSupportedConstraints() lists them, and the daemon's
# constraint code narrows exactly these (a constraint of the other kind is
# dropped, an unknown one ignored, as the spec says). pixelFormat is ours,
# not the spec's (bgr24, rgb24, gray8; the float tensors rgbf32 and
# rgbf32planar), and so are normalize (the tensors' per-channel mean and std)
# and resizeMode's "letterbox".
COMMON_CONSTRAINTS = ("deviceId", "groupId", "facingMode")
VIDEO_CONSTRAINTS = (
    "width",
    "height",
    "aspectRatio",
    "frameRate",
    "resizeMode",
    "pixelFormat",
    "normalize",
)
AUDIO_CONSTRAINTS = (
    "sampleRate",
    "sampleSize",
    "channelCount",
    "latency",
    "echoCancellation",
    "autoGainControl",
    "noiseSuppression",
)
SUPPORTED_CONSTRAINTS = COMMON_CONSTRAINTS + VIDEO_CONSTRAINTS + AUDIO_CONSTRAINTS


class DeviceInfoDict(TypedDict):
    deviceId: str
    kind: str
    label: str
    groupId: str
    capabilities: dict[str, Any]


class TrackInfoDict(TypedDict):
    id: str
    kind: str
    label: str
    muted: bool
    settings: dict[str, Any]
    constraints: dict[str, Any]
    capabilities: dict[str, Any]
    ring: str  # the segment's name; its newest word is the doorbell readers wait on


@dataclass(frozen=True, slots=True)
class Request:
    id: int
    op: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Notice:
    topic: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reply:
    id: int
    ok: bool
    result: dict[str, Any]
    error_name: str = ""
    error_message: str = ""
    error_constraint: str | None = None


def _pack(message: Mapping[str, Any], limits: Limits = REQUEST_LIMITS) -> bytes:
    data: bytes = msgpack.packb(message, use_bin_type=True)
    if len(data) > limits.message_bytes:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {limits.message_bytes}")
    return data


def _unpack(data: bytes, limits: Limits = REQUEST_LIMITS) -> dict[str, Any]:
    if len(data) > limits.message_bytes:
        raise ProtocolError(f"message of {len(data)} bytes exceeds {limits.message_bytes}")
    try:
        message = bounded_unpack(data, limits)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"undecodable message: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError(f"expected a map, got {type(message).__name__}")
    if nests_deeper(message, MAX_DEPTH):
        raise ProtocolError(f"message nests deeper than {MAX_DEPTH} levels")
    return message


def bounded_unpack(data: bytes, limits: Limits) -> Any:
    """Untrusted msgpack decoded within ``limits``: str keys only, no ext
    types. What the wire and the results rings both decode with; raises
    msgpack's errors (ValueError, UnpackException)."""
    return msgpack.unpackb(
        data,
        raw=False,
        strict_map_key=True,
        max_str_len=limits.string_bytes,
        max_bin_len=max(limits.bin_bytes, limits.string_bytes),
        max_array_len=limits.items,
        max_map_len=limits.items,
        max_ext_len=0,
    )


def nests_deeper(value: dict[str, Any], depth: int) -> bool:
    """Whether containers nest deeper than ``depth`` (msgpack allows 1024),
    looked at level by level, without recursion."""
    level: list[Any] = [value]
    for _ in range(depth):
        level = [
            item
            for container in level
            if isinstance(container, (dict, list))
            for item in (container.values() if isinstance(container, dict) else container)
        ]
        if not level:
            return False
    return any(isinstance(item, (dict, list)) for item in level)


def _field(message: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = message.get(key)
    # bool is an int in Python; never accept one where a number is meant.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise ProtocolError(f"field {key!r} must be {_type_name(kind)}, got {value!r:.60}")
    return value


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _check_version(message: Mapping[str, Any]) -> None:
    version = message.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:  # not True, not 1.0
        raise ProtocolError(
            f"protocol version {message.get('v')!r} is not {PROTOCOL_VERSION}; "
            "upgrade the older of client and daemon"
        )


def encode_request(request_id: int, op: str, args: Mapping[str, Any] | None = None) -> bytes:
    return _pack({"v": PROTOCOL_VERSION, "id": request_id, "op": op, "args": dict(args or {})})


def decode_request(data: bytes) -> Request:
    """Decode and validate a request. Raises `ProtocolError`."""
    message = _unpack(data)
    _check_version(message)
    request_id = _field(message, "id", int)
    op = _field(message, "op", str)
    if op not in OPS:
        raise ProtocolError(f"unknown op {op!r}")
    args = _field(message, "args", dict)
    _check_args(op, args)
    _check_bins(op, message)
    return Request(request_id, op, args)


def _check_bins(op: str, message: dict[str, Any]) -> None:
    """Bytes over `MAX_STRING_BYTES` only where `LARGE_BIN_ARGS` allows them
    (the decoder's own limit is `MAX_BIN_BYTES` for all)."""
    allowed = message["args"].get(LARGE_BIN_ARGS.get(op, ""))
    level: list[Any] = [message]
    while level:
        for value in level:
            if isinstance(value, bytes) and len(value) > MAX_STRING_BYTES and value is not allowed:
                raise ProtocolError(f"{op}: bytes of {len(value)} exceed {MAX_STRING_BYTES}")
        level = [
            item
            for value in level
            if isinstance(value, (dict, list))
            for item in (value.values() if isinstance(value, dict) else value)
        ]


def request_id_of(data: bytes) -> int:
    """Best effort: the id of a request that failed validation, so that its error
    reply reaches the waiting caller; 0 when there is none to find."""
    try:
        request_id = _unpack(data).get("id")
    except ProtocolError:
        return 0
    return request_id if isinstance(request_id, int) and not isinstance(request_id, bool) else 0


def _check_args(op: str, args: Mapping[str, Any]) -> None:
    schema = OPS[op]
    unknown = set(args) - set(schema)
    if unknown:
        raise ProtocolError(f"{op}: unknown argument {sorted(map(repr, unknown))[0]}")
    for name, (kind, required) in schema.items():
        if name in args or required:
            _field(args, name, kind)


def encode_reply(request_id: int, result: Mapping[str, Any]) -> bytes:
    reply = {"v": PROTOCOL_VERSION, "id": request_id, "ok": True, "result": dict(result)}
    return _pack(reply, DAEMON_LIMITS)


def encode_error(request_id: int, name: str, message: str, constraint: str | None = None) -> bytes:
    # Cut by UTF-8 bytes, not characters, or the reply can break the decoder's limit.
    text = message.encode("utf-8", "replace")[: MAX_STRING_BYTES // 2].decode("utf-8", "ignore")
    error: dict[str, Any] = {"name": name, "message": text}
    if constraint is not None:
        error["constraint"] = constraint
    return _pack({"v": PROTOCOL_VERSION, "id": request_id, "ok": False, "error": error})


def encode_notice(topic: str, event_type: str, **fields: Any) -> bytes:
    notice = {"topic": topic, "type": event_type, **fields}
    return _pack({"v": PROTOCOL_VERSION, "notice": notice}, DAEMON_LIMITS)


def decode_from_daemon(data: bytes) -> Reply | Notice:
    """Decode what the daemon sends on the control socket. Raises `ProtocolError`."""
    message = _unpack(data, DAEMON_LIMITS)
    _check_version(message)
    if "notice" in message:
        notice = _field(message, "notice", dict)
        _field(notice, "type", str)
        return Notice(str(_field(notice, "topic", str)), notice)
    return _reply(message)


def decode_reply(data: bytes) -> Reply:
    """Decode a reply from the daemon. Raises `ProtocolError`."""
    message = _unpack(data, DAEMON_LIMITS)
    _check_version(message)
    return _reply(message)


def _reply(message: dict[str, Any]) -> Reply:
    request_id = _field(message, "id", int)
    if _field(message, "ok", bool):
        return Reply(request_id, True, _field(message, "result", dict))
    error = _field(message, "error", dict)
    constraint = error.get("constraint")
    return Reply(
        request_id,
        False,
        {},
        _field(error, "name", str),
        _field(error, "message", str),
        constraint if isinstance(constraint, str) else None,
    )
