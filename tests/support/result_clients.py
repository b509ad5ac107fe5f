"""Processes of the results-channel tests (tests/system/test_results.py):
``python tests/support/result_clients.py MODE RUN_DIR [ARGS]``, each
printing JSON lines. Modes whose name starts with ``nobody-`` become
nobody:nogroup (no supplementary groups) first.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import threading
import time

from mediastream import MediaDevices, MediaStreamError, VideoFrame

NOBODY = 65534


def emit(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def detect(run_dir: str, name: str) -> None:
    """Publish results ``name`` for a 640x360 track: one per frame it reads,
    naming the frame's captureSeq, until killed."""
    with MediaDevices(run_dir, name="detector") as md:
        track = md.getUserMedia({"video": {"width": 640, "height": 360}}).getVideoTracks()[0]
        pub = md.publishResults(name, track)
        emit(event="ready", settings=track.getSettings())
        for frame in track.frames(timeout=5.0):
            box = [frame.captureSeq % 640, 10, 64, 64]
            pub.send(frame, {"seq": frame.captureSeq, "sentAt": time.monotonic(), "boxes": [box]})


def follow(run_dir: str, name: str, width: str, height: str, count: str) -> None:
    """Read a ``width`` x ``height`` track alongside results ``name`` until
    ``count`` results lined up with frames of this track; emit what was
    checked, then, after a line on stdin, read on until the channel ends."""
    with MediaDevices(run_dir, name=f"follower-{width}") as md:
        size = {"width": {"exact": int(width)}, "height": {"exact": int(height)}}
        track = md.getUserMedia({"video": size}).getVideoTracks()[0]
        sub = md.subscribeResults(name)
        ended = threading.Event()
        sub.addEventListener("ended", lambda _event: ended.set())
        emit(event="subscribed", publisher=sub.publisher)
        frames: dict[int, float] = {}
        matched = gets = 0
        wrong: list[object] = []
        latencies: list[float] = []
        shape: list[int] = []
        while matched < int(count):
            result = sub.read(timeout=5.0)
            latencies.append(time.monotonic() - result.data["sentAt"])
            while max(frames, default=-1) < result.captureSeq:
                frame = track.read(timeout=5.0)
                assert isinstance(frame, VideoFrame)
                shape = list(frame.data.shape)
                frames[frame.captureSeq] = frame.captureTimestamp
                got = sub.get(frame)
                if got is not None:
                    gets += 1
                    if got["seq"] != frame.captureSeq:
                        wrong.append(["get", frame.captureSeq, got])
            if result.captureSeq in frames:
                same = frames[result.captureSeq] == result.captureTimestamp
                same = same and result.data["seq"] == result.captureSeq
                matched += same
                if not same:
                    wrong.append([list(result), frames[result.captureSeq]])
        emit(
            event="done",
            matched=matched,
            mismatched=len(wrong),
            wrong=wrong[:5],
            gets=gets,
            shape=shape,
            latency_ms=[1e3 * statistics.median(latencies), 1e3 * max(latencies)],
            stats=sub.stats,
        )
        sys.stdin.readline()
        for _result in sub:
            pass
        emit(event="ended", ended=sub.ended, fired=ended.wait(5.0), reason=sub.end_reason)
        sub.close()
        track.stop()


def _rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def slow(run_dir: str, name: str, count: str, spend_s: str) -> None:
    """Read ``count`` results of ``name``, spending ``spend_s`` on each (a
    slow model); emit the stats and RSS after the first and the last."""
    with MediaDevices(run_dir, name="slow-subscriber") as md, md.subscribeResults(name) as sub:
        for index in range(int(count)):
            sub.read(timeout=5.0)
            if index in (1, int(count) - 1):
                emit(event="read", index=index, stats=sub.stats, rss_kib=_rss_kib())
            time.sleep(float(spend_s))  # the model's work, not a wait for a condition


def nobody_subscribe(run_dir: str, name: str) -> None:
    """As nobody: subscribe to ``name`` and read one result; emit the outcome."""
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    try:
        with MediaDevices(run_dir, name="nobody") as md:
            channels = md.listResults()
            listed = [c["name"] for c in channels]
            pids = ["pid" in c["publisher"] for c in channels]  # another user's: hidden
            with md.subscribeResults(name) as sub:
                result = sub.read(timeout=5.0)
                emit(outcome="ok", listed=listed, pids_shown=pids, seq=result.captureSeq)
    except MediaStreamError as exc:
        emit(outcome=exc.name, message=str(exc))


MODES = {"detect": detect, "follow": follow, "slow": slow, "nobody-subscribe": nobody_subscribe}

if __name__ == "__main__":
    mode, *args = sys.argv[1:]
    MODES[mode](*args)
