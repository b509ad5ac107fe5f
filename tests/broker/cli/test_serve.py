"""``mediabroker serve``'s configuration: the file with the flags over it,
in-process (tests/broker/test_config.py and tests/system/test_service.py run
the daemon itself)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediabroker.cli.main import build_parser
from mediabroker.cli.serve import config_from_args
from mediabroker.config import BrokerConfig
from mediabroker.errors import ConfigError


def configured(*argv: str) -> BrokerConfig:
    return config_from_args(build_parser().parse_args(["serve", *argv]))


def test_flags_override_the_file_and_a_flag_left_out_sets_nothing(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("shm_prefix = 'file.'\n[devices]\nidle_close_s = 9\nfake = true\n")
    from_file = configured("--config", str(path))
    assert (from_file.shm_prefix, from_file.idle_close_s, from_file.fake_devices) == (
        "file.",
        9,
        True,
    )
    flagged = configured(
        "--config", str(path), "--idle-close", "1.5", "--no-hardware", "--run-dir", "rel"
    )
    assert (flagged.idle_close_s, flagged.hardware_devices) == (1.5, False)
    assert flagged.run_dir == Path("rel").absolute() and flagged.shm_prefix == "file."


def test_a_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        configured("--config", str(tmp_path / "nope.toml"))
