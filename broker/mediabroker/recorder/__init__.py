"""``mediabroker record``'s engine: a camera to a video file, a microphone
to a WAV file, as an ordinary client of the daemon.

Design note. The command line (`mediabroker.cli.media`) parses, finds the
device and opens the track; this package does the rest. `make_plan` checks
a `Request` before the daemon is asked for anything (the suffix, the
codec, options that do not go together, the output's directory); `record`
then runs until the duration, a stop signal (SIGTERM or SIGINT: the file is
finished and the command exits 0) or the end of the track. Frames are
placed on the file's constant-rate grid by their capture time
(`timeline`), so missed frames become counted repeats and extra ones
counted drops. ``--segment`` splits the recording into numbered files,
``--keep`` bounds how many stay (`files`, `segments`).

H.264 goes through PyAV, the ``record`` extra, imported lazily by
`encoders` only; Motion JPEG and MPEG-4 Part 2 through OpenCV.
"""

from __future__ import annotations

from mediabroker.recorder.plan import Plan, Request, make_plan
from mediabroker.recorder.session import record

__all__ = ["Plan", "Request", "make_plan", "record"]
