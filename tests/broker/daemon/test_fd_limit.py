"""raise_fd_limit: the daemon's soft open-file limit sits above what its
connection caps need (systemd's default soft limit is 1024)."""

from __future__ import annotations

import subprocess
import sys

from support import child_env

PROBE = """
import logging, resource, sys
from mediabroker.daemon.broker import raise_fd_limit
logging.basicConfig(stream=sys.stdout, format="%(message)s")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, int(sys.argv[1])))
got = raise_fd_limit(int(sys.argv[2]))
print(got, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def probe(hard: int, needed: int) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(hard), str(needed)],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_the_soft_limit_is_raised_to_what_the_caps_need() -> None:
    assert probe(hard=4096, needed=2048) == ["2048 2048"]


def test_a_hard_limit_below_the_need_is_used_and_reported() -> None:
    """Raised as far as the hard limit allows, with a warning naming the key."""
    *warning, figures = probe(hard=1500, needed=2048)
    assert figures == "1500 1500"
    assert "limits.connections" in warning[0] and "LimitNOFILE" in warning[0], warning
