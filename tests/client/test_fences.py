"""mediastream.fences: which memory fence the rings use on which CPU."""

from __future__ import annotations

import platform

import pytest

from mediastream import NotReadableError, fences


def test_this_x86_64_machine_needs_no_fence() -> None:
    assert platform.machine() == "x86_64"
    assert fences.fence_kind == "none (total store order)"
    fences.fence()  # a no-op that must not raise


@pytest.mark.parametrize("machine", ["riscv64", "ppc64le", "armv7l"])
def test_a_weakly_ordered_cpu_without_fences_is_refused_at_the_first_ring_access(
    machine: str,
) -> None:
    """The choice is made at import, the refusal happens at the first fence
    (a ring read or write): control requests still work on such a machine."""
    kind, fence = fences._choose(machine)
    assert kind == "unsupported"
    with pytest.raises(NotReadableError, match=f"not supported on {machine}.*torn frame"):
        fence()


def test_aarch64_gets_the_dmb_fence_code() -> None:
    """The machine code is dmb ish; ret (run for real by
    tests/system/test_integrity_aarch64.py under qemu-user)."""
    assert fences._DMB_ISH_RET == bytes.fromhex("bf3b03d5c0035fd6")
