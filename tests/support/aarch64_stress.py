"""test_integrity.py's torn-read stress, run by an aarch64 Python under
qemu-user: ``aarch64_stress.py RING FRAMES LIMIT_S`` (see
tests/system/test_integrity_aarch64.py). ``aarch64_stress.py holds RING
TABLE SECONDS`` runs hold_children.py's held-frame race instead.

The ring is the test's. A writer and a reader are forked (qemu-user runs
the forks too; it cannot exec an aarch64 binary without binfmt_misc, so no
spawn), the reader checks FRAMES frames, and one JSON line says what the
machine and its fence were and what the reader saw.
"""

from __future__ import annotations

import json
import multiprocessing
import platform
import sys
import time
from pathlib import Path

import hold_children
import integrity_children  # tests/support is on the path: the package needs psutil

from mediastream import fences
from mediastream.holds import HoldTable
from mediastream.ring import Doorbell, Ring, VideoReader

FORK = multiprocessing.get_context("fork")


def main(name: str, frames: int, limit_s: float) -> None:
    writer = FORK.Process(target=integrity_children.write_flat_out, args=(name,))
    writer.start()
    with Ring.open(name) as ring:
        doorbell, deadline = Doorbell(ring), time.monotonic() + 60
        while (seen := doorbell.value()) == 0 and time.monotonic() < deadline:
            doorbell.wait(seen, 1.0)  # the writer's first commit rings it
        mine, theirs = FORK.Pipe(duplex=False)
        args = (name, None, frames, limit_s, theirs)
        reader = FORK.Process(target=integrity_children.check_frames, args=args)
        reader.start()
        theirs.close()
        counts, torn = mine.recv() if mine.poll(limit_s + 60) else ({}, ["no answer"])
        del doorbell  # holds the mapping
    with Ring.open(name, writable=True) as ring:
        ring.mark_ended()  # the writer's signal to stop
    reader.join(30)
    writer.join(30)
    print(
        json.dumps(
            {
                "machine": platform.machine(),
                "fence": fences.fence_kind,
                "counts": counts,
                "torn": torn,
                "exit_codes": [reader.exitcode, writer.exitcode],
            }
        )
    )


def holds(name: str, table_dir: str, seconds: float) -> None:
    """The held-frame race on ring ``name``: a forked writer honours a table
    made here (in ``table_dir``); one JSON line with what the reader saw."""
    with Ring.open(name) as ring:
        table = HoldTable.create(name, Path(table_dir))
        table.limit = 2
        args = (name, str(table.path), 2, seconds)
        writer = FORK.Process(target=hold_children.writer_child, args=args)
        writer.start()
        reader = VideoReader(ring)
        counts = hold_children.hold_while_racing(ring, reader, table)
        writer.join(60)
        table.close()
        del reader
    report = {"machine": platform.machine(), "store_load": fences.fence_kind}
    print(json.dumps({**report, **vars(counts), "exit_codes": [writer.exitcode]}))


if __name__ == "__main__":
    if sys.argv[1] == "holds":
        holds(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
