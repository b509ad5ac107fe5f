"""Where a recording goes: the output's directory, numbered segment files and
their retention.

A segmented recording of ``cam.mp4`` writes ``cam-00001.mp4``,
``cam-00002.mp4``, ...; numbering goes on after the highest number already
in the directory, so a restarted recorder (a service) never overwrites an
earlier run's files, and ``keep`` counts those files too: retention bounds
the directory, not one run.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mediabroker.errors import CommandError

__all__ = ["check_directory", "first_index", "numbered", "prune", "segment_numbers"]

EXIT_USAGE = 2  # as mediabroker.cli.options: a mistake in the command, not a failure
INDEX_DIGITS = 5  # cam-00001.mp4: sorts by name up to 99999 segments; numbers go on past it


def check_directory(output: Path) -> None:
    """Raise `CommandError` (status 2) unless ``output``'s directory exists
    and this process may create files in it."""
    directory = output.parent
    if not directory.exists():
        raise CommandError(
            f"cannot write {output}: the directory {directory} does not exist "
            f"(create it first: mkdir -p {directory})",
            EXIT_USAGE,
        )
    if not directory.is_dir():
        raise CommandError(f"cannot write {output}: {directory} is not a directory", EXIT_USAGE)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise CommandError(
            f"cannot write {output}: no permission to create files in {directory}", EXIT_USAGE
        )


def numbered(output: Path, index: int) -> Path:
    """The ``index``-th segment file of ``output``: cam.mp4 -> cam-00007.mp4."""
    return output.with_name(f"{output.stem}-{index:0{INDEX_DIGITS}d}{output.suffix}")


def segment_numbers(output: Path) -> list[int]:
    """The numbers of the segment files of ``output`` in its directory, ascending."""
    pattern = re.compile(
        rf"{re.escape(output.stem)}-(\d{{{INDEX_DIGITS},}}){re.escape(output.suffix)}"
    )
    found = []
    for path in output.parent.glob(f"{glob_escape(output.stem)}-*{glob_escape(output.suffix)}"):
        match = pattern.fullmatch(path.name)
        if match:
            found.append(int(match[1]))
    return sorted(found)


def first_index(output: Path) -> int:
    """The number of the next segment: one after the highest already there."""
    numbers = segment_numbers(output)
    return numbers[-1] + 1 if numbers else 1


def prune(output: Path, keep: int) -> list[Path]:
    """Remove all but the ``keep`` highest-numbered segment files of
    ``output``; return the files removed, oldest first. A file already gone
    (another process pruned it) is not an error."""
    numbers = segment_numbers(output)
    removed = []
    for index in numbers[: max(0, len(numbers) - keep)]:
        path = numbered(output, index)
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed


def glob_escape(text: str) -> str:
    """``text`` matching only itself in a `Path.glob` pattern."""
    return re.sub(r"([*?\[])", r"[\1]", text)
