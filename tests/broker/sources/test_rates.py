"""FrameMeter: the rate and drops the daemon measures on a ring, fed by hand."""

from __future__ import annotations

from mediabroker.sources.rates import RATE_WINDOW_S, FrameMeter, backend_dropped

NS = 1_000_000_000
PERIOD_NS = NS // 30
SAMPLE_NS = NS // 2  # the daemon samples twice a second by default


def feed(meter: FrameMeter, frames: list[int], *, live: bool = True, start_ns: int = NS) -> None:
    """Frames at the given multiples of a 30 fps period, sampled every half
    second; each sample sees the newest frame written by then."""
    times = [start_ns + n * PERIOD_NS for n in frames]
    at = start_ns
    while at <= times[-1] + SAMPLE_NS:
        written = [t for t in times if t <= at]
        if written:
            meter.sample(at, len(written), written[-1], live=live, nominal_rate=30.0)
        at += SAMPLE_NS


def test_a_steady_camera_reads_its_rate_and_drops_nothing() -> None:
    meter = FrameMeter()
    feed(meter, list(range(300)))
    assert meter.rate is not None and abs(meter.rate - 30.0) < 0.2
    assert meter.dropped == 0


def test_a_gap_on_the_timeline_counts_as_drops() -> None:
    """Frames 100..109 never came: ten drops, and the rate shows fewer frames."""
    meter = FrameMeter()
    feed(meter, [n for n in range(300) if not 100 <= n < 110])
    assert meter.dropped == 10
    meter = FrameMeter()
    feed(meter, [n for n in range(300) if n % 2 == 0])  # every other frame
    assert meter.rate is not None and abs(meter.rate - 15.0) < 0.2
    assert 140 <= meter.dropped <= 150


def test_gaps_while_not_live_are_no_drops() -> None:
    meter = FrameMeter()
    feed(meter, [n for n in range(300) if n % 2 == 0], live=False)
    assert meter.dropped == 0


def test_no_timeline_no_drops() -> None:
    meter = FrameMeter()
    for i in range(10):
        meter.sample(NS + i * SAMPLE_NS, i * 2, NS + i * SAMPLE_NS, live=True, nominal_rate=0)
    assert meter.dropped == 0


def test_a_ring_that_stands_still_reads_slower_then_zero() -> None:
    """1. Frames stop: within a second the rate falls. 2. A whole window
    later it is 0."""
    meter = FrameMeter()
    feed(meter, list(range(90)))
    last_ns = NS + 89 * PERIOD_NS
    seq = 90
    meter.sample(last_ns + NS, seq, last_ns, live=True, nominal_rate=30.0)
    assert meter.rate is not None and meter.rate < 25.0
    at = last_ns + NS
    while at < last_ns + NS + int(RATE_WINDOW_S * NS) + SAMPLE_NS:
        at += SAMPLE_NS
        meter.sample(at, seq, last_ns, live=True, nominal_rate=30.0)
    assert meter.rate == 0.0


def test_no_rate_before_two_samples() -> None:
    meter = FrameMeter()
    assert meter.rate is None
    meter.sample(2 * NS, 5, 2 * NS, live=True, nominal_rate=30.0)
    assert meter.rate is None


def test_backend_drops_add_up_across_capture_processes() -> None:
    """1. The counters heard when a process is first seen may be its
    predecessor's: not counted. 2. Each report (a new mapping) counts. 3. A
    restarted process counts from 0 again; the total goes on."""
    meter = FrameMeter()
    meter.backend_report(100, {"dropped": 9})
    assert meter.dropped == 0
    meter.backend_report(100, {"dropped": 3})
    meter.backend_report(100, {"dropped": 5})
    assert meter.dropped == 5
    stale = {"dropped": 5}
    meter.backend_report(200, stale)
    meter.backend_report(200, stale)
    assert meter.dropped == 5
    meter.backend_report(200, {"dropped": 1})
    assert meter.dropped == 6


def test_what_backends_count_as_lost() -> None:
    assert backend_dropped({"relayed": 10, "dropped": 2}) == 2
    assert backend_dropped({"droppedBlocks": 3, "blockSize": 480, "overflows": 1}) == 1440
    assert backend_dropped({"frames": 10, "fallbackCopies": 1}) == 0
