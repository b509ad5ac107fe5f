"""The shared encoder's fanout: no backlog grows, a lagging viewer skips to a
keyframe, and a viewer that joins starts on one. Pure asyncio, no codec."""

from __future__ import annotations

import asyncio

import pytest

from mediabroker.web.fanout import VIEWER_BACKLOG, Fanout, ViewerClosed


class Keyframes:
    """Counts the fanout's keyframe requests, as the encoder would get them."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self) -> None:
        self.requests += 1


def test_a_viewer_that_joins_waits_for_a_keyframe_and_asks_for_one() -> None:
    keyframes = Keyframes()
    fanout: Fanout[str] = Fanout(keyframes)
    viewer = fanout.join()
    assert keyframes.requests == 1
    fanout.publish("p1", keyframe=False)
    fanout.publish("k2", keyframe=True)
    fanout.publish("p3", keyframe=False)

    async def drain() -> list[str]:
        return [await viewer.next(), await viewer.next()]

    assert asyncio.run(drain()) == ["k2", "p3"]
    assert viewer.skipped == 1 and viewer.delivered == 2


def test_a_lagging_viewer_skips_to_the_next_keyframe_and_others_are_untouched() -> None:
    keyframes = Keyframes()
    fanout: Fanout[str] = Fanout(keyframes)
    slow, quick = fanout.join(), fanout.join()
    fanout.publish("k0", keyframe=True)

    async def scenario() -> tuple[list[str], list[str]]:
        got_quick = [await quick.next()]
        for n in range(1, VIEWER_BACKLOG + 3):  # slow never reads: its backlog overflows
            fanout.publish(f"p{n}", keyframe=False)
            got_quick.append(await quick.next())
        requests = keyframes.requests
        fanout.publish("k9", keyframe=True)
        got_quick.append(await quick.next())
        assert keyframes.requests > 2 and requests > 2  # the lag asked for a keyframe
        return got_quick, [await slow.next()]

    got_quick, got_slow = asyncio.run(scenario())
    assert got_quick == ["k0", *(f"p{n}" for n in range(1, VIEWER_BACKLOG + 3)), "k9"]
    assert got_slow == ["k9"], "the lagging viewer resumes at the keyframe, not in its backlog"
    assert slow.lags == 1 and quick.lags == 0 and quick.skipped == 0


def test_no_backlog_grows_past_its_bound() -> None:
    fanout: Fanout[int] = Fanout(lambda: None)
    viewer = fanout.join()
    for n in range(1000):
        fanout.publish(n, keyframe=n % 30 == 0)
    assert len(viewer._backlog) <= VIEWER_BACKLOG
    assert viewer.skipped >= 1000 - VIEWER_BACKLOG


def test_closing_ends_a_waiting_viewer_and_forgets_it() -> None:
    fanout: Fanout[str] = Fanout(lambda: None)
    viewer = fanout.join()

    async def scenario() -> None:
        waiting = asyncio.create_task(viewer.next())
        await asyncio.sleep(0)  # let it wait
        fanout.close()
        with pytest.raises(ViewerClosed):
            await waiting

    asyncio.run(scenario())
    assert fanout.viewers == 0 and viewer.closed
    fanout.publish("k", keyframe=True)  # nobody left: nothing to do, nothing kept
