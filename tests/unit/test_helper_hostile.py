"""Hostile peers and hostile directories against the helper's socket server.

Regression tests for the security review of issue 10: the chown race on the
socket path, symlinked socket directories, forged log lines, deep JSON,
too many connections and slow-loris peers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger.helper import server as wire
from banger.helper.errors import HostError
from banger.helper.main import serve
from banger.helper.validate import Policy
from banger.helper_client.client import HelperClient

IS_ROOT = os.geteuid() == 0
OWNER = 4242 if IS_ROOT else os.getuid()


@pytest.fixture
def sockdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bgx", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wire, "IDLE_TIMEOUT", 1.0)
    monkeypatch.setattr(wire, "LINE_TIMEOUT", 0.5)
    monkeypatch.setattr(wire, "MAX_CONNECTIONS", 4)


@pytest.fixture
def helper(sockdir: Path, quick: None) -> Iterator[Path]:
    path = sockdir / "helper.sock"
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(path, Policy.create(OWNER, []), stop))
    thread.start()
    deadline = time.monotonic() + 5
    while not path.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    HelperClient(path).ping()
    try:
        yield path
    finally:
        stop.set()
        thread.join(5)


RACER = """
import os, stat, sys
path, victim, spare = sys.argv[1:4]
swaps = 0
while not os.path.exists(victim + ".stop"):
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            try:
                os.unlink(spare)
            except FileNotFoundError:
                pass
            os.symlink(victim, spare)
            os.rename(spare, path)
            swaps += 1
    except OSError:
        pass
print(swaps)
"""


@pytest.mark.skipif(not IS_ROOT, reason="the race only matters when the helper is root")
def test_a_symlink_swapped_in_during_bind_never_gets_chowned(sockdir: Path) -> None:
    # The reviewed code chowned and chmodded the socket by path after bind();
    # a process swapping the socket for a symlink to a root file in between
    # got the file handed to the owner (3 wins in 8 tries). Race it hard,
    # from another process, as an attacker would.
    victim = sockdir / "shadow"
    victim.write_text("secret")
    victim.chmod(0o640)
    path = sockdir / "helper.sock"
    racer = subprocess.Popen(
        [sys.executable, "-c", RACER, str(path), str(victim), str(sockdir / "spare")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            try:
                server = wire.bind(path, Policy.create(OWNER, []))
            except (HostError, OSError):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                continue
            server.server_close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        Path(f"{victim}.stop").touch()
        swaps = int(racer.communicate(timeout=10)[0])
    assert swaps > 0, "the race never ran"
    st = victim.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o640)
    assert not [p for p in sockdir.iterdir() if p.name.startswith(".helper.sock.")]


def test_a_symlinked_socket_directory_is_refused(sockdir: Path) -> None:
    real = sockdir / "real"
    real.mkdir()
    (sockdir / "link").symlink_to(real)
    with pytest.raises(HostError, match="it is a symlink"):
        wire.bind(sockdir / "link" / "helper.sock", Policy.create(OWNER, []))
    assert list(real.iterdir()) == []


def test_the_socket_appears_with_its_mode_and_owner_at_once(sockdir: Path) -> None:
    server = wire.bind(sockdir / "helper.sock", Policy.create(OWNER, []))
    try:
        st = (sockdir / "helper.sock").lstat()
        assert (st.st_uid, st.st_mode & 0o777) == (OWNER, 0o600)
        assert [p.name for p in sockdir.iterdir()] == ["helper.sock"]
    finally:
        server.server_close()


def test_a_verb_with_a_newline_cannot_forge_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="banger.helper")
    line = json.dumps({"verb": "ping\n2026-01-01 INFO banger.helper: uid=0 forged -> ok"})
    reply = wire.respond(Policy.create(OWNER, []), line.encode(), 1000, 77)
    assert reply["ok"] is False
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert "\n" not in messages[0]
    assert messages[0].startswith("uid=1000 pid=77 ")


def test_deep_json_is_refused_as_a_request_error() -> None:
    reply = wire.respond(Policy.create(OWNER, []), b"[" * 200_000 + b"\n", 1000)
    assert reply["ok"] is False
    assert reply["error"]["code"] == "invalid"


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(path))
    return sock


def test_connections_past_the_cap_are_told_to_retry(helper: Path) -> None:
    baseline = threading.active_count()
    idle = [_connect(helper) for _ in range(4)]
    time.sleep(0.2)
    for _ in range(20):
        _connect(helper).close()
    extra = _connect(helper)
    reply = json.loads(extra.makefile("rb").readline())
    assert "too many connections" in reply["error"]["message"]
    threads = threading.active_count()
    for sock in idle:
        # Idle connections are closed after IDLE_TIMEOUT: the helper hangs up.
        assert sock.recv(1) == b""
        sock.close()
    extra.close()
    # One thread per held connection (4), none for the 21 refused ones.
    assert threads - baseline <= 4
    assert HelperClient(helper).ping()["owner_uid"] == OWNER


def test_a_slow_loris_peer_is_cut_off(helper: Path) -> None:
    sock = _connect(helper)
    started = time.monotonic()
    closed = False
    try:
        for _ in range(40):
            sock.sendall(b" ")
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        closed = True
    else:
        sock.settimeout(2)
        closed = sock.recv(1) == b""
    sock.close()
    assert closed
    assert time.monotonic() - started < 4.5
