"""Acting as another local user (``nobody``) in tests, and a place that user
can reach: pytest's tmp_path is 0700, so nobody cannot even traverse it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

AS_NOBODY = ("setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups")

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 and os.environ.get("CI") != "true",
    reason="becoming another user (setuid) needs root; CI runs these as root",
)


def as_nobody(script: str) -> None:
    """Run a shell ``script`` as nobody:nogroup, with no supplementary groups."""
    subprocess.run([*AS_NOBODY, "sh", "-euc", script], check=True, timeout=10)


@contextmanager
def shared_dir(prefix: str, mode: int) -> Iterator[Path]:
    """A fresh directory outside tmp_path with ``mode`` (0o755: every user may
    traverse it; 0o777: every user may write in it), removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(mode)
    try:
        yield base
    finally:
        shutil.rmtree(base)
