"""mediabroker.daemon.systemd against real AF_UNIX datagram sockets standing in for
systemd's notify socket: one bound in tmp_path, one in the abstract namespace."""

from __future__ import annotations

import gc
import logging
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mediabroker.daemon.systemd import SystemdNotifier

RECV_TIMEOUT_S = 2.0
LOGGER = "mediabroker.daemon.systemd"


def _receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(RECV_TIMEOUT_S)
    return sock


def _recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def _assert_nothing_queued(sock: socket.socket) -> None:
    # A unix datagram send is synchronous: had anything been sent, it would
    # already be queued here, so a non-blocking read proves the negative.
    sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        sock.recv(4096)


@pytest.fixture
def notify_path(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify")
    sock = _receiver(path)
    try:
        yield sock, path
    finally:
        sock.close()


@pytest.fixture
def abstract_name() -> Iterator[tuple[socket.socket, str]]:
    name = f"mediabroker-test-notify-{os.getpid()}-{uuid.uuid4().hex}"
    sock = _receiver("\0" + name)
    try:
        yield sock, "@" + name
    finally:
        sock.close()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.WARNING
    ]


def test_sends_each_state_in_order(notify_path: tuple[socket.socket, str]) -> None:
    """1. READY, 2. STATUS, 3. WATCHDOG, 4. STOPPING arrive as sent, one
    datagram each, and every call reports delivery."""
    sock, path = notify_path
    with SystemdNotifier({"NOTIFY_SOCKET": path}) as notifier:
        assert notifier.enabled
        assert notifier.ready()
        assert notifier.status("serving 2 cameras, 1 microphone")
        assert notifier.watchdog()
        assert notifier.stopping()
    assert [_recv(sock) for _ in range(4)] == [
        "READY=1",
        "STATUS=serving 2 cameras, 1 microphone",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


def test_status_keeps_to_one_line(notify_path: tuple[socket.socket, str]) -> None:
    sock, path = notify_path
    with SystemdNotifier({"NOTIFY_SOCKET": path}) as notifier:
        notifier.status("cam0 lost\nREADY=1")
    # A newline would have smuggled in a second assignment.
    assert _recv(sock) == "STATUS=cam0 lost READY=1"


def test_reloading_carries_monotonic_usec(
    notify_path: tuple[socket.socket, str],
) -> None:
    sock, path = notify_path
    with SystemdNotifier({"NOTIFY_SOCKET": path}) as notifier:
        before_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        assert notifier.reloading()
        after_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading, stamp = _recv(sock).split("\n")
    assert reloading == "RELOADING=1"
    key, _, value = stamp.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before_us <= int(value) <= after_us


def test_abstract_namespace_socket(abstract_name: tuple[socket.socket, str]) -> None:
    sock, address = abstract_name
    with SystemdNotifier({"NOTIFY_SOCKET": address}) as notifier:
        assert notifier.enabled
        assert notifier.ready()
    assert _recv(sock) == "READY=1"


def test_reads_os_environ_by_default(
    notify_path: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = notify_path
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    with SystemdNotifier() as notifier:
        notifier.watchdog()
    assert _recv(sock) == "WATCHDOG=1"


@pytest.mark.parametrize(
    ("usec", "pid", "expected_s"),
    [
        ("10000000", None, 5.0),
        ("10000000", "self", 5.0),
        ("3000000", "self", 1.5),
        ("10000000", "other", None),  # armed for another process
        (None, None, None),
        (None, "self", None),
        ("0", None, None),
        ("ten seconds", None, None),
        ("10000000", "not-a-pid", None),
    ],
)
def test_watchdog_interval(
    usec: str | None, pid: str | None, expected_s: float | None
) -> None:
    environ: dict[str, str] = {}
    if usec is not None:
        environ["WATCHDOG_USEC"] = usec
    if pid == "self":
        environ["WATCHDOG_PID"] = str(os.getpid())
    elif pid == "other":
        environ["WATCHDOG_PID"] = str(os.getppid())
    elif pid is not None:
        environ["WATCHDOG_PID"] = pid
    with SystemdNotifier(environ) as notifier:
        assert notifier.watchdog_interval_s == expected_s


def test_without_notify_socket_nothing_is_sent(
    notify_path: tuple[socket.socket, str], caplog: pytest.LogCaptureFixture
) -> None:
    sock, _ = notify_path
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with SystemdNotifier({}) as notifier:
        assert not notifier.enabled
        assert notifier.watchdog_interval_s is None
        assert not notifier.ready()
        assert not notifier.status("idle")
        assert not notifier.watchdog()
        assert not notifier.reloading()
        assert not notifier.stopping()
    _assert_nothing_queued(sock)
    assert _warnings(caplog) == []


def test_missing_socket_warns_once_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """1. NOTIFY_SOCKET names a path nobody listens on (systemd went away).
    2. Every notification fails softly and returns False.
    3. Exactly one warning names the socket; the rest go to debug."""
    missing = str(tmp_path / "gone")
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    with SystemdNotifier({"NOTIFY_SOCKET": missing}) as notifier:
        assert notifier.enabled
        results = [
            notifier.ready(),
            notifier.status("serving"),
            notifier.watchdog(),
            notifier.reloading(),
            notifier.stopping(),
        ]
    assert results == [False] * 5
    warned = _warnings(caplog)
    assert len(warned) == 1, [r.getMessage() for r in warned]
    assert missing in warned[0].getMessage()
    assert "READY=1" in warned[0].getMessage()
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert len(debug) == 4


def test_unsupported_address_disables_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with SystemdNotifier({"NOTIFY_SOCKET": "vsock:2:1234"}) as notifier:
        assert not notifier.enabled
        assert not notifier.ready()
    warned = _warnings(caplog)
    assert len(warned) == 1
    assert "vsock:2:1234" in warned[0].getMessage()


def test_close_is_idempotent_and_later_sends_are_no_ops(
    notify_path: tuple[socket.socket, str],
) -> None:
    sock, path = notify_path
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.ready()
    assert _recv(sock) == "READY=1"
    notifier.close()
    notifier.close()
    assert not notifier.stopping()
    _assert_nothing_queued(sock)


def test_repr_shows_state(notify_path: tuple[socket.socket, str]) -> None:
    _, path = notify_path
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"}
    notifier = SystemdNotifier(env)
    assert repr(notifier) == f"<SystemdNotifier {path!r} watchdog=5s idle>"
    notifier.ready()
    assert repr(notifier).endswith(" open>")
    notifier.close()
    assert repr(notifier).endswith(" closed>")
    assert repr(SystemdNotifier({})) == "<SystemdNotifier None watchdog=off disabled>"


def test_unclosed_notifier_warns(notify_path: tuple[socket.socket, str]) -> None:
    _, path = notify_path
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    notifier.ready()
    with pytest.warns(ResourceWarning, match="unclosed <SystemdNotifier"):
        del notifier
        gc.collect()


def test_a_receiver_that_stops_draining_costs_drops_not_stalls(
    notify_path: tuple[socket.socket, str],
) -> None:
    """The daemon notifies from its event loop: a full socket must not block it.
    A blocking send would wait here forever (the test timeout); a non-blocking
    one reports the drop as False."""
    _, path = notify_path
    with SystemdNotifier({"NOTIFY_SOCKET": path}) as notifier:
        results = [notifier.status("x" * 200) for _ in range(5000)]  # more than it queues
    assert results[0] is True and results[-1] is False
