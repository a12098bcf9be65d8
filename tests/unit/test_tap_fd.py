"""A tap's descriptor from banger-helper to the VMM, for a daemon that cannot open /dev/net/tun.

The helper passes it over its socket (SCM_RIGHTS); QEMU inherits it and is
told `-netdev tap,fd=N`. The real ioctl on a real tap runs in
tests/e2e/test_unprivileged_e2e.py.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger.errors import Conflict
from banger.helper import iplink, tap
from banger.helper.iplink import Link
from banger.helper.main import serve
from banger.helper.validate import Policy
from banger.helper_client.client import HelperClient
from banger.vmm.base import NetSpec
from banger.vmm.qemu import QemuVmm
from tests.unit.test_qemu import config

OWNER = 4242 if os.geteuid() == 0 else os.getuid()


@pytest.fixture
def helper(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Policy, list[int]]]:
    """A real helper whose taps are pipes: what it passes is what the test reads back."""
    pipes: list[int] = []

    def fake_open(name: str) -> int:
        read_end, write_end = os.pipe()
        pipes.append(read_end)
        return write_end

    taps = {"bgt1": Link("bgt1", "tap", "bg0", True, str(OWNER), ())}
    monkeypatch.setattr(tap, "open_tap", fake_open)
    monkeypatch.setattr(iplink, "get", lambda name: taps.get(name))
    base = Path(tempfile.mkdtemp(prefix="bgfd", dir="/tmp"))
    path = base / "helper.sock"
    policy = Policy.create(OWNER, [])
    stop = threading.Event()
    thread = threading.Thread(target=serve, args=(path, policy, stop))
    thread.start()
    deadline = time.monotonic() + 5
    while not path.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    try:
        yield path, policy, pipes
    finally:
        stop.set()
        thread.join(5)
        for fd in pipes:
            os.close(fd)
        shutil.rmtree(base, ignore_errors=True)


def test_the_tap_descriptor_crosses_the_socket(helper: tuple[Path, Policy, list[int]]) -> None:
    path, policy, pipes = helper
    policy.ledger.record("link", "bgt1", OWNER)
    fd = HelperClient(path).open_tap("bgt1")
    try:
        os.write(fd, b"frame")
    finally:
        os.close(fd)
    assert os.read(pipes[0], 16) == b"frame"


def test_a_tap_this_helper_did_not_make_is_not_opened(
    helper: tuple[Path, Policy, list[int]],
) -> None:
    path, _policy, pipes = helper
    with pytest.raises(Conflict, match="was not made by this banger-helper"):
        HelperClient(path).open_tap("bgt1")
    assert pipes == []  # the helper never opened anything


def test_qemu_is_told_the_descriptor_instead_of_the_name(tmp_path: Path) -> None:
    cfg = config(tmp_path, net=NetSpec(tap="bgtap1", mac="52:54:00:12:34:56", tap_fd=7))
    argv = QemuVmm().argv(cfg)
    assert argv[argv.index("-netdev") + 1] == "tap,id=net0,fd=7"
    assert "ifname=" not in " ".join(argv)


FAKE_QEMU = """#!/bin/bash
# Records what its descriptor FAKE_FD is, then fails (the launch itself is not the point).
readlink /proc/$$/fd/$FAKE_FD > "$FAKE_LOG" 2>&1
exit 1
"""


def test_qemu_inherits_the_descriptor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import banger.proc

    bindir = tmp_path / "bin"
    bindir.mkdir()
    binary = bindir / "qemu-system-x86_64"
    binary.write_text(FAKE_QEMU)
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    read_end, write_end = os.pipe()
    monkeypatch.setattr(banger.proc, "clean_env", lambda extra=None: dict(os.environ))
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "fd.log"))
    monkeypatch.setenv("FAKE_FD", str(write_end))
    cfg = config(tmp_path, net=NetSpec(tap="bgtap1", mac="52:54:00:12:34:56", tap_fd=write_end))
    try:
        with pytest.raises(Exception, match="QEMU failed"):
            QemuVmm().launch(cfg)
    finally:
        os.close(read_end)
        os.close(write_end)
    assert (tmp_path / "fd.log").read_text().startswith("pipe:")
