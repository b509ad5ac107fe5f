"""The TOML configuration: every key, every mistake, flags over the file, SIGHUP."""

from __future__ import annotations

import grp
import logging
import pwd
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_nothing_left
from mediabroker.config import (
    BrokerConfig,
    FileSource,
    NetworkSource,
    load_config,
    reloadable,
    resolve_config_path,
)
from mediabroker.errors import ConfigError
from mediastream import MediaDevices
from mediastream.ring import SHM_DIR, Ring
from support import Daemon, child_env, segments, wait_until

FULL = """
run_dir = "/run/mb-test"
shm_prefix = "mbtest."
log_level = "warning"

[access]
group = "audio"
socket_mode = 0o666
allow_users = ["nobody", 0]
allow_groups = ["video", 29]

[sessions]
heartbeat_s = 0.25

[rings]
slots = 4
audio_seconds = 1.5
shm_budget_mib = 64

[devices]
fake = true
allow = ["Fake*"]
deny = ["*microphone*"]
idle_close_s = 0.5
scan_interval_s = 2

[[devices.files]]
path = "clip.avi"
label = "Lobby"
loop = false
"""


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_every_key_is_read(tmp_path: Path) -> None:
    (tmp_path / "clip.avi").write_bytes(b"")
    path = write(tmp_path, FULL)
    config = load_config(path)
    assert config == BrokerConfig(
        run_dir=Path("/run/mb-test"),
        shm_prefix="mbtest.",
        log_level=logging.WARNING,
        socket_group=grp.getgrnam("audio").gr_gid,
        socket_mode=0o666,
        allow_users=(pwd.getpwnam("nobody").pw_uid, 0),
        allow_groups=(grp.getgrnam("video").gr_gid, 29),
        heartbeat_s=0.25,
        session_timeout_s=0.75,
        ring_slots=4,
        audio_ring_s=1.5,
        shm_budget_bytes=64 * 1024 * 1024,
        fake_devices=True,
        device_allow=("Fake*",),
        device_deny=("*microphone*",),
        idle_close_s=0.5,
        device_scan_s=2.0,
        file_sources=(FileSource(tmp_path / "clip.avi", "Lobby", False),),
        config_path=path,
    )


def test_an_empty_file_means_the_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "")
    assert load_config(path) == BrokerConfig(config_path=path)


@pytest.mark.parametrize(
    ("text", "key", "says"),
    [
        ("run_dir = 'relative/dir'", "run_dir", "absolute path"),
        ("shm_prefix = '../etc/'", "shm_prefix", "segment name prefix"),
        ("log_level = 'loud'", "log_level", "debug, info, warning, error"),
        ("log_level = 3", "log_level", "debug, info"),
        ("[access]\ngroup = 'no-such-group-here'", "access.group", "no group"),
        ("[access]\ngroup = true", "access.group", "group name or a gid"),
        ("[access]\nsocket_mode = 0o777", "access.socket_mode", "read and write bits"),
        ("[access]\nsocket_mode = 0o060", "access.socket_mode", "owner rw-"),
        ("[access]\nsocket_mode = 'rw'", "access.socket_mode", "octal"),
        ("[access]\nallow_users = 'root'", "access.allow_users", "must be a list"),
        ("[access]\nallow_users = ['no-such-user-here']", "access.allow_users", "no user"),
        ("[access]\nallow_groups = [-1]", "access.allow_groups", "item 0"),
        ("[sessions]\nheartbeat_s = 0", "sessions.heartbeat_s", "between 0.05 and 60"),
        ("[sessions]\nheartbeat_s = true", "sessions.heartbeat_s", "a number"),
        ("[rings]\nslots = 1", "rings.slots", "between 2 and 1024"),
        ("[rings]\nslots = 8.5", "rings.slots", "an integer"),
        ("[rings]\naudio_seconds = '2'", "rings.audio_seconds", "a number"),
        ("[rings]\nshm_budget_mib = 0", "rings.shm_budget_mib", "between"),
        ("[devices]\nfake = 'yes'", "devices.fake", "true or false"),
        ("[devices]\nallow = ['']", "devices.allow", "non-empty string"),
        ("[devices]\nidle_close_s = -1", "devices.idle_close_s", "between 0 and 3600"),
        ("[devices]\nscan_interval_s = 0", "devices.scan_interval_s", "between"),
        ("[[devices.files]]\nlabel = 'x'", "devices.files[0]", "needs a path"),
        ("[[devices.files]]\npath = '/'", "devices.files[0].path", "is a directory"),
        ("[[devices.network]]\nlabel = 'x'", "devices.network[0]", "needs a url"),
        ("[[devices.network]]\nurl = 3", "devices.network[0].url", "a URL string"),
        ("[[devices.network]]\nurl = 'cam.local/x'", "devices.network[0].url", "scheme"),
        ("[[devices.network]]\nurl = 'rtsp:///live'", "devices.network[0].url", "no host"),
        ("[[devices.network]]\nurl = 'rtsp://h:99999/'", "devices.network[0].url", "Port out"),
        ("devices.network = 'rtsp://h/'", "devices.network", "array of tables"),
        ("[[devices.files]]\npath = 'clip.avi'\nloop = 1", "devices.files[0].loop", "true"),
        ("devices = 3", "devices", "must be a table"),
    ],
)
def test_a_bad_value_names_the_key_and_the_file(
    tmp_path: Path, text: str, key: str, says: str
) -> None:
    (tmp_path / "clip.avi").write_bytes(b"")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == key and caught.value.path == path
    assert str(caught.value).startswith(f"{path}: {key}: ")
    assert says in str(caught.value)


@pytest.mark.parametrize(
    ("text", "key", "hint"),
    [
        ("rundir = '/x'", "rundir", "'run_dir'"),
        ("[rings]\nslot = 3", "rings.slot", "'rings.slots'"),
        ("[ring]\nslots = 3", "ring", "'rings'"),
        ("[[devices.files]]\npath = 'clip.avi'\nspeed = 2", "devices.files[0].speed", ""),
        ("[[devices.network]]\nurl = 'rtsp://h/'\nlable = 'x'", "devices.network[0].lable", ""),
    ],
)
def test_an_unknown_key_is_refused_with_a_suggestion(
    tmp_path: Path, text: str, key: str, hint: str
) -> None:
    (tmp_path / "clip.avi").write_bytes(b"")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="unknown key") as caught:
        load_config(path)
    assert caught.value.key == key
    assert (
        f"did you mean {hint}?" in str(caught.value) if hint else "known here" in str(caught.value)
    )


def test_network_cameras_are_read_and_their_passwords_never_shown(tmp_path: Path) -> None:
    """A URL with credentials is kept whole for FFmpeg, but its repr and a
    refusal of it show it redacted."""
    text = (
        "[[devices.network]]\nurl = 'rtsp://admin:hunter22@cam.local:8554/live'\n"
        "[[devices.network]]\nurl = 'http://cam2/video.mjpg?password=hunter22'\nlabel = 'Door'\n"
    )
    config = load_config(write(tmp_path, text))
    assert config.network_sources == (
        NetworkSource("rtsp://admin:hunter22@cam.local:8554/live"),
        NetworkSource("http://cam2/video.mjpg?password=hunter22", "Door"),
    )
    assert "hunter22" not in repr(config)
    bad = write(tmp_path, "[[devices.network]]\nurl = 'ftp://admin:hunter22@cam/x'\n", "bad.toml")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert "ftp://admin:***@cam/x" in str(caught.value) and "hunter22" not in str(caught.value)


def test_a_video_file_that_does_not_exist_yet_is_no_mistake(tmp_path: Path) -> None:
    """The daemon offers it once it exists (tests/broker/capture/test_source_problems.py)."""
    config = load_config(write(tmp_path, "[[devices.files]]\npath = 'later.avi'\n"))
    assert config.file_sources == (FileSource(tmp_path / "later.avi"),)


def test_broken_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[rings]\nslots = = 3\n")
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 2") as caught:
        load_config(path)
    assert caught.value.path == path


def test_the_default_file_is_read_only_when_it_exists(tmp_path: Path) -> None:
    default = tmp_path / "etc" / "config.toml"
    assert resolve_config_path(None, default) is None
    assert load_config(default=default).config_path is None
    default.parent.mkdir()
    default.write_text("[rings]\nslots = 3\n")
    assert resolve_config_path(None, default) == default
    assert load_config(default=default).ring_slots == 3
    with pytest.raises(ConfigError, match="no such configuration file"):
        resolve_config_path(tmp_path / "missing.toml", default)


def test_flags_override_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "run_dir = '/from/file'\n[devices]\nidle_close_s = 9\n")
    config = load_config(path, {"run_dir": Path("/from/flag"), "idle_close_s": 0.5})
    assert (config.run_dir, config.idle_close_s) == (Path("/from/flag"), 0.5)


def test_reload_takes_only_what_can_change_at_run_time(tmp_path: Path) -> None:
    running = BrokerConfig(run_dir=Path("/a"), ring_slots=8)
    fresh = BrokerConfig(
        run_dir=Path("/b"),
        ring_slots=4,
        fake_devices=True,
        device_deny=("x",),
        log_level=logging.DEBUG,
    )
    config, pending = reloadable(running, fresh)
    assert (config.run_dir, config.ring_slots) == (Path("/a"), 8)
    assert (config.fake_devices, config.device_deny, config.log_level) == (
        True,
        ("x",),
        logging.DEBUG,
    )
    assert pending == ["run_dir", "rings.slots"]


# -- the daemon ------------------------------------------------------------------


def serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mediabroker", "serve", *args],
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("text", "key"),
    [("[rings]\nslots = 1\n", "rings.slots"), ("[acess]\ngroup = 'audio'\n", "acess")],
)
def test_the_daemon_stops_with_status_2_naming_key_and_file(
    tmp_path: Path, text: str, key: str
) -> None:
    path = write(tmp_path, text)
    result = serve("--config", str(path), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2, result.stderr
    assert f"{path}: {key}: " in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_a_missing_config_file_is_status_2(tmp_path: Path) -> None:
    result = serve("--config", str(tmp_path / "nope.toml"), "--run-dir", str(tmp_path / "run"))
    assert result.returncode == 2 and "no such configuration file" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_daemon_uses_the_file_under_its_flags(tmp_path: Path) -> None:
    """The file's ring slots apply; its run dir and prefix lose to the flags."""
    text = 'run_dir = "/nonexistent/mb"\nshm_prefix = "never."\n[rings]\nslots = 3\n'
    daemon = Daemon(tmp_path / "run", config=text)
    try:
        daemon.wait_ready()
        with MediaDevices(daemon.run_dir) as devices:
            devices.getUserMedia({"video": True}).getVideoTracks()[0].read(timeout=5)
            [segment] = segments(daemon.prefix)
            with Ring.open(segment, shm_dir=SHM_DIR) as ring:
                assert ring.slot_count == 3
        assert daemon.terminate() == 0
        assert_nothing_left(daemon)
    finally:
        daemon.close()


def test_sighup_reloads_devices_and_log_level_and_refuses_a_bad_file(tmp_path: Path) -> None:
    """1. A daemon at log level info (from its file); a client holds a microphone
       track and listens for devicechange.
    2. The file now denies the microphone, sets log level warning and changes
       rings.slots; SIGHUP: systemd hears RELOADING=1 then READY=1, the client
       gets devicechange, its microphone track ends, the device list has only
       the camera, the log says rings.slots needs a restart, and a new client's
       session is no longer logged (info is below warning).
    3. A broken file and SIGHUP: the log names key and file, the daemon keeps
       its configuration and serves on. SIGTERM: status 0, nothing left."""
    daemon = Daemon(tmp_path / "run", config="log_level = 'info'\n", log_level=None)
    try:
        daemon.wait_ready()
        with MediaDevices(daemon.run_dir) as devices:
            changes: list[str] = []
            devices.addEventListener("devicechange", lambda ev: changes.append(ev.type))
            microphone = devices.getUserMedia({"audio": True}).getAudioTracks()[0]
            ended: list[str] = []
            microphone.addEventListener("ended", lambda ev: ended.append(ev.type))

            daemon.config_path.write_text(
                "log_level = 'warning'\n[rings]\nslots = 4\n"
                "[devices]\ndeny = ['Fake microphone*']\n"
            )
            daemon.process.send_signal(signal.SIGHUP)
            daemon.wait_notification("RELOADING=1", 10)
            daemon.wait_notification("READY=1", 10)
            wait_until(
                lambda: changes and ended, 5, "devicechange and ended", lambda: (changes, ended)
            )
            assert [d.kind for d in devices.enumerateDevices()] == ["videoinput"]
            assert "rings.slots changed: restart the daemon" in daemon.log()
            with MediaDevices(daemon.run_dir, name="after-the-reload"):
                pass
            assert "after-the-reload" not in daemon.log()

            daemon.config_path.write_text("[devices]\nfake = 'yes'\n")
            daemon.process.send_signal(signal.SIGHUP)
            wait_until(
                lambda: "reload refused" in daemon.log(), 10, "the refusal in the log", daemon.log
            )
            assert f"{daemon.config_path}: devices.fake: must be true or false" in daemon.log()
            assert [d.kind for d in devices.enumerateDevices()] == ["videoinput"]
        assert daemon.terminate() == 0
        assert_nothing_left(daemon)
        assert "Traceback" not in daemon.log()
    finally:
        daemon.close()


def test_the_web_gateways_keys_are_read(tmp_path: Path) -> None:
    token = "a-token-long-enough-to-mean-it"
    text = f'[web]\nlisten = "[::1]:9000"\ntoken = "{token}"\nmax_viewers = 4\n'
    config = load_config(write(tmp_path, text))
    assert (config.web_listen, config.web_token, config.web_max_viewers) == ("[::1]:9000", token, 4)


@pytest.mark.parametrize(
    ("text", "key", "says"),
    [
        ('[web]\nlisten = "localhost"', "web.listen", "host:port"),
        ('[web]\nlisten = "0.0.0.0:70000"', "web.listen", "host:port"),
        ('[web]\ntoken = "guessable"', "web.token", "at least 16"),
        ("[web]\nmax_viewers = 0", "web.max_viewers", "between 1 and 1000"),
    ],
)
def test_bad_web_keys_name_the_key_and_never_the_token(
    tmp_path: Path, text: str, key: str, says: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert caught.value.key == key and says in str(caught.value)
    assert "guessable" not in str(caught.value)
