"""The front doors: every public name is importable, and the client stays light."""

from __future__ import annotations

import subprocess
import sys

import pytest

import mediabroker
import mediastream
from support import child_env


@pytest.mark.parametrize("package", [mediastream, mediabroker])
def test_every_exported_name_exists(package: object) -> None:
    for name in package.__all__:  # type: ignore[attr-defined]
        assert hasattr(package, name), name


def test_client_imports_neither_the_broker_nor_opencv_nor_sounddevice() -> None:
    """An ML worker needs only numpy, pyzmq and msgpack."""
    heavy = "{'cv2', 'sounddevice', 'mediabroker', 'psutil'}"
    code = f"import sys, mediastream; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], env=child_env(), capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
