"""Snapshots below the VMM: their records, the checks before a restore, the refusal of
VMs without the agent, and the reconcile of a restore cut short. (Real saves and
restores: test_qmp, test_fc_snapshot and tests/e2e/test_snapshot_e2e.py.)"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

import banger
from banger.api.models import Snapshot, VmCreate, VmState
from banger.daemon.operations import Progress
from banger.daemon.reconcile import reconcile
from banger.daemon.routes_snapshots import fork_names
from banger.daemon.snapshots import RECORD, _write_record, check_compatible, check_snapshot_name
from banger.errors import UserError
from banger.store.repo import Missing, Taken
from tests.unit.fakes import wired_services


@pytest.fixture
def services(settings, store, tmp_path):
    rootfs = tmp_path / "root.ext4"
    rootfs.write_bytes(b"\0" * 4096)
    with store.db.transaction() as conn:
        # An image with banger's agent: restored VMs get their identity through it.
        conn.execute("UPDATE images SET rootfs = ?, channel = 1", (str(rootfs),))
    with wired_services(settings, store, tmp_path) as services:
        yield services


def snapshot(tmp_path: Path, **kw: object) -> Snapshot:
    snap_dir = tmp_path / "snaps" / "s1"
    snap_dir.mkdir(parents=True, exist_ok=True)
    fields: dict[str, object] = {
        "name": "dev-1", "vm": "dev", "image": "debian-bookworm", "kernel": "k",
        "vmm": "fake", "vcpus": 1, "memory_mib": 512, "overlay_bytes": 1 << 30,
        "work_disk_bytes": 0, "size_bytes": 1, "dir": str(snap_dir), "created_at": "t",
        "kernel_path": "/k/v", "initrd_path": "/k/i", "rootfs": str(tmp_path / "root.ext4"),
        "cmdline": "console=ttyS0", "mac": "02:00:0a:4d:00:02", "ip": "10.77.0.2",
        "vmm_version": "fake 1.0", "banger_version": banger.__version__,
    }  # fmt: skip
    fields.update(kw)
    return Snapshot(**fields)  # type: ignore[arg-type]


def test_the_store_keeps_snapshots_by_name(store, tmp_path: Path) -> None:
    snap = snapshot(tmp_path)
    store.add_snapshot(snap)
    assert store.get_snapshot("dev-1") == snap
    assert store.list_snapshots() == [snap]
    assert store.snapshots_of_image("debian-bookworm") == ["dev-1"]
    with pytest.raises(Taken, match="a snapshot named 'dev-1' already exists"):
        store.add_snapshot(snap)
    store.delete_snapshot("dev-1")
    with pytest.raises(Missing, match="no snapshot named 'dev-1'"):
        store.get_snapshot("dev-1")


def test_a_snapshot_name_is_checked() -> None:
    assert check_snapshot_name("before-upgrade-2") == "before-upgrade-2"
    for bad in ("Has-Caps", "-dash", "a" * 49, "sp ace", ""):
        with pytest.raises(UserError, match="not a valid snapshot name"):
            check_snapshot_name(bad)


def test_fork_names_skip_those_taken() -> None:
    assert fork_names("dev", 2, {"dev-fork-1"}) == ["dev-fork-2", "dev-fork-3"]


def _files(snap: Snapshot, memory: bytes = b"m" * 1000) -> Path:
    snap_dir = Path(snap.dir)
    (snap_dir / "memory").write_bytes(memory)
    (snap_dir / "overlay.ext4").write_bytes(b"\0" * 4096)
    _write_record(snap, snap_dir)
    return snap_dir


def test_compatible_snapshot_passes(services, tmp_path: Path) -> None:
    snap = snapshot(tmp_path)
    _files(snap)
    check_compatible(snap, services.vms)
    record = json.loads((Path(snap.dir) / RECORD).read_text())
    assert record["files"]["memory"] == 1000 and record["snapshot"]["name"] == "dev-1"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"banger_version": "0.0.1"}, "made by banger 0.0.1; this is banger"),
        ({"vmm_version": "fake 0.9"}, "made under 'fake 0.9'; this host runs 'fake 1.0'"),
        ({"rootfs": "/elsewhere.ext4"}, "image 'debian-bookworm' changed since snapshot"),
    ],
)
def test_another_banger_vmm_or_image_is_refused(
    services, tmp_path: Path, change: dict[str, str], message: str
) -> None:
    snap = snapshot(tmp_path, **change)
    _files(snap)
    with pytest.raises(UserError, match=message) as info:
        check_compatible(snap, services.vms)
    assert info.value.hint and "banger vm" in info.value.hint


def test_a_truncated_or_missing_file_is_refused_before_anything_starts(
    services, tmp_path: Path
) -> None:
    snap = snapshot(tmp_path)
    snap_dir = _files(snap)
    (snap_dir / "memory").write_bytes(b"m" * 10)
    with pytest.raises(UserError, match=r"memory is 10 bytes, not 1000 \(truncated\?\)") as info:
        check_compatible(snap, services.vms)
    assert info.value.hint == "delete it with `banger vm snapshot delete dev-1`"
    (snap_dir / "memory").unlink()
    with pytest.raises(UserError, match="memory is missing"):
        check_compatible(snap, services.vms)


def test_a_snapshot_needs_a_running_vm(services) -> None:
    vms = services.vms
    req = vms.validate(VmCreate(name="idle", no_start=True, system_overlay_size="64M"))
    vms.net.lease(req.vm, services.store)
    services.store.set_vm_state(req.vm.id, VmState.STOPPED)
    with pytest.raises(UserError, match="'idle' is stopped: a snapshot is taken of a running VM"):
        services.snapshots.check_create("idle", None)


def test_a_vm_without_the_agent_is_neither_snapshotted_nor_forked(services, tmp_path) -> None:
    """Its restored copies could not be given their own identity and entropy."""
    vms, store = services.vms, services.store
    req = vms.validate(VmCreate(name="plain", no_start=True, system_overlay_size="64M"))
    vms.net.lease(req.vm, store)
    store.set_vm_state(req.vm.id, VmState.RUNNING)
    with store.db.transaction() as conn:
        conn.execute("UPDATE images SET channel = 0")
    with pytest.raises(UserError, match="'plain' has no banger agent") as info:
        services.snapshots.check_create("plain", None)
    assert "banger image show debian-bookworm" in (info.value.hint or "")
    snap = snapshot(tmp_path)
    _files(snap)
    with pytest.raises(UserError, match="of an image without banger's agent"):
        check_compatible(snap, vms)
    assert store.list_snapshots() == []


def test_a_restore_refuses_flags_the_snapshot_fixes(services, tmp_path: Path) -> None:
    snap = snapshot(tmp_path)
    _files(snap)
    services.store.add_snapshot(snap)
    with pytest.raises(UserError, match="--vcpus, --memory cannot be combined"):
        services.snapshots.check_restore(VmCreate(from_snapshot="dev-1", vcpus=2, memory_mib=1024))
    checked = services.snapshots.check_restore(VmCreate(from_snapshot="dev-1", name="copy"))
    assert (checked.vm.name, checked.vm.snapshot, checked.vm.memory_mib) == ("copy", "dev-1", 512)
    assert checked.vm.mac != snap.mac and checked.vm.vmm == "fake"


def test_reconcile_removes_a_restore_cut_short_and_keeps_a_boot(services, settings) -> None:
    vms, store = services.vms, services.store
    restored = vms.validate(VmCreate(name="half", system_overlay_size="64M")).vm
    restored = restored.model_copy(update={"snapshot": "dev-1"})
    vms.net.lease(restored, store)
    Path(restored.dir).mkdir(parents=True)
    booting = vms.validate(VmCreate(name="boot", system_overlay_size="64M")).vm
    vms.net.lease(booting, store)
    fixes = reconcile(store, services.vmm, services.net, settings.vms_dir)
    assert "half: removed its unfinished restore from snapshot dev-1" in fixes
    assert [vm.name for vm in store.list_vms()] == ["boot"]
    assert store.get_vm("boot").state == VmState.ERROR
    assert not Path(restored.dir).exists()
    assert services.vmm.get("fake").killed == [Path(restored.dir)]


class Said(Progress):
    """Every line a restore reports, from any thread."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._lock = threading.Lock()

    def stage(self, stage: str, message: str = "") -> None:
        with self._lock:
            self.lines.append(message)

    def info(self, message: str) -> None:
        self.stage("", message)


def _forks(services, tmp_path: Path, names: list[str]) -> list:
    snap = snapshot(tmp_path)
    _files(snap)
    services.store.add_snapshot(snap)
    return [
        services.snapshots.check_restore(VmCreate(from_snapshot="dev-1", name=n)) for n in names
    ]


def test_a_forks_copies_are_restored_side_by_side_each_as_itself(
    services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = _forks(services, tmp_path, ["f-1", "f-2", "f-3"])
    # Each restore waits until all three are in theirs: one after another never gets past.
    together = threading.Barrier(3, timeout=10)

    def restore(one, progress):
        progress.stage("restore", "starting the VMM")
        together.wait()
        return one.vm

    monkeypatch.setattr(services.snapshots, "restore", restore)
    said = Said()
    made = services.snapshots._restore_all(checked, said)
    assert [vm.name for vm in made] == ["f-1", "f-2", "f-3"]
    assert len({vm.mac for vm in made}) == 3 and len({vm.id for vm in made}) == 3
    assert sorted(said.lines) == [f"f-{n}: starting the VMM" for n in (1, 2, 3)]


def test_a_fork_whose_copy_fails_deletes_the_copies_made(
    services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked = _forks(services, tmp_path, ["g-1", "g-2", "g-3"])

    def restore(one, progress):
        if one.vm.name == "g-2":
            raise UserError("g-2 could not be restored", hint="`banger vm list`")
        return one.vm

    deleted: list[str] = []
    monkeypatch.setattr(services.snapshots, "restore", restore)
    monkeypatch.setattr(services.vms, "delete", lambda name, progress: deleted.append(name))
    said = Said()
    with pytest.raises(UserError, match="g-2 could not be restored"):
        services.snapshots._restore_all(checked, said)
    assert sorted(deleted) == sorted(c.vm.id for c in checked if c.vm.name != "g-2")
    assert any("deleting g-1 again" in line for line in said.lines)
