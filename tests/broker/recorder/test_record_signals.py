"""`mediabroker.recorder.signals`: a stop signal is recorded, not acted on."""

from __future__ import annotations

import os
import signal

import pytest

from mediabroker.recorder.signals import StopSignals


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT])
def test_the_first_signal_is_recorded_and_the_old_handlers_return(number: int) -> None:
    """1. Inside the block a signal only sets ``requested``. 2. A second one
    would act as before (the previous handlers are back at once). 3. After
    the block the previous handlers are in place."""
    before = {n: signal.getsignal(n) for n in (signal.SIGTERM, signal.SIGINT)}
    with StopSignals() as stop:
        assert stop.requested is None
        os.kill(os.getpid(), number)
        assert stop.requested == signal.Signals(number).name
        assert {n: signal.getsignal(n) for n in before} == before
    assert {n: signal.getsignal(n) for n in before} == before


def test_an_ignored_signal_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with StopSignals() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            assert stop.requested is None
    finally:
        signal.signal(signal.SIGINT, previous)
