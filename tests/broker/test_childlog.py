"""A capture process's stderr, logged once per window with a level (real sockets, real loop)."""

from __future__ import annotations

import asyncio
import logging
import os

import pytest

from mediabroker.childlog import ChildLog, ChildOutput, RepeatFilter, classify, native_detail

FFMPEG = "[mjpeg @ 0x55673206f9c0] error y=2 x=0"
OPENCV = "[ WARN:0@0.011] global cap.cpp:212 open VIDEOIO(FFMPEG): backend is generally available"


def test_each_line_gets_its_level() -> None:
    assert classify("ERROR capture[1-video] it broke") == (
        logging.ERROR,
        "capture[1-video] it broke",
    )
    assert classify(FFMPEG) == (logging.WARNING, "FFmpeg (mjpeg): error y=2 x=0")
    assert classify(OPENCV)[0] == logging.WARNING
    assert classify("[ INFO:0@1.0] global x.cpp:1 hi") == (
        logging.INFO,
        "OpenCV: global x.cpp:1 hi",
    )
    assert classify("Traceback (most recent call last):") == (
        logging.WARNING,
        "Traceback (most recent call last):",
    )


def test_a_repeat_is_counted_and_summed_up_once_per_window() -> None:
    repeats = RepeatFilter()
    assert repeats.seen("a") and not repeats.seen("a") and not repeats.seen("a")
    assert repeats.seen("b")
    assert repeats.flush() == [("a", 2)]
    assert not repeats.seen("a"), "a line that kept repeating is not news in the next window"
    assert repeats.seen("b"), "a line that did not repeat is forgotten"
    assert repeats.flush() == [("a", 1)]
    assert repeats.flush() == []
    assert repeats.seen("a")


def test_a_probe_childs_ffmpeg_lines_become_a_detail() -> None:
    moov = "[mov @ 0x5621d2fcd1c0] moov atom not found"
    stderr = f"{moov}\n{OPENCV}\n{moov.replace('cd1c0', 'cd2c0')}\n"
    assert native_detail(stderr) == "FFmpeg (mov): moov atom not found"
    assert native_detail(OPENCV) == ""


def test_child_output_logs_lines_once_redacted_and_sums_up_at_flush(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """1. A "child" (a copy of the socket's far end) writes 50 repeats of one
       FFmpeg line, a Python log line and a line quoting its URL's password.
    2. Each distinct line is logged once at its level, the password redacted.
    3. A second process of the same source says the same again: nothing new.
    4. The source's flush logs one summary: 50 repeats."""

    async def child(log: ChildLog, text: bytes) -> None:
        output = ChildOutput(log)
        child_fd = os.dup(output.theirs.fileno())
        output.start()
        with os.fdopen(child_fd, "wb") as far_end:
            far_end.write(text)
        await asyncio.sleep(0)  # a turn of the loop: it reads what is there
        output.close()
        output.close()  # idempotent

    async def scenario() -> None:
        log = ChildLog.for_backend("1-video", {"url": "rtsp://a:hunter22@cam/x"})
        first = (FFMPEG + "\n").encode() * 50
        first += b"INFO capture[1-video] reading rtsp://a:hunter22@cam/x\n"
        await child(log, first + b"no newline at the end: hunter22")
        await child(log, (FFMPEG + "\n").encode())
        log.flush()
        log.flush()  # nothing more to say

    with caplog.at_level(logging.DEBUG, logger="mediabroker.capture"):
        asyncio.run(scenario())
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages == [
        (logging.WARNING, "capture[1-video] FFmpeg (mjpeg): error y=2 x=0"),
        (logging.INFO, "capture[1-video] reading rtsp://a:***@cam/x"),
        (logging.WARNING, "capture[1-video] no newline at the end: ***"),
        (
            logging.WARNING,
            "capture[1-video] FFmpeg (mjpeg): error y=2 x=0 (repeated 50 times in the last 0 s)",
        ),
    ]
