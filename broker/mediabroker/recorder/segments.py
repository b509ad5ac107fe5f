"""The files of one recording: ``output`` itself, or numbered segments of a
fixed length with the oldest removed past ``keep`` (see `files`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Generic, Protocol, TypeVar

from mediabroker.errors import CommandError
from mediabroker.recorder.files import first_index, numbered, prune
from mediabroker.recorder.progress import human_size

__all__ = ["Segments", "Sink"]

M = TypeVar("M", contravariant=True)
S = TypeVar("S")


class Sink(Protocol[M]):
    """An open media file: `write` appends, `close` finishes it."""

    def write(self, media: M) -> None: ...

    def close(self) -> None: ...


class Segments(Generic[S]):
    """Writes media to ``output``, or with ``limit`` (units: frames or sample
    frames) to a new numbered file every ``limit`` units. A file is opened
    on the first write into it, so a recording that stops on a boundary
    leaves no empty file. ``describe(units)`` says what a closed segment
    holds, for the line ``say`` writes about it.

    Errors writing a file become `CommandError` naming it. A context
    manager: leaving it closes the file in hand (`close`, idempotent).
    """

    def __init__(
        self,
        output: Path,
        opener: Callable[[Path], Sink[S]],
        *,
        limit: int | None,
        keep: int | None,
        say: Callable[[str], None],
        describe: Callable[[int], str],
    ) -> None:
        self.output, self.limit, self.keep = output, limit, keep
        self._opener, self._say, self._describe = opener, say, describe
        self._next = first_index(output) if limit is not None else 0
        self._sink: Sink[S] | None = None
        self._units = 0  # in the file in hand
        self.files: list[Path] = []
        self.removed: list[Path] = []
        self.closed_bytes = 0

    def __repr__(self) -> str:
        current = self.files[-1].name if self._sink is not None else None
        return f"<Segments {self.output.name} files={len(self.files)} writing={current}>"

    def __enter__(self) -> Segments[S]:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def room(self) -> int | None:
        """Units the file in hand (or the next one) still takes; None: no limit."""
        return None if self.limit is None else self.limit - self._units

    @property
    def size(self) -> int:
        """Bytes written so far, the file in hand included."""
        if self._sink is None:
            return self.closed_bytes
        try:
            return self.closed_bytes + self.files[-1].stat().st_size
        except OSError:
            return self.closed_bytes

    def write(self, media: S, units: int = 1) -> None:
        """Append ``media`` (``units`` long; no more than `room`); closes the
        segment once full."""
        sink = self._sink if self._sink is not None else self._open()
        try:
            sink.write(media)
        except OSError as exc:
            raise CommandError(f"cannot write {self.files[-1]}: {exc}") from exc
        self._units += units
        if self.limit is not None and self._units >= self.limit:
            self._finish()

    def close(self) -> None:
        """Finish the file in hand, if any. Idempotent."""
        if self._sink is not None:
            self._finish()

    def _open(self) -> Sink[S]:
        path = self.output if self.limit is None else numbered(self.output, self._next)
        self._next += 1
        try:
            self._sink = self._opener(path)
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc}") from exc
        self.files.append(path)
        return self._sink

    def _finish(self) -> None:
        sink, self._sink = self._sink, None
        units, self._units = self._units, 0
        assert sink is not None
        path = self.files[-1]
        try:
            sink.close()
            size = path.stat().st_size
        except OSError as exc:
            raise CommandError(f"cannot finish {path}: {exc}") from exc
        self.closed_bytes += size
        if self.limit is None:
            return
        self._say(f"wrote {path.name}: {self._describe(units)}, {human_size(size)}")
        if self.keep is not None:
            for old in prune(self.output, self.keep):
                self.removed.append(old)
                self._say(f"removed {old.name} (--keep {self.keep})")
