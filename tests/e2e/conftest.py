"""End-to-end fixtures: a real bangerd, real helper, real QEMU guests.

Layered like a VM's life: ``banger_env`` (daemon, bridge, helper) ->
``image`` (default kernel and image pulled) -> the tests' own VMs. Teardown
deletes every VM, stops the daemon and helper and removes the bridge, and
keeps the daemon log of a failed run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .leakprobe import processes

BIN = Path(sys.executable).parent
# Overridable so two runs (a developer's and CI's) can share a host.
BRIDGE = os.environ.get("BANGER_E2E_BRIDGE", "bge2e0")
SUBNET = os.environ.get("BANGER_E2E_SUBNET", "10.78.0.0/24")
DNS_PORT = os.environ.get("BANGER_E2E_DNS_PORT", "10054")
# Kernels and images are slow to make and safe to reuse between runs; VMs are not.
ARTIFACTS = Path(os.environ.get("BANGER_E2E_HOME", "/var/tmp/banger-e2e"))


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "end-to-end tests need root (bridge and taps through banger-helper)"
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 is not installed (make deps)"
    if not Path("/dev/net/tun").exists():
        return "/dev/net/tun is missing"
    return None


@dataclass
class Banger:
    env: dict[str, str]
    home: Path
    runtime: Path
    created: list[str] = field(default_factory=list)

    def run(
        self, *args: str, check: bool = False, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "banger"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=check,
        )

    def json(self, *args: str) -> object:
        result = self.run(*args, "--json", check=True)
        return json.loads(result.stdout)

    def create(self, name: str, *extra: str) -> dict[str, object]:
        self.created.append(name)
        self.run("vm", "create", "--name", name, *extra, check=True)
        vm = self.json("vm", "show", name)
        assert isinstance(vm, dict)
        return vm


def _kill_matching(needle: str) -> None:
    for pid, cmdline in processes().items():
        if needle in cmdline and pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def banger_env(tmp_path_factory) -> Banger:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    runtime = tmp_path_factory.mktemp("run")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "BANGER_HOME": str(ARTIFACTS),
        "BANGER_RUNTIME_DIR": str(runtime),
        "BANGER_BRIDGE": BRIDGE,
        "BANGER_SUBNET": SUBNET,
        "BANGER_DNS_PORT": DNS_PORT,
        "BANGER_CONFIG": str(runtime / "no-config.toml"),
        # The tests watch real boots (boot logs, readiness, the image's init);
        # test_warm_start_e2e.py turns warm start on for its own daemon.
        "BANGER_WARM_START": "0",
    }
    banger = Banger(env=env, home=ARTIFACTS, runtime=runtime)
    # A run that crashed may have left VMs in the shared store.
    for vm in banger.json("vm", "list"):  # type: ignore[union-attr]
        banger.run("vm", "delete", vm["name"])  # type: ignore[index]
    yield banger
    for vm in banger.json("vm", "list"):  # type: ignore[union-attr]
        banger.run("vm", "delete", vm["name"])  # type: ignore[index]
    banger.run("daemon", "stop")
    _kill_matching(str(runtime))
    subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
    log = ARTIFACTS / "logs" / "bangerd.log"
    if log.exists():
        shutil.copy(log, runtime / "bangerd.log")


@pytest.fixture(scope="session")
def image(banger_env: Banger) -> str:
    """The default kernel and image, pulled once (and reused across runs while current)."""
    ensure_image(banger_env, "debian-bookworm", "debian-bookworm")
    return "debian-bookworm"


def ensure_image(banger_env: Banger, name: str, ref: str, *pull_args: str) -> None:
    """Image ``name`` made with this banger's guest agent: an artifact directory kept
    from an earlier checkout holds images with its agent, which `image show` calls
    outdated; such an image is made again, as its hint says, so the tests see today's."""
    shown = banger_env.run("image", "show", name, "--json")
    if shown.returncode == 0:
        if not json.loads(shown.stdout)["agent_outdated"]:
            return
        users = [vm["name"] for vm in banger_env.json("vm", "list") if vm["image"] == name]  # type: ignore[union-attr, index]
        if users:
            banger_env.run("vm", "delete", *users, check=True)
        snaps = banger_env.json("vm", "snapshot", "list")
        for snap in [s["name"] for s in snaps if s["image"] == name]:  # type: ignore[union-attr, index]
            banger_env.run("vm", "snapshot", "delete", snap, check=True)
        banger_env.run("image", "delete", name, check=True)
    result = banger_env.run("image", "pull", ref, "--name", name, *pull_args, timeout=1200)
    assert result.returncode == 0, result.stderr


@pytest.fixture
def banger(banger_env: Banger, image: str) -> Banger:
    """The environment with an image; VMs a test creates are deleted after it."""
    # Each test starts with no VM, so one test's leftovers never fail the next.
    leftover = [vm["name"] for vm in banger_env.json("vm", "list")]  # type: ignore[union-attr]
    if leftover:
        banger_env.run("vm", "delete", *leftover)
    banger_env.created = []
    yield banger_env
    for name in banger_env.created:
        banger_env.run("vm", "delete", name)


def wait_gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.1)
    return False
