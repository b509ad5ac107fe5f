"""The daemon's side of the systemd notify protocol (sd_notify(3)).

Design note: systemd hands a ``Type=notify`` service the address of a datagram
socket in ``$NOTIFY_SOCKET``; the service sends newline-separated
``KEY=VALUE`` assignments to it (``READY=1``, ``STATUS=...``, ``WATCHDOG=1``,
``STOPPING=1``, ``RELOADING=1``). Speaking it ourselves takes one AF_UNIX
SOCK_DGRAM socket and no dependency on libsystemd or a Python binding.

Notification is advisory: if systemd is gone, restarted or never was there,
the daemon keeps serving. So every send failure is logged (at warning level
the first time, at debug level after that) and reported as ``False``, never
raised. Without ``$NOTIFY_SOCKET`` (run by hand, in a container, in tests)
the notifier is disabled and every call is a silent no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Mapping
from types import TracebackType

__all__ = ["SystemdNotifier"]

log = logging.getLogger(__name__)


def _socket_address(raw: str) -> str | None:
    """The AF_UNIX address for a ``$NOTIFY_SOCKET`` value, None if unsupported.

    sd_notify(3) accepts an absolute path or ``@name`` for the abstract
    namespace (spelt with a leading NUL byte on the wire). Other forms, such
    as ``vsock:`` addresses for virtual machines, are not AF_UNIX.
    """
    if raw.startswith("/"):
        return raw
    if raw.startswith("@") and len(raw) > 1:
        return "\0" + raw[1:]
    return None


def _watchdog_interval_s(environ: Mapping[str, str], pid: int) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds when the watchdog is meant for
    ``pid``, as sd_watchdog_enabled(3) decides; None otherwise."""
    usec_text = environ.get("WATCHDOG_USEC")
    if not usec_text:
        return None
    pid_text = environ.get("WATCHDOG_PID")
    try:
        usec = int(usec_text)
        if pid_text and int(pid_text) != pid:
            return None  # the watchdog belongs to another process (a parent)
    except ValueError:
        log.warning(
            "ignoring the systemd watchdog: WATCHDOG_USEC=%r WATCHDOG_PID=%r are not integers",
            usec_text,
            pid_text,
        )
        return None
    if usec <= 0:
        return None
    # systemd's own advice: ping at half the timeout, so one late ping is
    # not yet a missed deadline.
    return usec / 2 / 1_000_000


class SystemdNotifier:
    """Sends state changes to the service manager over ``$NOTIFY_SOCKET``.

    Non-blocking (a full receiver drops the datagram: the daemon's loop must
    never wait on systemd), thread-safe, and never raises on a send failure:
    every notification method returns True when the datagram was delivered,
    False when the notifier is disabled or closed or the send failed.
    Failures are logged at warning level once per notifier, then at debug.

    ``environ`` defaults to ``os.environ``; tests pass their own mapping.
    The socket is opened on the first send and released by ``close()``.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._raw_address = env.get("NOTIFY_SOCKET") or None
        self._address: str | None = None
        if self._raw_address is not None:
            self._address = _socket_address(self._raw_address)
            if self._address is None:
                log.warning(
                    "NOTIFY_SOCKET=%r is neither a path nor an @abstract name; "
                    "systemd notifications are disabled",
                    self._raw_address,
                )
        self._watchdog_interval_s = _watchdog_interval_s(env, os.getpid())
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._closed = False
        self._warned = False

    @property
    def enabled(self) -> bool:
        """True when ``$NOTIFY_SOCKET`` names a usable AF_UNIX address."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to call ``watchdog()``: half of ``$WATCHDOG_USEC``, in
        seconds. None when no watchdog is armed for this process (unset, or
        ``$WATCHDOG_PID`` names another process)."""
        return self._watchdog_interval_s

    def ready(self) -> bool:
        """Startup finished: systemd marks the unit active and starts its
        dependents. Call once the control socket accepts clients, and again
        after a reload completes."""
        return self._send("READY=1")

    def status(self, text: str) -> bool:
        """A one-line status shown by ``systemctl status``. Newlines would
        start new assignments in the protocol, so they become spaces."""
        return self._send("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> bool:
        """Keep-alive ping; call every ``watchdog_interval_s`` seconds from
        the loop that does the work, so a hung loop stops the pings."""
        return self._send("WATCHDOG=1")

    def stopping(self) -> bool:
        """Shutdown began (SIGTERM received): the unit shows "deactivating"."""
        return self._send("STOPPING=1")

    def reloading(self) -> bool:
        """A reload began (SIGHUP received), for ``Type=notify-reload``.

        Sends ``RELOADING=1`` with ``MONOTONIC_USEC`` (CLOCK_MONOTONIC in
        microseconds), which systemd uses to tell this reload apart from an
        earlier one. Call ``ready()`` when the reload is done.
        """
        now_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self._send(f"RELOADING=1\nMONOTONIC_USEC={now_us}")

    def close(self) -> None:
        """Release the socket. Idempotent; later notifications are no-ops
        that return False (the shutdown path must not fail on its order)."""
        with self._lock:
            self._closed = True
            sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def __enter__(self) -> SystemdNotifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # getattr: __init__ may have failed before the attribute existed.
        sock = getattr(self, "_sock", None)
        if sock is not None:
            warnings.warn(f"unclosed {self!r}", ResourceWarning, stacklevel=2, source=self)
            sock.close()

    def __repr__(self) -> str:
        if self._closed:
            state = "closed"
        elif not self.enabled:
            state = "disabled"
        else:
            state = "open" if self._sock is not None else "idle"
        watchdog = self._watchdog_interval_s
        ping = "off" if watchdog is None else f"{watchdog:g}s"
        return f"<SystemdNotifier {self._raw_address!r} watchdog={ping} {state}>"

    def _send(self, message: str) -> bool:
        if self._address is None:
            return False
        with self._lock:
            if self._closed:
                log.debug("not sending %r: the notifier is closed", message)
                return False
            try:
                if self._sock is None:
                    self._sock = self._open_socket()
                self._sock.sendto(message.encode(), self._address)
            except OSError as exc:
                self._report_failure(message, exc)
                return False
        return True

    @staticmethod
    def _open_socket() -> socket.socket:
        # Non-blocking: the daemon's event loop calls this, and a receiver that
        # stopped draining its socket must cost a dropped message, not a stall.
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        return sock

    def _report_failure(self, message: str, exc: OSError) -> None:
        first = not self._warned
        self._warned = True
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "could not send %r to systemd at NOTIFY_SOCKET=%r: %s%s",
            message.split("\n", 1)[0],
            self._raw_address,
            exc,
            "; the daemon carries on, further failures are logged at debug level" if first else "",
        )
