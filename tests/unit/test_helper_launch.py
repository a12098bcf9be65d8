"""Finding the helper, or starting one where banger runs as root."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger import proc
from banger.config import Settings
from banger.errors import HelperError
from banger.helper.main import serve
from banger.helper.validate import Policy
from banger.helper_client import launch


@pytest.fixture
def settings() -> Iterator[Settings]:
    # Short paths: a unix socket path must fit in 107 bytes.
    base = Path(tempfile.mkdtemp(prefix="bgl", dir="/tmp"))
    yield Settings(home=base / "home", runtime_dir=base / "run")
    for child in launch._started:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            child.wait(10)
    launch._started.clear()
    shutil.rmtree(base, ignore_errors=True)


def no_spawn(*args: object, **kwargs: object) -> None:
    raise AssertionError("ensure_helper should not have started a helper")


def test_a_running_helper_is_used_as_is(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = threading.Event()
    path = settings.helper_socket_path
    thread = threading.Thread(target=serve, args=(path, Policy.create(os.getuid(), []), stop))
    thread.start()
    try:
        monkeypatch.setattr(proc, "spawn", no_spawn)
        deadline = 50
        while not path.exists() and deadline:
            threading.Event().wait(0.05)
            deadline -= 1
        client = launch.ensure_helper(settings)
        assert client.socket_path == path
    finally:
        stop.set()
        thread.join(5)


def test_without_root_and_without_a_helper_the_error_says_what_to_run(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launch.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(proc, "spawn", no_spawn)
    with pytest.raises(HelperError, match="banger-helper is not running") as info:
        launch.ensure_helper(settings)
    hint = info.value.hint or ""
    assert "sudo banger-helper" in hint
    assert f"--socket {settings.helper_socket_path}" in hint


def test_the_argv_points_at_the_owner_and_the_home(settings: Settings) -> None:
    argv = launch.helper_argv(settings, 1234)
    assert argv[0].endswith("banger-helper") or argv[1:3] == ["-m", "banger.helper"]
    tail = argv[-8:]
    assert tail == [
        "--socket",
        str(settings.helper_socket_path),
        "--owner-uid",
        "1234",
        "--allowed-dir",
        str(settings.home),
        "--state-dir",
        str(settings.runtime_dir / "helper-state"),
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="bangerd starts the helper itself only as root")
def test_as_root_a_helper_is_started_and_logs(settings: Settings) -> None:
    client = launch.ensure_helper(settings)
    assert client.ping()["owner_uid"] == os.getuid()
    assert len(launch._started) == 1
    # A second daemon (or a restart) finds the same helper instead of starting one.
    assert launch.ensure_helper(settings).ping()
    assert len(launch._started) == 1
    log = (settings.log_dir / "helper.log").read_text()
    assert "serving uid 0" in log
    assert '"ping" {} -> ok' in log


@pytest.mark.skipif(os.geteuid() != 0, reason="bangerd starts the helper itself only as root")
def test_a_helper_that_cannot_start_is_reported_with_its_log(settings: Settings) -> None:
    settings.helper_socket_path.parent.mkdir(parents=True, mode=0o700)
    settings.helper_socket_path.write_text("not a socket")
    with pytest.raises(HelperError, match="exited with code 1 before answering") as info:
        launch.ensure_helper(settings)
    assert "is not a socket" in info.value.message
    assert str(settings.log_dir / "helper.log") in (info.value.hint or "")


@pytest.mark.skipif(os.geteuid() != 0, reason="bangerd starts the helper itself only as root")
def test_the_helper_a_daemon_started_is_stopped_with_it(settings: Settings) -> None:
    client = launch.ensure_helper(settings)
    assert client.ping()
    assert launch.stop_started_helper(settings)
    assert not settings.helper_socket_path.exists() or not launch._answers(client)
    assert not (settings.runtime_dir / "helper.pid").exists()
    assert launch.stop_started_helper(settings) is False  # nothing left to stop


def test_a_helper_this_banger_did_not_start_is_left_running(settings: Settings) -> None:
    stop = threading.Event()
    path = settings.helper_socket_path
    thread = threading.Thread(target=serve, args=(path, Policy.create(os.getuid(), []), stop))
    thread.start()
    try:
        deadline = 50
        while not path.exists() and deadline:
            threading.Event().wait(0.05)
            deadline -= 1
        assert launch.stop_started_helper(settings) is False
        assert launch.HelperClient(path).ping()
    finally:
        stop.set()
        thread.join(5)
