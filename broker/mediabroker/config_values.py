"""Parsers for the values of the configuration's keys.

Each takes the TOML value and a `Context` (file and key, for messages) and
returns the field's value or raises ValueError saying what was expected;
`mediabroker.config` names the key and the file around it.
"""

from __future__ import annotations

import grp
import logging
import pwd
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mediastream.ring import check_segment_name

LOG_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Context:
    path: Path
    key: str


Parser = Callable[[Any, Context], Any]


def number(low: float, high: float, *, integer: bool = False) -> Parser:
    def parse(value: Any, ctx: Context) -> float | int:
        number_types = (int,) if integer else (int, float)
        if isinstance(value, bool) or not isinstance(value, number_types):
            raise ValueError(f"must be {'an integer' if integer else 'a number'}, got {value!r}")
        number: float | int = value
        if not low <= number <= high:
            raise ValueError(f"must be between {low:g} and {high:g}, got {value!r}")
        return number if integer else float(number)

    return parse


COUNT = number(1, 1_000_000, integer=True)


def boolean(value: Any, ctx: Context) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def string(value: Any, ctx: Context) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def run_dir_path(value: Any, ctx: Context) -> Path:
    path = Path(string(value, ctx))
    if not path.is_absolute():
        raise ValueError(f"must be an absolute path, got {value!r}")
    return path


def shm_prefix(value: Any, ctx: Context) -> str:
    prefix = string(value, ctx)
    try:
        check_segment_name(prefix + "x")
    except ValueError:
        raise ValueError(
            f"{prefix!r} is not a usable segment name prefix: letters, digits, '.', '_' "
            "and '-' only, starting with a letter or digit"
        ) from None
    return prefix


def log_level(value: Any, ctx: Context) -> int:
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return LOG_LEVELS[value.lower()]


def socket_mode(value: Any, ctx: Context) -> int:
    """An integer (TOML's 0o660) or an octal string ("0660")."""
    mode = value
    if isinstance(value, str):
        try:
            mode = int(value.removeprefix("0o"), 8)
        except ValueError:
            raise ValueError(f"must be an octal mode like 0o660, got {value!r}") from None
    if isinstance(mode, bool) or not isinstance(mode, int):
        raise ValueError(f"must be an octal mode like 0o660, got {value!r}")
    if mode & ~0o666 or mode & 0o600 != 0o600:
        raise ValueError(
            f"{mode:#o} must give the owner rw- and hold only read and write bits "
            "(0o600, 0o660 or 0o666)"
        )
    return mode


def gid(value: Any, ctx: Context) -> int:
    return _name_or_id(value, "group", lambda name: grp.getgrnam(name).gr_gid)


def uid(value: Any, ctx: Context) -> int:
    return _name_or_id(value, "user", lambda name: pwd.getpwnam(name).pw_uid)


def _name_or_id(value: Any, kind: str, look_up: Callable[[str], int]) -> int:
    """A non-negative id as it is, a name through ``look_up`` (KeyError: unknown)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value:
        try:
            return look_up(value)
        except KeyError:
            raise ValueError(f"there is no {kind} {value!r} on this system") from None
    short = "gid" if kind == "group" else "uid"
    raise ValueError(f"must be a {kind} name or a {short}, got {value!r}")


def list_of(item: Parser) -> Parser:
    def parse(value: Any, ctx: Context) -> tuple[Any, ...]:
        if not isinstance(value, list):
            raise ValueError(f"must be a list, got {value!r}")
        result = []
        for index, element in enumerate(value):
            try:
                result.append(item(element, ctx))
            except ValueError as exc:
                raise ValueError(f"item {index}: {exc}") from None
        return tuple(result)

    return parse


def mib_amount(value: Any, ctx: Context) -> int:
    mib = number(0.001, 1024 * 1024)(value, ctx)
    return int(mib * MIB)


def listen_address(value: Any, ctx: Context) -> str:
    """``host:port`` (``[::1]:8089`` for IPv6), kept as written once checked."""
    split_listen_address(string(value, ctx))
    return str(value)


def split_listen_address(text: str) -> tuple[str, int]:
    """(host, port) of ``host:port``; raises ValueError saying what is wrong."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"must be host:port (e.g. 127.0.0.1:8089), got {text!r}")
    return host, int(port)


MIN_TOKEN_CHARS = 16  # a token short enough to guess protects nothing


def token(value: Any, ctx: Context) -> str:
    text = string(value, ctx)
    if len(text) < MIN_TOKEN_CHARS or not text.isprintable() or " " in text:
        raise ValueError(
            f"must be at least {MIN_TOKEN_CHARS} printable characters without spaces "
            "(e.g. the output of: python3 -c 'import secrets; print(secrets.token_urlsafe())')"
        )
    return text
