"""The runtime directory is trusted only when it is private; pidfiles never follow links.

Regression tests for issue 10's finding 2: a predictable /tmp/banger-$UID
pre-created by another user, a swapped bangerd.sock, a planted pidfile symlink.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from banger import rundir
from banger.api.client import Client, connect
from banger.config import Settings
from banger.daemon.main import bind_socket
from banger.errors import UserError

IS_ROOT = os.geteuid() == 0
OTHER = 4243


def test_a_missing_directory_is_made_private(tmp_path: Path) -> None:
    path = rundir.ensure_private_dir(tmp_path / "a" / "banger-1000")
    assert oct(path.stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize("mode", [0o755, 0o770, 0o701, 0o1777])
def test_a_directory_others_can_reach_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "run"
    path.mkdir()
    path.chmod(mode)
    with pytest.raises(UserError, match="not 0700; banger will not use it") as info:
        rundir.ensure_private_dir(path)
    assert f"rm -r {path}" in (info.value.hint or "")
    assert "BANGER_RUNTIME_DIR" in (info.value.hint or "")
    assert oct(path.stat().st_mode & 0o7777) == oct(mode)  # left as it was


def test_a_symlinked_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir(mode=0o700)
    (tmp_path / "run").symlink_to(real)
    with pytest.raises(UserError, match="is a symlink"):
        rundir.ensure_private_dir(tmp_path / "run")


@pytest.mark.skipif(not IS_ROOT, reason="making a directory another uid owns needs root")
def test_a_directory_another_user_made_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    os.chown(path, OTHER, OTHER)
    with pytest.raises(UserError, match=f"belongs to uid {OTHER}"):
        rundir.ensure_private_dir(path)
    # Unless it is the installed owner's (system mode trusts that uid).
    assert rundir.ensure_private_dir(path, trusted={OTHER}) == path


def test_the_pidfile_replaces_a_planted_symlink_instead_of_writing_through(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    pidfile = tmp_path / "bangerd.pid"
    pidfile.symlink_to(victim)
    rundir.write_pidfile(pidfile, 1234)
    assert victim.read_text() == "precious"
    assert not pidfile.is_symlink() and pidfile.read_text() == "1234\n"
    assert oct(pidfile.stat().st_mode & 0o777) == "0o600"


def test_the_daemon_will_not_bind_in_a_shared_directory(tmp_path: Path) -> None:
    shared = tmp_path / "run"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    with pytest.raises(UserError, match="mode 0777"):
        bind_socket(shared / "bangerd.sock")
    assert list(shared.iterdir()) == []


def test_the_cli_never_talks_to_a_socket_in_a_directory_it_cannot_trust(
    tmp_path: Path,
) -> None:
    # A fake bangerd planted in a world-writable runtime directory: the CLI
    # refuses before connecting, so the fake never sees a request.
    shared = tmp_path / "run"
    shared.mkdir()
    shared.chmod(0o777)
    fake = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fake.bind(str(shared / "bangerd.sock"))
    fake.listen(1)
    fake.settimeout(0.2)
    settings = Settings(home=tmp_path / "home", runtime_dir=shared)
    with pytest.raises(UserError, match="banger will not use it"):
        Client(settings).ping()
    with pytest.raises(UserError, match="banger will not use it"):
        connect(settings)
    with pytest.raises(TimeoutError):
        fake.accept()
    fake.close()


def test_the_cli_refuses_a_planted_runtime_dir_with_a_hint(tmp_path: Path) -> None:
    shared = tmp_path / "run"
    shared.mkdir()
    shared.chmod(0o777)
    env = {
        **os.environ,
        "BANGER_HOME": str(tmp_path / "home"),
        "BANGER_RUNTIME_DIR": str(shared),
    }
    cli = Path(sys.executable).parent / "banger"
    result = subprocess.run([str(cli), "vm", "list"], env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert f"error: runtime directory {shared} has mode 0777" in result.stderr
    assert "banger daemon start" in result.stderr
    assert list(shared.iterdir()) == []


def test_in_system_mode_the_cli_never_starts_a_daemon_of_its_own(tmp_path: Path) -> None:
    from banger.errors import DaemonUnavailable

    run = tmp_path / "run"
    run.mkdir(mode=0o700)
    settings = Settings(mode="system", home=tmp_path / "home", runtime_dir=run)
    with pytest.raises(DaemonUnavailable, match="installed bangerd is not answering") as info:
        connect(settings)
    assert "banger system restart" in (info.value.hint or "")
    assert list(run.iterdir()) == []
