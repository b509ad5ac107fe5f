"""`mediabroker.recorder.files`: the output directory, segment names, retention."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mediabroker.errors import CommandError
from mediabroker.recorder.files import check_directory, first_index, numbered, prune


def test_segments_are_numbered_after_the_highest_there(tmp_path: Path) -> None:
    output = tmp_path / "cam.mp4"
    assert numbered(output, 7) == tmp_path / "cam-00007.mp4"
    assert first_index(output) == 1
    for name in ("cam-00002.mp4", "cam-00010.mp4", "cam-9.mp4", "cam-00011.mkv", "camx-00050.mp4"):
        (tmp_path / name).write_bytes(b"")
    assert first_index(output) == 11  # only cam-NNNNN.mp4 count


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    output = tmp_path / "a[1].mp4"  # glob characters in the name match only themselves
    for index in (1, 2, 3, 100000):
        numbered(output, index).write_bytes(b"x")
    (tmp_path / "a1-00001.mp4").write_bytes(b"not ours")
    assert prune(output, 2) == [numbered(output, 1), numbered(output, 2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a1-00001.mp4",
        "a[1]-00003.mp4",
        "a[1]-100000.mp4",
    ]
    assert prune(output, 2) == []


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as caught:
        check_directory(tmp_path / "missing" / "clip.mp4")
    assert caught.value.status == 2
    assert str(caught.value) == (
        f"cannot write {tmp_path}/missing/clip.mp4: the directory {tmp_path}/missing does not "
        f"exist (create it first: mkdir -p {tmp_path}/missing)"
    )
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(CommandError, match="is not a directory"):
        check_directory(tmp_path / "file" / "clip.mp4")


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_directory_it_cannot_write_is_named(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(CommandError, match="no permission to create files in"):
        check_directory(locked / "clip.mp4")
