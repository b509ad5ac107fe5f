"""``systemd/install`` (`mediabroker.install`) into a scratch root (``--root``):
every file it writes, with its contents, mode and owner; the unit verified
and rated by systemd-analyze; its ExecStart program runs; ``--uninstall``
leaves the root as it was.

Installs take the real path: the system ``python3`` runs the installer
(standard library only, as on a machine where nothing is installed yet),
makes the venv and pip-installs ./client and . with their dependencies
(from the index pip is configured with, PyPI by default: about 15 s here).
Needs root (it adds a user and chowns the run dir), systemd's tools and the
system Python's venv module: skips without them, fails when ``CI=true``.
Nothing here runs the daemon: without systemd as PID 1 the unit cannot run.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_systemd_units import (  # the unit checks, shared with the shipped units
    SYSTEM_UNIT_MAX_EXPOSURE,
    _tool,
    _verify,
    exposure,
)

from mediabroker.install import Installer
from mediabroker.install_root import systemd_runs
from support import REPO

pytestmark = pytest.mark.timeout(600)  # two real installs, on 2 shared cores

INSTALL = REPO / "systemd" / "install"
SYSTEM_PYTHON = Path("/usr/bin/python3")
INSTALL_TIMEOUT_S = 540.0
SYSTEMD = REPO / "systemd"
# What the tools that edit passwd-style files leave besides them (backups).
TOOL_BACKUPS = {"etc/passwd-", "etc/group-", "etc/shadow-", "etc/gshadow-"}
USER_DATABASE = {"etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"}
EXEC_START = "/opt/mediabroker/bin/mediabroker"

Entry = tuple[str, int, int, int, str]  # type, mode, uid, gid, content digest or link
Snapshot = dict[str, Entry]


def _require(condition: bool, reason: str) -> None:
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)


def _requirements() -> None:
    _require(os.geteuid() == 0, "the install needs root (a user, chown of the run dir)")
    _require(SYSTEM_PYTHON.exists(), f"{SYSTEM_PYTHON} is missing")
    venv_module = subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import ensurepip, venv"], capture_output=True, check=False
    )
    _require(venv_module.returncode == 0, "python3-venv is not installed")
    for name in ("systemd-sysusers", "systemd-tmpfiles", "userdel"):
        _tool(name)


def make_image(root: Path) -> Path:
    """A root as a fresh Debian has it, as far as the install cares: the user
    database (with groups audio and video) and /run."""
    etc = root / "etc"
    etc.mkdir(parents=True)
    files = {
        "passwd": ("root:x:0:0:root:/root:/bin/bash\n", 0o644),
        "group": ("root:x:0:\naudio:x:29:\nvideo:x:44:\n", 0o644),
        "shadow": ("root:*:19700:0:99999:7:::\n", 0o640),
        "gshadow": ("root:*::\naudio:*::\nvideo:*::\n", 0o640),
        ".pwd.lock": ("", 0o600),
    }
    for name, (text, mode) in files.items():
        (etc / name).write_text(text)
        (etc / name).chmod(mode)
    (root / "run").mkdir(mode=0o755)
    return root


def snapshot(root: Path) -> Snapshot:
    """Every path under ``root``: type, mode, owner and content (or link)."""
    found: Snapshot = {}
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(directory) / name
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                what = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                what = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                what = ""
            kind = "l" if stat.S_ISLNK(st.st_mode) else "d" if stat.S_ISDIR(st.st_mode) else "f"
            relative = str(path.relative_to(root))
            if relative not in TOOL_BACKUPS:
                found[relative] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, what)
    return found


def install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``systemd/install --root ROOT ARGS`` with the system python3, in
    an environment without this test run's venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return subprocess.run(
        [str(SYSTEM_PYTHON), str(INSTALL), "--root", str(root), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=INSTALL_TIMEOUT_S,
        check=False,
    )


def passwd_entry(root: Path, name: str, database: str = "passwd") -> list[str]:
    lines = (root / "etc" / database).read_text().splitlines()
    return next(line.split(":") for line in lines if line.split(":")[0] == name)


@dataclass
class Installed:
    root: Path
    before: Snapshot
    after: Snapshot
    output: str


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    """One real install into a scratch root, for the checks that only look."""
    _requirements()
    root = make_image(tmp_path_factory.mktemp("image") / "root")
    before = snapshot(root)
    result = install(root)
    assert result.returncode == 0, result.stdout + result.stderr
    yield Installed(root, before, snapshot(root), result.stdout)


def test_the_install_says_what_it_did(installed: Installed) -> None:
    said = installed.output.splitlines()
    names = (
        "mediastream, mediabroker"
        if (REPO / "client" / "pyproject.toml").exists()
        else ("mediabroker")
    )
    for line in [
        "made the venv /opt/mediabroker (from /usr/bin/python3)",
        f"installed {names} into /opt/mediabroker",
        "wrote /etc/systemd/system/mediabroker.service",
        "wrote /etc/sysusers.d/mediabroker.conf",
        "wrote /etc/tmpfiles.d/mediabroker.conf",
        "made /etc/mediabroker (config.toml there is optional)",
        f"linked /usr/local/bin/mediabroker -> {EXEC_START}",
        "made /run/mediabroker for clients to find the system daemon",
        "--root: systemctl not run; in the image: systemctl enable mediabroker.service",
    ]:
        assert line in said, installed.output
    uid, gid = passwd_entry(installed.root, "mediabroker")[2:4]
    assert f"user and group mediabroker (uid {uid}, gid {gid}), also in audio video" in said


def test_it_writes_these_files_and_no_others(installed: Installed) -> None:
    """Outside the venv: the three systemd files (as shipped, 0644 root),
    the directories they needed (0755 root), the command link and the run
    dir (0750, the service user's); the user database gains entries."""
    before, after = installed.before, installed.after
    new = {path for path in after.keys() - before.keys() if not path.startswith("opt/mediabroker/")}
    files = {
        "etc/systemd/system/mediabroker.service": SYSTEMD / "mediabroker.service",
        "etc/sysusers.d/mediabroker.conf": SYSTEMD / "sysusers.d" / "mediabroker.conf",
        "etc/tmpfiles.d/mediabroker.conf": SYSTEMD / "tmpfiles.d" / "mediabroker.conf",
    }
    dirs = {
        "etc/systemd", "etc/systemd/system", "etc/sysusers.d", "etc/tmpfiles.d",
        "etc/mediabroker", "opt", "opt/mediabroker", "usr", "usr/local", "usr/local/bin",
    }  # fmt: skip
    assert new == {*files, *dirs, "usr/local/bin/mediabroker", "run/mediabroker"}
    for path, source in files.items():
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        assert after[path] == ("f", 0o644, 0, 0, digest), path
    for path in dirs:
        assert after[path] == ("d", 0o755, 0, 0, ""), path
    assert after["usr/local/bin/mediabroker"][::4] == ("l", EXEC_START)
    uid, gid = (int(n) for n in passwd_entry(installed.root, "mediabroker")[2:4])
    assert after["run/mediabroker"] == ("d", 0o750, uid, gid, "")
    changed = {path for path in before if before[path] != after[path]}
    assert changed == USER_DATABASE


def test_the_user_database_gains_the_service_user_and_nothing_else(installed: Installed) -> None:
    root = installed.root
    user = passwd_entry(root, "mediabroker")
    assert user[4:] == [
        "mediabroker camera and microphone broker",
        "/nonexistent",
        "/usr/sbin/nologin",
    ]
    assert 0 < int(user[2]) < 1000 and user[3] == passwd_entry(root, "mediabroker", "group")[2]
    assert passwd_entry(root, "mediabroker", "shadow")[1].startswith("!"), "no password login"
    for group in ("audio", "video"):
        assert passwd_entry(root, group, "group")[3] == "mediabroker"
    passwd = (root / "etc" / "passwd").read_text().splitlines()
    assert passwd == ["root:x:0:0:root:/root:/bin/bash", ":".join(user)]
    for name in ("shadow", "gshadow"):
        assert installed.after[f"etc/{name}"][1:4] == (0o640, 0, 0), "modes kept"


def test_the_venv_is_roots_and_readable_by_the_service_user(installed: Installed) -> None:
    venv = {p: e for p, e in installed.after.items() if p.startswith("opt/mediabroker")}
    assert len(venv) > 100
    for path, (kind, mode, uid, gid, _) in venv.items():
        assert (uid, gid) == (0, 0), path
        if kind == "l":
            continue
        assert mode & 0o022 == 0, f"{path} {mode:o}: writable by others than root"
        assert mode & 0o004, f"{path} {mode:o}: the service user cannot read it"
        if kind == "d":
            assert mode & 0o001, f"{path} {mode:o}: the service user cannot enter it"
    manifest = installed.root / "opt" / "mediabroker" / "install-manifest.json"
    assert "/etc/systemd/system/mediabroker.service" in manifest.read_text()


def test_the_exec_start_program_exists_in_the_image_and_runs(installed: Installed) -> None:
    """The unit's ExecStart is the venv's mediabroker, whose script names the
    venv's python by its path in the image; run with that python it works
    (the venv lives in the scratch root, so its path differs here)."""
    unit = (installed.root / "etc/systemd/system/mediabroker.service").read_text()
    [exec_start] = re.findall(r"^ExecStart=(.*)$", unit, re.MULTILINE)
    assert exec_start == f"{EXEC_START} serve"
    program = installed.root / EXEC_START.lstrip("/")
    assert os.access(program, os.X_OK)
    assert program.read_text().splitlines()[0] == "#!/opt/mediabroker/bin/python"
    python = installed.root / "opt/mediabroker/bin/python"
    result = subprocess.run(
        [str(python), str(program), "serve", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "--fake-devices" in result.stdout, result.stderr
    where = subprocess.run(
        [str(python), "-c", "import mediabroker, mediastream; print(mediabroker.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    assert where.stdout.startswith(str(installed.root / "opt/mediabroker/lib")), where.stdout


def test_the_installed_unit_verifies_and_rates_ok(installed: Installed, tmp_path: Path) -> None:
    """systemd-analyze verify on the installed unit, with ExecStart pointed at
    the program in the scratch root (verify checks it is executable), and
    systemd-analyze security on it inside the root."""
    unit = installed.root / "etc/systemd/system/mediabroker.service"
    mapped = unit.read_text().replace(
        f"ExecStart={EXEC_START}", f"ExecStart={installed.root}{EXEC_START}"
    )
    copy = tmp_path / "units" / unit.name
    copy.parent.mkdir()
    copy.write_text(mapped)
    assert _verify(copy, user=False, tmp_path=tmp_path) == []
    score = exposure(Path(unit.name), tmp_path, root=installed.root)
    assert score <= SYSTEM_UNIT_MAX_EXPOSURE


def test_uninstall_leaves_the_root_as_it_was(tmp_path: Path) -> None:
    """1. Install into a fresh root, then again (an upgrade: the venv is
       reused, the files rewritten, the user kept with its uid).
    2. --uninstall: everything the install made is gone, the user and group
       stay (and it says so): only the user database differs.
    3. --uninstall --purge: the user and group go too; the root is exactly
       as it was. A further --uninstall has nothing to do."""
    _requirements()
    root = make_image(tmp_path / "root")
    before = snapshot(root)
    first = install(root)
    assert first.returncode == 0, first.stdout + first.stderr
    uid = passwd_entry(root, "mediabroker")[2]
    again = install(root)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "reusing the venv /opt/mediabroker" in again.stdout
    assert passwd_entry(root, "mediabroker")[2] == uid
    installed = snapshot(root)

    removed = install(root, "--uninstall")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "kept user and group mediabroker (--purge removes them)" in removed.stdout
    for line in (
        "removed /etc/systemd/system/mediabroker.service",
        "removed the venv /opt/mediabroker",
    ):
        assert line in removed.stdout.splitlines()
    after = snapshot(root)
    assert {p for p in after.keys() | before.keys() if after.get(p) != before.get(p)} == (
        USER_DATABASE
    )
    assert {p: after[p] for p in USER_DATABASE} == {p: installed[p] for p in USER_DATABASE}

    purged = install(root, "--uninstall", "--purge")
    assert purged.returncode == 0, purged.stdout + purged.stderr
    assert "removed user mediabroker" in purged.stdout.splitlines()
    assert snapshot(root) == before
    nothing = install(root, "--uninstall")
    assert nothing.returncode == 0 and "removed" not in nothing.stdout, nothing.stdout


def test_a_missing_venv_module_is_named_and_nothing_is_written(tmp_path: Path) -> None:
    """A python3 without ensurepip (Debian without python3-venv) and
    --no-apt: exit 1, the package named, the root untouched."""
    _requirements()
    fake = tmp_path / "python3"
    fake.write_text(  # answers the version question, fails `import ensurepip, venv`
        '#!/bin/sh\ncase "$2" in *version_info*) echo 3 11; exit 0;; esac\nexit 1\n'
    )
    fake.chmod(0o755)
    root = make_image(tmp_path / "root")
    before = snapshot(root)
    result = install(root, "--python", str(fake), "--no-apt")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "apt-get install python3-venv" in result.stderr
    assert "Traceback" not in result.stderr
    assert snapshot(root) == before


def test_it_refuses_to_run_without_root(tmp_path: Path) -> None:
    _requirements()
    root = make_image(tmp_path / "root")
    result = subprocess.run(
        [str(SYSTEM_PYTHON), str(INSTALL), "--root", str(root)],
        capture_output=True,
        text=True,
        user=65534,
        check=False,
    )
    assert result.returncode == 1 and "run it as root" in result.stderr, result.stderr


def test_purge_goes_with_uninstall() -> None:
    result = subprocess.run(
        [str(SYSTEM_PYTHON), str(INSTALL), "--purge"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2 and "--purge goes with --uninstall" in result.stderr


def test_without_systemd_as_pid1_it_says_what_to_run() -> None:
    if systemd_runs():
        pytest.skip("systemd runs here: this would enable the service for real")
    out = io.StringIO()
    Installer(Path("/"), out)._start_unit()
    said = out.getvalue()
    assert said.startswith("systemd is not running here (PID 1 is "), said
    assert "systemctl daemon-reload && systemctl enable --now mediabroker.service" in said


def test_the_mediabroker_command_has_it(capsys: pytest.CaptureFixture[str]) -> None:
    from mediabroker.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["install-service", "--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--uninstall", "--purge", "--root DIR", "--source PATH", "--no-apt"):
        assert option in help_text
