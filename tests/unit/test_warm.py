"""Warm start below the VMM: the boot key, the decision, the store's kinds, the files.

(Real saves and restores of a boot snapshot: tests/e2e/test_warm_start_e2e.py.)
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

import banger
from banger.api.models import Mount, Snapshot, SnapshotKind, VmCreate
from banger.config import load_settings
from banger.daemon.bootkey import Action, boot_key, decide, describe, is_stale, why_not_warm
from banger.daemon.operations import Progress
from banger.daemon.snapshots import RECORD
from banger.daemon.sweep import sweep
from banger.daemon.vms import CreateRequest
from banger.errors import UserError
from banger.store import Database, Store
from banger.store.migrations import MIGRATIONS
from banger.store.repo import Missing
from tests.unit.fakes import wired_services


class Said(Progress):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def stage(self, stage: str, message: str = "") -> None:
        self.lines.append(message)

    def info(self, message: str) -> None:
        self.lines.append(message)


@pytest.fixture
def services(settings, store, tmp_path):
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k" * 64)
    initrd = tmp_path / "initrd"
    initrd.write_bytes(b"i" * 64)
    rootfs = tmp_path / "root.ext4"
    rootfs.write_bytes(b"\0" * 4096)
    with store.db.transaction() as conn:
        conn.execute("UPDATE images SET rootfs = ?, channel = 1", (str(rootfs),))
        conn.execute("UPDATE kernels SET vmlinuz = ?, initrd = ?", (str(kernel), str(initrd)))
    with wired_services(settings, store, tmp_path) as services:
        yield services


def request(services, **kw: object) -> CreateRequest:
    body = {"vcpus": 1, "memory_mib": 512, "work_disk_size": "1G", **kw}
    return services.vms.validate(VmCreate(**body))  # type: ignore[no-any-return]


def key_of(services, req: CreateRequest, version: str = "fake 1.0"):
    return boot_key(req, services.settings, services.vms.host, version)


def boot_snapshot(services, key, *, created_at: str = "2026-12-01T00:00:00Z") -> Snapshot:
    snap_dir = services.settings.boot_snapshots_dir(key.image) / key.digest
    snap_dir.mkdir(parents=True, exist_ok=True)
    return Snapshot(
        name=key.name, vm="first", image=key.image, kernel="k", vmm="fake", vcpus=1,
        memory_mib=512, overlay_bytes=1 << 30, work_disk_bytes=1 << 30, size_bytes=1,
        dir=str(snap_dir), created_at=created_at, kernel_path="/k/v", initrd_path="/k/i",
        rootfs=services.store.get_image(key.image).rootfs, cmdline="console=ttyS0",
        mac="02:00:0a:4d:00:02", ip="10.77.0.2", vmm_version="fake 1.0",
        banger_version=banger.__version__, kind=SnapshotKind.BOOT, boot_key=key.text,
    )  # fmt: skip


# the key


def test_the_key_is_the_same_for_any_name_and_address_and_names_the_image(services) -> None:
    one, two = key_of(services, request(services)), key_of(services, request(services))
    assert one.fields == two.fields and one.digest == two.digest
    assert one.name == f"debian-bookworm@boot-{one.digest[:12]}"
    assert one.fields["memory_mib"] == "512" and one.fields["vmm"] == "fake"
    # Neither VM's own name nor its address is part of it.
    assert "warm" in one.fields["cmdline"]


def test_the_key_changes_with_memory_vcpus_disks_and_the_kernel_file(services, tmp_path) -> None:
    base = key_of(services, request(services)).fields
    for change, field in (
        ({"memory_mib": 640}, "memory_mib"),
        ({"vcpus": 2}, "vcpus"),
        ({"work_disk_size": "2G"}, "work_disk_bytes"),
        ({"system_overlay_size": "1G"}, "overlay_bytes"),
    ):
        other = key_of(services, request(services, **change)).fields
        assert {k for k in base if base[k] != other[k]} == {field}, change
    kernel = tmp_path / "vmlinuz"
    stat = kernel.stat()
    os.utime(kernel, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = key_of(services, request(services)).fields
    assert {k for k in base if base[k] != after[k]} == {"kernel_file"}
    newer_qemu = key_of(services, request(services), "fake 2.0").fields
    assert {k for k in after if after[k] != newer_qemu[k]} == {"vmm_version"}


def test_what_never_takes_part_in_warm_start(services) -> None:
    req = request(services)
    assert why_not_warm(req, enabled=True, jailed=False) is None
    assert "warm_start" in str(why_not_warm(req, enabled=False, jailed=False))
    assert why_not_warm(request(services, cold=True), enabled=True, jailed=False) == "--cold"
    no_start = request(services, no_start=True)
    assert why_not_warm(no_start, enabled=True, jailed=False) == "--no-start"
    # A boot snapshot is saved once init has finished: a --wait-boot create may restore it.
    assert why_not_warm(request(services, wait_boot=True), enabled=True, jailed=False) is None
    mounted = req.vm.model_copy(update={"mounts": [Mount(host_dir="/s", guest_dir="/s", tag="m")]})
    shared = CreateRequest(vm=mounted, sources=req.sources, no_start=False)
    assert "--mount" in str(why_not_warm(shared, enabled=True, jailed=False))
    assert "jailed" in str(why_not_warm(req, enabled=True, jailed=True))
    agentless = req.sources.image.model_copy(update={"channel": 0})
    bare = CreateRequest(vm=req.vm, sources=req.sources.__class__(
        image=agentless, kernel=req.sources.kernel, own_initrd=False), no_start=False)  # fmt: skip
    assert "no banger agent" in str(why_not_warm(bare, enabled=True, jailed=False))


# the decision


def test_decide_restores_an_equal_key_saves_otherwise_and_boots_while_one_is_saved(
    services,
) -> None:
    key = key_of(services, request(services))
    assert decide(key, [], saving=False).action == Action.SAVE
    assert decide(key, [], saving=False).changed == []
    snap = boot_snapshot(services, key)
    restore = decide(key, [snap], saving=False)
    assert restore.action == Action.RESTORE and restore.snapshot == snap
    assert decide(key, [snap], saving=True).action == Action.BOOT

    bigger = key_of(services, request(services, memory_mib=1024))
    other = decide(bigger, [snap], saving=False)
    assert other.action == Action.SAVE
    assert other.changed == ["memory 512 MiB -> 1024 MiB"]
    assert other.stale == []  # another shape stays beside it


def test_a_boot_snapshot_of_another_kernel_agent_or_vmm_version_is_stale() -> None:
    new = {"image": "i", "kernel_file": "/k 2 2", "agent_build": "a", "vmm": "qemu",
           "vmm_version": "7.2", "memory_mib": "512"}  # fmt: skip
    assert not is_stale(dict(new), new)
    assert not is_stale({**new, "memory_mib": "1024"}, new)
    assert is_stale({**new, "kernel_file": "/k 1 1"}, new)
    assert is_stale({**new, "agent_build": "old"}, new)
    assert is_stale({**new, "vmm_version": "7.1"}, new)
    assert not is_stale({**new, "vmm": "firecracker", "vmm_version": "1.7"}, new)
    assert not is_stale({**new, "image": "other", "kernel_file": "x"}, new)
    assert describe({**new, "kernel_file": "/k 1 1"}, new) == ["the kernel file"]


# the store


def test_the_store_keeps_boot_snapshots_apart_from_users(services) -> None:
    store = services.store
    key = key_of(services, request(services))
    older = boot_snapshot(services, key, created_at="2026-01-01T00:00:00Z")
    store.add_snapshot(older)
    user = older.model_copy(update={"name": "dev-1", "kind": SnapshotKind.USER, "boot_key": ""})
    store.add_snapshot(user)
    newer = older.model_copy(update={"name": "debian-bookworm@boot-x", "created_at": "2026-06"})
    store.add_snapshot(newer)
    assert store.list_snapshots() == [user]
    assert store.snapshots_of_image("debian-bookworm") == ["dev-1"]
    assert store.boot_snapshots("debian-bookworm") == [newer, older]
    assert store.get_snapshot(key.name, SnapshotKind.BOOT) == older
    with pytest.raises(Missing, match="no snapshot named"):
        store.get_snapshot(key.name)  # `vm snapshot show` never finds one


def test_a_store_of_schema_7_gains_snapshot_kinds_and_the_vms_boot_snapshot_flag(tmp_path):
    conn = sqlite3.connect(tmp_path / "s.db")
    conn.execute("PRAGMA foreign_keys=OFF")
    for statement in [s for step in MIGRATIONS[:7] for s in step]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO snapshots VALUES ('dev-1', 'dev', 'img', 'k', 'qemu', 1, 512, 1, 0, 0, 1,"
        " '/s', 't', '/k/v', '/k/i', '/r', 'c', 'm', '10.0.0.2', 'q', '0.1')"
    )
    conn.execute("PRAGMA user_version = 7")
    conn.commit()
    conn.close()
    store = Store(Database(tmp_path / "s.db"))
    assert store.db.schema_version == len(MIGRATIONS) == 8
    [snap] = store.list_snapshots()
    assert (snap.name, snap.kind, snap.boot_key) == ("dev-1", SnapshotKind.USER, "")
    columns = {r["name"] for r in store.db.query("PRAGMA table_info(vms)")}
    assert "boot_snapshot" in columns


# the service


def test_a_damaged_boot_snapshot_is_removed_and_said_once(services) -> None:
    key = key_of(services, request(services))
    snap = boot_snapshot(services, key)  # its directory has no record
    services.store.add_snapshot(snap)
    said = Said()
    assert services.warm._restore(request(services), snap, said) is None
    [line] = [line for line in said.lines if "boot snapshot" in line]
    assert "could not be restored" in line and "is damaged" in line and "booting instead" in line
    assert services.store.boot_snapshots("debian-bookworm") == []
    assert not Path(snap.dir).exists()
    assert services.store.list_vms() == []


def test_a_save_leaves_its_files_under_their_final_name_or_nothing(services, monkeypatch):
    key = key_of(services, request(services))
    boot_dir = services.settings.boot_snapshots_dir(key.image)

    def save_into(vm, name, snap_dir, progress, *, record_dir=None):
        (snap_dir / "memory").write_bytes(b"m" * 10)
        (snap_dir / RECORD).write_text("{}")
        return boot_snapshot(services, key).model_copy(
            update={"dir": str(record_dir), "kind": SnapshotKind.USER, "boot_key": ""}
        )

    monkeypatch.setattr(services.snapshots, "save_into", save_into)
    monkeypatch.setattr(services.vms, "show", lambda name: request(services).vm)
    vm = request(services).vm
    snap = services.warm._save(vm, key, Said())
    assert snap.kind == SnapshotKind.BOOT and snap.boot_key == key.text
    assert [p.name for p in boot_dir.iterdir()] == [key.digest]
    assert (boot_dir / key.digest / "memory").read_bytes() == b"m" * 10
    assert services.store.boot_snapshots(key.image) == [snap]

    # A row that cannot be written (it exists): no hidden directory stays behind.
    with pytest.raises(Exception, match="already exists"):
        services.warm._save(vm, key, Said())
    assert [p.name for p in boot_dir.iterdir()] == [key.digest]


def test_image_delete_removes_its_boot_snapshots_and_cache_prune_keeps_them(services) -> None:
    key = key_of(services, request(services))
    snap = boot_snapshot(services, key)
    services.store.add_snapshot(snap)
    services.images.prune_cache(dry_run=False)
    assert services.store.boot_snapshots("debian-bookworm") == [snap]
    assert Path(snap.dir).is_dir()
    services.images.delete("debian-bookworm")
    assert services.store.boot_snapshots("debian-bookworm") == []
    assert not services.settings.boot_snapshots_dir("debian-bookworm").parent.exists()


def test_sweep_removes_a_boot_snapshot_that_was_being_saved(settings) -> None:
    boot_dir = settings.boot_snapshots_dir("debian-bookworm")
    partial, kept = boot_dir / ".abc.1234", boot_dir / "abc"
    partial.mkdir(parents=True)
    kept.mkdir()
    sweep(settings, [], image_names=["debian-bookworm"])
    assert not partial.exists() and kept.is_dir()


def test_the_warm_start_setting(monkeypatch) -> None:
    monkeypatch.setenv("BANGER_CONFIG", "/nonexistent/config.toml")
    assert load_settings().warm_start is True
    monkeypatch.setenv("BANGER_WARM_START", "0")
    assert load_settings().warm_start is False
    monkeypatch.setenv("BANGER_WARM_START", "maybe")
    with pytest.raises(UserError, match="warm_start must be true or false"):
        load_settings()


def test_image_show_and_vm_show_say_it_in_words() -> None:
    from datetime import UTC, datetime

    from banger.cli import render

    now = datetime(2026, 12, 1, tzinfo=UTC)
    key = {"vcpus": "1", "memory_mib": "512", "overlay_bytes": str(4 << 30),
           "work_disk_bytes": str(1 << 30), "vmm": "qemu"}  # fmt: skip
    image = {"name": "debian-bookworm", "channel": 1, "boot_snapshots": [
        {"name": "debian-bookworm@boot-abc", "key": key, "size_bytes": 95 << 20,
         "created_at": "2026-11-30T00:00:00Z", "dir": "/d"}]}  # fmt: skip
    lines = dict(render.image_fields(image, now))
    assert lines["boot snapshot"].startswith(
        "1 vCPU, 512 MiB, overlay 4.0 GiB, work disk 1.0 GiB, qemu: 95.0 MiB, made"
    )
    assert lines["boot snapshot"].endswith("(debian-bookworm@boot-abc)")
    none_yet = dict(render.image_fields({"name": "i", "channel": 1}, now))
    assert "the next create saves one" in none_yet["boot snapshots"]
    vm = {"name": "w", "image": "debian-bookworm", "snapshot": "debian-bookworm@boot-abc",
          "boot_snapshot": True}  # fmt: skip
    assert dict(render.vm_fields(vm, now))["restored from"] == (
        "image debian-bookworm's boot snapshot, debian-bookworm@boot-abc (warm start)"
    )
