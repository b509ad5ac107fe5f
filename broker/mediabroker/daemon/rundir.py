"""The daemon's claim on its run dir: one daemon per run dir, nothing stale.

Design note. Two daemons on one run dir would silently steal each other's
sockets (libzmq unlinks an existing ipc path when it binds). So the daemon
holds an exclusive `flock` on ``$RUNDIR/mediabroker.pid`` for its whole life;
the kernel drops the lock when the process dies, however it dies, so a pid
file left by a killed daemon never blocks the next one. A second daemon is
refused with the pid that holds the lock. Only once the lock is held are the
sockets a dead daemon left behind removed (the segments are swept by
`sources.sweep_stale_rings`).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import stat
from types import TracebackType

from mediabroker.config import BrokerConfig
from mediabroker.errors import StartError
from mediabroker.filemodes import run_dir_mode, secure_path

__all__ = ["PID_FILE", "RunDir"]

log = logging.getLogger(__name__)

PID_FILE = "mediabroker.pid"


class RunDir:
    """``with RunDir(config):`` creates the run dir with its mode and group,
    locks it, writes our pid and removes stale sockets; leaving removes the pid
    file and releases the lock. Raises `StartError` on entry."""

    def __init__(self, config: BrokerConfig) -> None:
        self.path = config.run_dir
        self.pid_path = config.run_dir / PID_FILE
        self._config = config
        self._fd: int | None = None

    def __enter__(self) -> RunDir:
        self._prepare()
        self._fd = self._lock()
        try:
            self._write_pid(self._fd)
            self._remove_stale_sockets()
        except BaseException:
            self._release()
            raise
        return self

    def _write_pid(self, fd: int) -> None:
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        except OSError as exc:
            raise StartError(
                f"cannot write {self.pid_path}: {exc.strerror}; make room in {self.path} "
                "(is its file system full?)"
            ) from None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release()

    def _prepare(self) -> None:
        mode = run_dir_mode(self._config.socket_mode)
        try:
            self.path.mkdir(mode=mode, parents=True, exist_ok=True)
            self._check_ours()
            secure_path(self.path, mode, self._config.socket_group)
        except OSError as exc:
            raise StartError(
                f"cannot prepare the run dir {self.path} (mode {mode:#o}"
                f"{_group_text(self._config.socket_group)}): {exc.strerror or exc}; "
                "the daemon's user must own it and belong to the configured access.group"
            ) from None

    def _check_ours(self) -> None:
        """Refuse a run dir that is a symlink or another user's: we would
        chmod and chgrp what it points to, and its owner could plant files
        in it (a pid-file symlink, say)."""
        info = os.lstat(self.path)
        if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
            raise StartError(
                f"the run dir {self.path} is a symlink or not a directory; remove it, or "
                "give the daemon a run dir of its own (run_dir, --run-dir)"
            )
        if info.st_uid != os.geteuid():
            raise StartError(
                f"the run dir {self.path} belongs to uid {info.st_uid}, not to the daemon's "
                f"user (uid {os.geteuid()}); remove it, or give the daemon a run dir of its own"
            )

    def _lock(self) -> int:
        """An fd holding the lock on the pid file that is at its path now."""
        while True:
            try:
                # Never through a symlink, never blocking on a FIFO: the file may
                # have been planted before the run dir got its mode.
                flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
                fd = os.open(self.pid_path, flags, 0o644)
            except OSError as exc:
                raise StartError(
                    f"cannot open {self.pid_path}: {exc.strerror}; if it is a symlink or not "
                    "a file, someone else put it there: remove it"
                ) from None
            if not _own_regular_file(fd):
                os.close(fd)
                raise StartError(
                    f"{self.pid_path} is not a regular file of the daemon's user; remove it"
                )
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise StartError(f"cannot lock {self.pid_path}: {exc.strerror}") from None
                raise StartError(self._busy_message()) from None
            # The holder may have unlinked the file between our open and flock:
            # then we hold a lock on a file nobody else will ever see. Retry.
            try:
                same = os.stat(self.pid_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
            os.close(fd)

    def _busy_message(self) -> str:
        try:
            pid = self.pid_path.read_text().strip() or "unknown"
        except OSError:
            pid = "unknown"
        return (
            f"another mediabroker (pid {pid}) is serving {self.path}; stop it first "
            "(systemctl stop mediabroker, or kill it) or give this one another --run-dir"
        )

    def _remove_stale_sockets(self) -> None:
        removed = []
        for path in sorted(self.path.iterdir()):
            try:
                if stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()
                    removed.append(path.name)
            except FileNotFoundError:
                continue
        if removed:
            log.info(
                "removed %d stale socket(s) from %s: %s",
                len(removed),
                self.path,
                ", ".join(removed),
            )

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        self.pid_path.unlink(missing_ok=True)  # while still locked: no one else's file
        os.close(fd)

    def __repr__(self) -> str:
        return f"<RunDir {str(self.path)!r} {'held' if self._fd is not None else 'free'}>"


def _group_text(gid: int | None) -> str:
    return "" if gid is None else f", group {gid}"


def _own_regular_file(fd: int) -> bool:
    info = os.fstat(fd)
    return stat.S_ISREG(info.st_mode) and info.st_uid == os.geteuid()
