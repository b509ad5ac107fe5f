"""Who may use the gateway: loopback and its own user by default, a token beyond.

Design note. A gateway on 127.0.0.1 is still reachable by three kinds of
strangers, and each check below answers one:

- Other local users: the gateway runs as one user, with that user's right
  to the cameras, and loopback lets every user connect. On loopback the
  kernel knows the uid of the connecting socket (``/proc/net/tcp``); only
  the gateway's own uid and root are let in, as for the daemon's socket.
- Web pages the user visits: a page cannot read a cross-origin answer, but
  DNS rebinding makes ``evil.example`` resolve to 127.0.0.1 and turns it
  same-origin. Its requests still say ``Host: evil.example``, so on loopback
  only loopback host names are accepted.
- Anyone on the network, once ``listen`` is wider: a token is required
  (`check_listen` refuses to start without one), as ``Authorization:
  Bearer`` (WHEP's way, what OBS sends) or ``?token=`` (for the page's
  EventSource and a snapshot URL), compared in constant time. The page and
  its script and style (`is_public`) need none: ``<script src>`` cannot
  send one, and they hold nothing but code; everything they fetch does.
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import socket
import sys
from dataclasses import dataclass

__all__ = [
    "Access",
    "AccessDenied",
    "RequestFacts",
    "check_listen",
    "is_loopback",
    "is_public",
    "tcp_peer_uid",
]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


class AccessDenied(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_listen(host: str, token: str) -> None:
    """Raises ValueError for an address beyond loopback without a token."""
    if not is_loopback(host) and not token:
        raise ValueError(
            f"listening on {host} lets other machines in, so it needs a token: set "
            "[web] token in the configuration (e.g. python3 -c 'import secrets; "
            "print(secrets.token_urlsafe())'), or listen on 127.0.0.1"
        )


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a request says about where it comes from."""

    path: str  # the URL's path
    host: str  # the Host header
    authorization: str  # the Authorization header
    query_token: str  # ?token=
    fetch_site: str  # Sec-Fetch-Site, which browsers set and pages cannot
    peer: tuple[str, int]  # the TCP peer's address
    local: tuple[str, int]  # our end's address


@dataclass(frozen=True, slots=True)
class Access:
    loopback_only: bool
    token: str  # "" for none
    port: int

    def check(self, request: RequestFacts) -> None:
        """Raises `AccessDenied` (401, 403 or 421) unless the request may go on."""
        if self.token and not is_public(request.path):
            given = request.authorization.removeprefix("Bearer ").strip() or request.query_token
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                raise AccessDenied(401, "a token is required: Authorization: Bearer or ?token=")
        if self.loopback_only:
            if _host_name(request.host) not in LOOPBACK_NAMES:
                raise AccessDenied(421, f"this gateway answers to localhost, not {request.host!r}")
            if request.fetch_site == "cross-site":
                raise AccessDenied(403, "another site's page may not use this gateway")
            uid = tcp_peer_uid(request.peer, request.local)
            if uid not in (0, os.getuid()):
                raise AccessDenied(403, f"uid {uid} may not use this user's cameras")


def is_public(path: str) -> bool:
    """The page and its static files: code, no data."""
    return path == "/" or path.startswith("/static/")


def _host_name(host_header: str) -> str:
    """The name in a Host header, without its port (``[::1]:8089`` -> ``::1``)."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.partition(":")[0] if host_header.count(":") == 1 else host_header


def tcp_peer_uid(peer: tuple[str, int], local: tuple[str, int]) -> int | None:
    """The uid owning the other end of a loopback TCP connection, from the
    kernel's socket table (the row whose local address is our peer's)."""
    family = "tcp6" if ":" in peer[0] else "tcp"
    wanted_local, wanted_remote = _proc_address(peer, family), _proc_address(local, family)
    try:
        with open(f"/proc/net/{family}") as table:
            next(table)
            for row in table:
                fields = row.split()
                if fields[1] == wanted_local and fields[2] == wanted_remote:
                    return int(fields[7])
    except OSError:
        pass
    return None


def _proc_address(address: tuple[str, int], family: str) -> str:
    """``host:port`` as /proc/net/tcp{,6} writes it: 32-bit words in host order, hex."""
    packed = socket.inet_pton(socket.AF_INET6 if family == "tcp6" else socket.AF_INET, address[0])
    words = [packed[i : i + 4] for i in range(0, len(packed), 4)]
    host = "".join(int.from_bytes(w, sys.byteorder).to_bytes(4, "big").hex().upper() for w in words)
    return f"{host}:{address[1]:04X}"
