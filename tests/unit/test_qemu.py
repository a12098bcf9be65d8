from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from banger.errors import VmmError
from banger.vmm import choose
from banger.vmm.accel import AccelChoice
from banger.vmm.base import DiskSpec, NetSpec, VmmConfig
from banger.vmm.qemu import QemuVmm


def config(tmp_path: Path, **kw: object) -> VmmConfig:
    args: dict[str, object] = {
        "name": "calm-otter",
        "vcpus": 2,
        "memory_mib": 512,
        "kernel": tmp_path / "vmlinuz",
        "initrd": tmp_path / "initramfs.img",
        "cmdline": "console=ttyS0 banger.ip=10.77.0.5/24",
        "disks": (
            DiskSpec(tmp_path / "root.ext4", "bgroot", read_only=True),
            DiskSpec(tmp_path / "vm" / "overlay.ext4", "bgoverlay"),
        ),
        "net": NetSpec(tap="bgtap1", mac="52:54:00:12:34:56"),
        "run_dir": tmp_path / "vm",
    }
    args.update(kw)
    return VmmConfig(**args)  # type: ignore[arg-type]


def option(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_argv_describes_the_whole_vm(tmp_path: Path) -> None:
    argv = QemuVmm().argv(config(tmp_path))
    assert argv[0] == "qemu-system-x86_64"
    assert option(argv, "-machine") == ["microvm"]
    assert option(argv, "-accel") == ["tcg"] and option(argv, "-cpu") == ["max"]
    assert option(argv, "-smp") == ["2"] and option(argv, "-m") == ["512M"]
    for flag in ("-nodefaults", "-no-user-config", "-nographic", "-no-reboot", "-daemonize"):
        assert flag in argv
    assert option(argv, "-kernel") == [f"{tmp_path}/vmlinuz"]
    assert option(argv, "-initrd") == [f"{tmp_path}/initramfs.img"]
    assert option(argv, "-append") == ["console=ttyS0 banger.ip=10.77.0.5/24"]
    assert option(argv, "-drive") == [
        f"id=disk0,file={tmp_path}/root.ext4,if=none,format=raw,readonly=on",
        f"id=disk1,file={tmp_path}/vm/overlay.ext4,if=none,format=raw",
    ]
    assert option(argv, "-netdev") == ["tap,id=net0,ifname=bgtap1,script=no,downscript=no"]
    assert option(argv, "-device") == [
        "virtio-blk-device,drive=disk0,serial=bgroot",
        "virtio-blk-device,drive=disk1,serial=bgoverlay",
        "virtio-net-device,netdev=net0,mac=52:54:00:12:34:56",
        # The guest agent's channel: a virtio-serial port the agent finds by name.
        "virtio-serial-device,max_ports=2",
        "virtserialport,chardev=agent,name=banger.agent",
    ]
    assert option(argv, "-chardev") == [
        f"file,id=console,path={tmp_path}/vm/console.log",
        f"socket,id=qmp,path={tmp_path}/vm/vmm.sock,server=on,wait=off",
        f"socket,id=agent,path={tmp_path}/vm/agent.sock,server=on,wait=off",
    ]
    assert option(argv, "-serial") == ["chardev:console"]
    assert option(argv, "-pidfile") == [f"{tmp_path}/vm/vmm.pid"]


def test_argv_under_kvm_and_without_network(tmp_path: Path) -> None:
    argv = QemuVmm().argv(config(tmp_path, accel="kvm", net=None))
    assert option(argv, "-accel") == ["kvm"] and option(argv, "-cpu") == ["host"]
    assert "-netdev" not in argv


def test_commas_in_paths_are_escaped(tmp_path: Path) -> None:
    weird = tmp_path / "a,b"
    argv = QemuVmm().argv(config(tmp_path, disks=(DiskSpec(weird / "root.ext4", "bgroot"),)))
    assert option(argv, "-drive") == [f"id=disk0,file={tmp_path}/a,,b/root.ext4,if=none,format=raw"]


def test_unknown_accel_is_refused(tmp_path: Path) -> None:
    with pytest.raises(VmmError, match="hvf"):
        QemuVmm().argv(config(tmp_path, accel="hvf"))


def test_pid_ignores_stale_or_foreign_pidfiles(tmp_path: Path) -> None:
    vmm = QemuVmm()
    run_dir = tmp_path / "vm"
    run_dir.mkdir()
    assert vmm.pid(run_dir) is None
    (run_dir / "vmm.pid").write_text("garbage\n")
    assert vmm.pid(run_dir) is None
    # A live process that is not this VM's QEMU (the test runner itself).
    (run_dir / "vmm.pid").write_text(f"{os.getpid()}\n")
    assert vmm.pid(run_dir) is None
    vmm.kill(run_dir)  # must not signal the stranger, and must tidy up
    assert not (run_dir / "vmm.pid").exists()


FAKE_QEMU = """#!/bin/bash
# Records its argv, then daemonizes the way QEMU does: a child keeps running
# with "qemu" in its argv[0] and this run directory in its arguments.
echo "$@" > "$FAKE_LOG"
if [ -n "$FAKE_FAIL" ]; then
    echo "qemu-system-x86_64: could not open disk image: Permission denied" >&2
    exit 1
fi
while [ $# -gt 0 ]; do [ "$1" = -pidfile ] && pidfile=$2; shift; done
child='sleep 30 & trap "kill $!; exit" TERM; echo $$ > "$0"; wait'
(exec -a qemu-system-x86_64 bash -c "$child" "$pidfile") >/dev/null 2>&1 &
while [ ! -s "$pidfile" ]; do sleep 0.01; done
"""


@pytest.fixture
def fake_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    binary = bindir / "qemu-system-x86_64"
    binary.write_text(FAKE_QEMU)
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(tmp_path / "argv.log"))
    return binary


def test_launch_pid_kill(tmp_path: Path, fake_qemu: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import banger.proc

    monkeypatch.setattr(banger.proc, "clean_env", lambda extra=None: dict(os.environ))
    vmm = QemuVmm()
    cfg = config(tmp_path)
    pid = vmm.launch(cfg)
    assert vmm.pid(cfg.run_dir) == pid
    assert "-daemonize" in (tmp_path / "argv.log").read_text()
    with pytest.raises(VmmError, match="already has a QEMU"):
        vmm.launch(cfg)
    vmm.kill(cfg.run_dir)
    assert vmm.pid(cfg.run_dir) is None
    assert not cfg.pidfile.exists()
    vmm.kill(cfg.run_dir)  # idempotent


def test_launch_failure_quotes_qemu(
    tmp_path: Path, fake_qemu: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import banger.proc

    monkeypatch.setenv("FAKE_FAIL", "1")
    monkeypatch.setattr(banger.proc, "clean_env", lambda extra=None: dict(os.environ))
    with pytest.raises(VmmError, match="could not open disk image"):
        QemuVmm().launch(config(tmp_path))


def test_long_run_dir_is_refused(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 120)
    with pytest.raises(VmmError, match="too long"):
        QemuVmm().launch(config(tmp_path, run_dir=deep))


def test_auto_prefers_firecracker_only_where_kvm_runs_guests() -> None:
    kvm, tcg = AccelChoice("kvm", "/dev/kvm is usable"), AccelChoice("tcg", "PVM")
    assert choose("auto", True, kvm).name == "firecracker"
    fallback = choose("auto", True, tcg)
    assert fallback.name == "qemu" and "needs KVM: PVM" in fallback.reason
    assert choose("auto", False, kvm).name == "qemu"
    assert "not installed" in choose("auto", False, kvm).reason
    assert choose("qemu", True, kvm).name == "qemu"
    assert choose("firecracker", False, tcg).name == "firecracker"
