"""One Firecracker VM through create, stop, start, kill and delete, jailed.

Firecracker and its jailer cannot run on this project's machines, so STAND-INS
(tests/standin) come first on PATH: they serve Firecracker's API (every body
checked against its spec), follow the jailer's layout, and boot the machine
banger configured under QEMU microvm, so the guest side of a
Firecracker-configured VM is exercised too. On a KVM host with the real
binaries, run the same test against them: see README.md ("Firecracker").
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.standin import spec
from tests.standin.install import install

from .conftest import ARTIFACTS, Banger, wait_gone

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(spec.spec_path() is None, reason="no Firecracker API spec"),
]
REAL = os.environ.get("BANGER_E2E_REAL_FIRECRACKER") == "1"


@pytest.fixture
def fc_banger(banger: Banger, tmp_path_factory: pytest.TempPathFactory) -> Banger:
    """The environment with a daemon (and helper) that run the stand-ins."""
    saved = banger.env
    env = dict(saved)
    if not REAL:
        bindir = tmp_path_factory.mktemp("standin-bin")
        firecracker, jailer = install(bindir)
        env.update(
            PATH=f"{bindir}:{saved['PATH']}",
            BANGER_FIRECRACKER=str(firecracker),
            BANGER_JAILER=str(jailer),
        )
    # The daemon and the helper it starts read these at their start.
    banger.run("daemon", "stop", check=True)
    banger.env = env
    yield banger
    for name in banger.created:
        banger.run("vm", "delete", name)
    banger.created = []
    banger.run("daemon", "stop")
    banger.env = saved


def _uid(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid in /proc/{pid}/status")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def ssh(banger: Banger, name: str, command: str) -> str:
    result = banger.run("vm", "ssh", name, "--", "sh", "-c", command)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_a_jailed_firecracker_vm_lives_and_leaves_nothing(fc_banger: Banger) -> None:
    banger = fc_banger
    banger.created.append("e2e-fc")
    created = banger.run("vm", "create", "--name", "e2e-fc", "--vmm", "firecracker",
                         "--vcpus", "1", "--memory", "512", "--work-disk-size", "1G")  # fmt: skip
    assert created.returncode == 0, created.stderr
    # Ready when the guest agent answered through Firecracker's vsock socket
    # (CONNECT 1024 / OK), not by SSH polling.
    assert "e2e-fc's agent answered after" in created.stderr
    assert "ssh: waiting" not in created.stderr
    vm = banger.json("vm", "show", "e2e-fc")
    assert isinstance(vm, dict)
    assert (vm["vmm"], vm["state"]) == ("firecracker", "running")
    vm_id, pid = str(vm["id"]), int(vm["pid"])  # type: ignore[call-overload]
    jail = ARTIFACTS / "jail" / "firecracker" / vm_id
    overlay = Path(str(vm["dir"])) / "overlay.ext4"
    if not REAL:
        # The jail holds the VM's files as hard links, never copies.
        placed = {p.name.split("-", 1)[1]: p for p in (jail / "root").iterdir() if "-" in p.name}
        assert placed["overlay.ext4"].stat().st_ino == overlay.stat().st_ino
        assert placed["rootfs.ext4"].stat().st_nlink >= 2
        cgroups = json.loads((jail / "standin-cgroups.json").read_text())["cgroups"]
        assert cgroups == {"cpu.max": "100000 100000", "memory.max": str((512 + 256) << 20)}
        # The VM runs as its own uid from banger's range, not as root.
        qemu = [c for c in _children(pid) if "qemu" in Path(f"/proc/{c}/cmdline").read_text()]
        assert qemu and 900_000 <= _uid(qemu[0]) < 900_000 + 65_536
        assert overlay.stat().st_uid == _uid(qemu[0])

    # The guest found its disks although none reports banger's serial.
    assert not ssh(banger, "e2e-fc", "cat /sys/block/vda/serial").startswith("bg")
    assert "ext4" in ssh(banger, "e2e-fc", "grep ' /root ' /proc/mounts")
    assert "banger-init: switching root" in banger.run("vm", "logs", "e2e-fc").stdout
    stats = banger.json("vm", "stats", "e2e-fc")
    assert stats["vmm"]["api_server"]["requests"] > 0  # type: ignore[index]

    stop = banger.run("vm", "stop", "--timeout", "10", "e2e-fc")
    assert stop.returncode == 0, stop.stderr
    assert "e2e-fc's agent is powering it off" in stop.stderr
    assert wait_gone(pid) and not jail.exists()
    assert overlay.stat().st_uid == os.getuid()  # lent to the jail, given back
    assert banger.json("vm", "show", "e2e-fc")["state"] == "stopped"  # type: ignore[index]

    start = banger.run("vm", "start", "e2e-fc")
    assert start.returncode == 0, start.stderr
    assert ssh(banger, "e2e-fc", "echo up").strip() == "up"
    pid = int(banger.json("vm", "show", "e2e-fc")["pid"])  # type: ignore[index]

    kill = banger.run("vm", "kill", "e2e-fc")
    assert kill.returncode == 0, kill.stderr
    assert wait_gone(pid) and not jail.exists()

    delete = banger.run("vm", "delete", "e2e-fc")
    assert delete.returncode == 0, delete.stderr
    banger.created.remove("e2e-fc")
    assert not Path(str(vm["dir"])).exists()
    assert banger.run("vm", "show", "e2e-fc").returncode != 0
