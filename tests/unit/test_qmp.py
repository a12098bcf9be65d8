"""The QMP client and the QEMU driver's QMP verbs against a real QEMU.

A microvm with no kernel and 32 MiB starts in milliseconds and has real
memory and device state to save, so pause, resume, save, restore and quit
run here as they do for a booted guest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from banger import proc
from banger.errors import VmmError
from banger.vmm.base import VmmConfig
from banger.vmm.qemu import MEMORY_FILE, QemuVmm, _alive
from banger.vmm.qmp import Qmp, QmpError

pytestmark = pytest.mark.skipif(
    proc.which("qemu-system-x86_64") is None, reason="no qemu-system-x86_64"
)


class ToyQemu(QemuVmm):
    """The driver as it is, with a guest that needs no kernel (a seam for argv only)."""

    def argv(self, config: VmmConfig) -> list[str]:
        return [
            self.binary, "-name", config.name, "-machine", "microvm", "-accel", "tcg",
            "-m", f"{config.memory_mib}M", "-nodefaults", "-no-user-config", "-nographic",
            "-chardev", f"socket,id=qmp,path={config.control_socket},server=on,wait=off",
            "-mon", "chardev=qmp,mode=control",
            "-daemonize", "-pidfile", str(config.pidfile),
        ]  # fmt: skip


def config(tmp_path: Path, name: str = "toy") -> VmmConfig:
    run = tmp_path / name
    return VmmConfig(
        name=name,
        vcpus=1,
        memory_mib=32,
        kernel=tmp_path / "none",
        initrd=tmp_path / "none",
        cmdline="",
        disks=(),
        net=None,
        run_dir=run,
    )


@pytest.fixture
def vmm():
    driver = ToyQemu()
    started: list[Path] = []
    original = driver._start

    def tracked(cfg: VmmConfig, extra: list[str]) -> int:
        started.append(cfg.run_dir)
        return original(cfg, extra)

    driver._start = tracked  # type: ignore[method-assign]
    yield driver
    for run_dir in started:
        driver.kill(run_dir)


def test_qmp_negotiates_and_reads_status(vmm: ToyQemu, tmp_path: Path) -> None:
    cfg = config(tmp_path)
    vmm.launch(cfg)
    with Qmp.connect(cfg.control_socket, vm="toy") as qmp:
        assert qmp.greeting["QMP"]["version"]["qemu"]["major"] >= 7
        assert qmp.status() == "running"
        with pytest.raises(QmpError, match="no-such-command"):
            qmp.execute("no-such-command")
        # The session still works after an error.
        assert qmp.execute("query-name") == {"name": "toy"}


def test_pause_and_resume_are_idempotent_and_seen(vmm: ToyQemu, tmp_path: Path) -> None:
    cfg = config(tmp_path)
    vmm.launch(cfg)
    vmm.pause(cfg.run_dir)
    vmm.pause(cfg.run_dir)
    assert vmm.paused(cfg.run_dir)
    with Qmp.connect(cfg.control_socket) as qmp:
        assert qmp.status() == "paused"
    vmm.resume(cfg.run_dir)
    vmm.resume(cfg.run_dir)
    assert not vmm.paused(cfg.run_dir)


def test_kill_quits_over_qmp_and_is_safe_twice(vmm: ToyQemu, tmp_path: Path) -> None:
    cfg = config(tmp_path)
    pid = vmm.launch(cfg)
    vmm.pause(cfg.run_dir)  # a paused VM is killed the same way
    vmm.kill(cfg.run_dir)
    assert not _alive(pid)
    assert vmm.pid(cfg.run_dir) is None
    vmm.kill(cfg.run_dir)
    assert not vmm.paused(cfg.run_dir)


def test_save_then_restore_into_a_new_run_directory(vmm: ToyQemu, tmp_path: Path) -> None:
    source = config(tmp_path, "source")
    vmm.launch(source)
    snap = tmp_path / "snap"
    snap.mkdir()
    vmm.save(source.run_dir, snap)
    assert vmm.paused(source.run_dir)  # the caller copies disks, then resumes
    assert (snap / MEMORY_FILE).stat().st_size > 0
    vmm.resume(source.run_dir)
    assert not vmm.paused(source.run_dir)

    copy = config(tmp_path, "copy")
    pid = vmm.restore(copy, snap)
    assert vmm.pid(copy.run_dir) == pid
    with Qmp.connect(copy.control_socket) as qmp:
        assert qmp.status() == "running"


def test_a_truncated_memory_file_is_refused_and_leaves_no_qemu(
    vmm: ToyQemu, tmp_path: Path
) -> None:
    source = config(tmp_path, "source")
    vmm.launch(source)
    snap = tmp_path / "snap"
    snap.mkdir()
    vmm.save(source.run_dir, snap)
    memory = snap / MEMORY_FILE
    memory.write_bytes(memory.read_bytes()[: memory.stat().st_size // 2])
    copy = config(tmp_path, "copy")
    with pytest.raises(VmmError, match="truncated, damaged"):
        vmm.restore(copy, snap)
    assert vmm.pid(copy.run_dir) is None
    assert vmm.running_under(tmp_path).keys() == {source.run_dir}


def test_a_missing_memory_file_starts_nothing(vmm: ToyQemu, tmp_path: Path) -> None:
    copy = config(tmp_path, "copy")
    with pytest.raises(VmmError, match="cannot be read"):
        vmm.restore(copy, tmp_path / "no-snapshot")
    assert vmm.running_under(tmp_path) == {}


def test_qmp_on_a_missing_socket_says_so(tmp_path: Path) -> None:
    with pytest.raises(VmmError, match="does not answer"):
        Qmp.connect(tmp_path / "vmm.sock", vm="gone")
