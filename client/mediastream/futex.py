"""Waiting on a word of shared memory: futex(2) through ctypes (internal).

Design note. A ring's ``newest`` header word changes with every frame (or
audio block) its writer publishes, so it is the ring's doorbell: the writer
wakes every waiter with one FUTEX_WAKE after it publishes, and a reader that
found nothing new sleeps in FUTEX_WAIT until the word moves from the value it
saw (or a timeout passes). No socket is involved, so a reader costs its
writer nothing, and no peer can flood or exhaust one. The futexes are
shared (no FUTEX_PRIVATE_FLAG): the word lives in a mapping of other
processes. The low 32 bits of the little-endian word are the futex word;
it wraps after 2**32 frames, which only a comparison sees.

ctypes releases the GIL for the call, so a waiting read holds up no other
thread. Every return (a wake, the word already changed: EAGAIN, the
timeout, a signal: EINTR, a spurious wake) means the same to the caller:
look at the ring again.
"""

from __future__ import annotations

import ctypes
import platform

__all__ = ["available", "wait", "wake_all"]

_SYS_FUTEX = {"x86_64": 202, "aarch64": 98, "i386": 240, "i686": 240}.get(platform.machine())
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1
_WAKE_ALL = 0x7FFFFFFF
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def available() -> bool:
    """Whether this machine's futex system call number is known."""
    return _SYS_FUTEX is not None


def wait(address: int, seen: int, timeout_s: float) -> None:
    """Sleep while the 32-bit word at ``address`` holds ``seen`` (its low
    32 bits), at most ``timeout_s``."""
    timeout = _Timespec(int(timeout_s), int(timeout_s % 1 * 1e9))
    _futex(address, _FUTEX_WAIT, seen & 0xFFFFFFFF, ctypes.byref(timeout))


def wake_all(address: int) -> None:
    """Wake every process and thread waiting on the word at ``address``."""
    _futex(address, _FUTEX_WAKE, _WAKE_ALL, None)


def _futex(address: int, op: int, value: int, timeout: object) -> None:
    if _SYS_FUTEX is None:
        raise OSError(f"no futex system call number known for {platform.machine()}")
    _libc.syscall(
        ctypes.c_long(_SYS_FUTEX),
        ctypes.c_void_p(address),
        ctypes.c_int(op),
        ctypes.c_uint32(value),
        timeout,
        None,
        ctypes.c_int(0),
    )
