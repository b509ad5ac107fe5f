"""Network camera URLs: which are accepted, and how they are shown.

Design note. A camera URL often carries its password
(``rtsp://admin:secret@cam/stream``, ``...?password=secret``). It must never
reach a log line, an error message, a label or a reply to a client, so
everything that shows a URL goes through `redact_url` (a URL we parsed) or
`redact_text` (text someone else wrote, such as FFmpeg's log lines), here
and nowhere else. Standard library only: the daemon, the command line and
the capture processes all import it.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

__all__ = [
    "NETWORK_SCHEMES",
    "REDACTED",
    "check_video_url",
    "redact_text",
    "redact_url",
    "url_label",
    "url_secrets",
]

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")  # what FFmpeg reads in the wheel
REDACTED = "***"
# Query parameters that hold a secret (lower case; compared without "-" and "_").
SECRET_PARAMS = frozenset(
    {"password", "passwd", "pass", "pwd", "secret", "token", "key", "apikey", "auth", "sig"}
)
MAX_URL_CHARS = 4096
_URL_IN_TEXT = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>]+")


def _secret_param(name: str) -> bool:
    return name.lower().replace("-", "").replace("_", "") in SECRET_PARAMS


def redact_url(url: str) -> str:
    """``url`` with its password and secret query values replaced by ``***``
    (the user name stays: it helps telling cameras apart). Never raises:
    what does not parse as a URL comes back as ``***``."""
    try:
        parts = urllib.parse.urlsplit(url)
        netloc = _redact_netloc(parts)
    except ValueError:
        return REDACTED
    query = "&".join(_redact_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def _redact_netloc(parts: urllib.parse.SplitResult) -> str:
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return parts.netloc
    user, colon, _ = userinfo.partition(":")
    return f"{user}:{REDACTED}@{host}" if colon else f"{REDACTED}@{host}"


def _redact_pair(pair: str) -> str:
    name, equals, value = pair.partition("=")
    return f"{name}={REDACTED}" if equals and value and _secret_param(name) else pair


def url_secrets(url: str) -> tuple[str, ...]:
    """The secrets ``url`` holds (password, user-less token, secret query
    values), raw and percent-decoded, for scrubbing text that quotes them."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return (url,)
    found = [parts.password or ""]
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and ":" not in userinfo:
        found.append(userinfo)  # a bare token in the user part
    found += [v for k, v in urllib.parse.parse_qsl(parts.query) if _secret_param(k)]
    found += [urllib.parse.quote(s, safe="") for s in found]
    return tuple(sorted({s for s in found if len(s) >= 3}, key=len, reverse=True))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URL in it redacted and each of ``secrets`` (see
    `url_secrets`) replaced by ``***``: for lines a library wrote."""
    text = _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def url_label(url: str) -> str:
    """A camera's default label: host, port and path, no credentials
    ("cam.local:8554/live (rtsp)")."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # IPv6
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path.rstrip('/')} ({parts.scheme})"


def check_video_url(url: str) -> str:
    """``url`` if it is a network camera URL FFmpeg can read, else
    `ValueError` saying why (with the URL redacted)."""
    if len(url) > MAX_URL_CHARS:
        raise ValueError(f"a URL of {len(url)} characters is too long (at most {MAX_URL_CHARS})")
    shown = redact_url(url)
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises ValueError for a bad port
    except ValueError as exc:
        raise ValueError(f"{shown!r} is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in NETWORK_SCHEMES:
        raise ValueError(
            f"{shown!r} is not a network camera URL: the scheme must be one of "
            f"{', '.join(NETWORK_SCHEMES)} (use [[devices.files]] or --video-file for files)"
        )
    if not parts.hostname:
        raise ValueError(f"{shown!r} names no host")
    if any(c.isspace() or ord(c) < 32 for c in url):
        raise ValueError(f"{shown!r} holds white space or control characters")
    return url
