"""What `daemon stop` and `reset` leave on the host: only what running VMs still need."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from .conftest import BIN, BRIDGE, Banger
from .leakprobe import argvs

pytestmark = pytest.mark.e2e


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


def helpers_serving(socket: Path) -> list[int]:
    return [
        pid
        for pid, argv in argvs().items()
        if any(arg.endswith(b"banger-helper") for arg in argv[:2]) and str(socket).encode() in argv
    ]


@pytest.mark.slow  # boots and stops a VM around two daemon stops
def test_daemon_stop_keeps_the_bridge_for_a_running_vm_and_removes_it_after(banger: Banger):
    helper_socket = banger.runtime / "helper.sock"
    banger.create("e2e-td")
    assert helpers_serving(helper_socket)
    stop = banger.run("daemon", "stop")
    assert stop.returncode == 0, stop.stderr
    # The VM outlives the daemon, so its bridge stays; the helper this daemon started goes.
    assert link_exists(BRIDGE)
    assert helpers_serving(helper_socket) == []
    assert banger.run("vm", "ssh", "e2e-td", "--", "true").returncode == 0

    assert banger.run("vm", "delete", "e2e-td").returncode == 0
    banger.created.remove("e2e-td")
    assert banger.run("daemon", "stop").returncode == 0
    assert not link_exists(BRIDGE)
    assert helpers_serving(helper_socket) == []
    assert not (banger.runtime / "helper.pid").exists()


@pytest.fixture
def scratch_env() -> dict[str, str]:
    if os.geteuid() != 0:
        pytest.skip("the helper needs root")
    base = Path(tempfile.mkdtemp(prefix="bgr", dir="/tmp"))  # short: socket paths
    return {
        **os.environ,
        "BANGER_HOME": str(base / "home"),
        "BANGER_RUNTIME_DIR": str(base / "run"),
        "BANGER_BRIDGE": "bge2rst",
        "BANGER_SUBNET": "10.79.0.0/24",
        "BANGER_DNS_PORT": "10059",
        "BANGER_CONFIG": str(base / "none.toml"),
    }


def banger_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "banger"), *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )


def test_reset_asks_then_removes_state_daemon_and_helper(scratch_env: dict[str, str]):
    home = Path(scratch_env["BANGER_HOME"])
    runtime = Path(scratch_env["BANGER_RUNTIME_DIR"])
    assert banger_cli(scratch_env, "kernel", "list").returncode == 0  # starts bangerd
    assert home.is_dir() and helpers_serving(runtime / "helper.sock")

    refused = banger_cli(scratch_env, "reset")
    assert refused.returncode != 0
    assert "no terminal to ask on" in refused.stderr and "--force" in refused.stderr
    assert home.is_dir()

    done = banger_cli(scratch_env, "reset", "--force")
    assert done.returncode == 0, done.stderr
    assert f"in {home}" in done.stdout
    assert not home.exists() and not runtime.exists()
    assert helpers_serving(runtime / "helper.sock") == []
    assert banger_cli(scratch_env, "daemon", "status").returncode == 1
    again = banger_cli(scratch_env, "reset", "--force")
    assert again.returncode == 0 and "nothing to remove" in again.stdout
