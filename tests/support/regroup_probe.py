"""Does the daemon judge a client by the groups it had when it connected?
``regroup_probe.py RUN_DIR GROUPS_AT_CONNECT GROUPS_AT_HELLO`` (as root;
groups comma-separated, may be empty).

It becomes nobody:nogroup with GROUPS_AT_CONNECT as supplementary groups
but keeps CAP_SETGID (PR_SET_KEEPCAPS, then capset), connects a DEALER to
the control socket and makes sure the connection is up (a request before
hello is answered "say hello first"), switches to GROUPS_AT_HELLO, then
says hello. Prints one JSON line: the hello's outcome and the groups the
kernel showed for the process at that moment. Before the daemon read
SO_PEERGROUPS at connect, it read /proc/<pid>/status at hello, so a
process could connect with one set of groups and be judged by another.
"""

from __future__ import annotations

import ctypes
import grp
import json
import os
import platform
import sys
from pathlib import Path

import zmq

from mediastream import wire
from mediastream.paths import control_endpoint

NOBODY = 65534
PR_SET_KEEPCAPS = 8
CAP_SETGID = 6
SYS_SETGROUPS = {"x86_64": 116, "aarch64": 159}
_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def gids(names: str) -> list[int]:
    return [grp.getgrnam(name).gr_gid for name in names.split(",") if name]


def become_nobody_keeping_setgid(groups: list[int]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_KEEPCAPS)")
    os.setgroups(groups)
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    data[0].effective = data[0].permitted = 1 << CAP_SETGID
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset")


def set_own_groups(groups: list[int]) -> None:
    """setgroups(2) for this thread only (the raw syscall): glibc's
    os.setgroups changes every thread, and the BLAS threads numpy started
    before we dropped to nobody have no CAP_SETGID, which makes glibc abort.
    /proc/<pid>/status shows this, the main thread's, groups."""
    array = (ctypes.c_uint32 * max(1, len(groups)))(*groups)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_SETGROUPS[platform.machine()], len(groups), array) != 0:
        raise OSError(ctypes.get_errno(), "setgroups")


def ask(dealer: zmq.Socket[bytes], request_id: int, op: str, args: dict[str, object]) -> wire.Reply:
    dealer.send(wire.encode_request(request_id, op, args))
    while True:
        if not dealer.poll(5000):
            raise TimeoutError(f"no reply to {op}")
        message = wire.decode_from_daemon(dealer.recv())
        if isinstance(message, wire.Reply) and message.id == request_id:
            return message


def proc_groups() -> list[int]:
    """The groups /proc shows for this process: what the daemon used to read."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Groups:"):
            return sorted(int(g) for g in line.split()[1:])
    return []


def main(run_dir: str, at_connect: str, at_hello: str) -> None:
    become_nobody_keeping_setgid(gids(at_connect))
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(control_endpoint(Path(run_dir)))
    before_hello = ask(dealer, 1, "enumerateDevices", {})  # the connection is up
    set_own_groups(gids(at_hello))
    hello = ask(dealer, 2, "hello", {"name": "regroup", "version": wire.PROTOCOL_VERSION})
    print(json.dumps({
        "before_hello": before_hello.error_name,
        "hello": "ok" if hello.ok else hello.error_name,
        "groups_at_hello": proc_groups(),
    }), flush=True)
    dealer.close()
    context.term()


if __name__ == "__main__":
    main(*sys.argv[1:])
