"""Memory fences for the rings' seqlocks, on the machines the client runs on.

Design note. The rings are written by one process and read by others on
other CPUs, with no lock: a reader trusts a frame because it sees the
writer's stores in the order they were made (see `mediastream.ring`). What
that takes depends on the CPU:

- x86-64 (and i386) keep stores in order and loads in order (TSO), so
  `fence` does nothing. The compiler cannot reorder either: every ring
  access is a call into numpy, opaque to the compiler that built CPython.
- aarch64 may make stores visible, and perform loads, out of order. There
  `fence` runs ``dmb ish``, a full barrier for every CPU that can map the
  segment: eight bytes of machine code (``dmb ish; ret``) put in a page of
  their own, made executable with mprotect, called through ctypes (about a
  microsecond; a few per frame). Nothing is compiled on the user's machine.
- Any other CPU: `fence` raises `NotReadableError`, rather than risk
  handing out a torn frame as valid.

The ring's fences pair up as release and acquire: the writer fences after
a slot's ``begin`` (before the pixels) and before its ``end`` and the
newest-frame word; a reader fences after reading the newest word and the
slot's seqlock words (before the pixels), and before it checks ``begin``
again (after the pixels). A full barrier is stronger than either half.

Held frames need one more kind (`store_load_fence`): a reader stores the
frame it holds and then loads the slot's ``begin``; the writer stores
``begin`` and then loads the holds (`mediastream.holds`). Each side must see
the other's store or have its own seen, and TSO lets a load pass an earlier
store, so on x86-64 this fence is ``mfence``, made the same way as ``dmb
ish`` (which already orders stores before loads on aarch64).
"""

from __future__ import annotations

import ctypes
import mmap
import platform
from collections.abc import Callable

from .errors import NotReadableError

__all__ = ["ORDERED_MACHINES", "fence", "fence_kind", "store_load_fence"]

ORDERED_MACHINES = frozenset({"x86_64", "amd64", "i386", "i686"})  # TSO: stores and loads in order
ARM64_MACHINES = frozenset({"aarch64", "arm64"})
_DMB_ISH_RET = (0xD5033BBF).to_bytes(4, "little") + (0xD65F03C0).to_bytes(4, "little")
_MFENCE_RET = bytes((0x0F, 0xAE, 0xF0, 0xC3))
X86_64_MACHINES = frozenset({"x86_64", "amd64"})


def _no_fence() -> None:
    """The hardware keeps the order: nothing to do."""


def _machine_code(code: bytes) -> Callable[[], None]:
    """A few bytes of machine code (a barrier, then ``ret``) as a callable:
    the code is written to a fresh anonymous page, which is then made
    read-execute (never writable and executable at once, so W^X policies
    allow it)."""
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    page.write(code)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))  # pins the page for good
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if libc.mprotect(address, mmap.PAGESIZE, mmap.PROT_READ | mmap.PROT_EXEC) != 0:
        errno = ctypes.get_errno()
        raise NotReadableError(
            f"cannot make the ring's memory fence executable (mprotect: errno {errno}); "
            "a policy forbids executable memory for this process"
        )
    _pages.append(page)
    return ctypes.CFUNCTYPE(None)(address)


_pages: list[mmap.mmap] = []


def _refusing(message: str) -> Callable[[], None]:
    """A fence that refuses: the first ring access raises, the rest of the
    client (devices, control requests) still works."""

    def refuse() -> None:
        raise NotReadableError(message)

    return refuse


def _choose(machine: str) -> tuple[str, Callable[[], None]]:
    if machine in ORDERED_MACHINES:
        return "none (total store order)", _no_fence
    if machine in ARM64_MACHINES:
        try:
            return "dmb ish", _machine_code(_DMB_ISH_RET)
        except NotReadableError as exc:
            return "unavailable", _refusing(str(exc))
    return "unsupported", _refusing(
        f"shared-memory rings are not supported on {machine}: its CPU may reorder "
        "memory accesses and mediastream has fences only for x86-64 and aarch64, so "
        "a torn frame could be taken for a whole one"
    )


def _choose_store_load(machine: str, ordered_fence: Callable[[], None]) -> Callable[[], None]:
    """The store-then-load barrier: ``mfence`` on x86-64, else the full fence
    (``dmb ish``, or the refusal). 32-bit x86 is refused: nothing tests it."""
    if machine in X86_64_MACHINES:
        try:
            return _machine_code(_MFENCE_RET)
        except NotReadableError as exc:
            return _refusing(str(exc))
    if machine in ORDERED_MACHINES:
        return _refusing(f"held frames need a store-load fence mediastream lacks on {machine}")
    return ordered_fence


_MACHINE = platform.machine().lower()
fence_kind, fence = _choose(_MACHINE)
"""What `fence` does on this machine, and the fence itself."""
store_load_fence = _choose_store_load(_MACHINE, fence)
"""A barrier that also keeps a store before a later load (held frames)."""
