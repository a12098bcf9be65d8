from __future__ import annotations

import ipaddress
import sqlite3
import threading

import pytest

from banger.api.models import Operation, OpState, Vm, VmState
from banger.errors import Conflict, HostError, NotFound
from banger.store import Database
from banger.store.migrations import MIGRATIONS

NET = ipaddress.IPv4Network("10.77.0.0/29")  # six hosts: .1 - .6
GATEWAY = ipaddress.IPv4Address("10.77.0.1")


def draft(name: str, vm_id: str | None = None) -> Vm:
    vm_id = vm_id or f"id{name}"
    return Vm(
        id=vm_id,
        name=name,
        image="debian-bookworm",
        state=VmState.CREATING,
        vcpus=1,
        memory_mib=256,
        overlay_bytes=1,
        ip="",
        tap=f"bgt{vm_id}",
        mac="02:00:00:00:00:01",
        vmm="qemu",
        dir=f"/vms/{vm_id}",
        created_at="t",
    )


def test_schema_is_migrated_in_wal_mode(tmp_path):
    db = Database(tmp_path / "b.db")
    assert db.schema_version == len(MIGRATIONS)
    assert db.query("PRAGMA journal_mode")[0][0] == "wal"
    tables = {r[0] for r in db.query("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"kernels", "images", "vms", "leases", "operations"} <= tables
    db.close()
    # Reopening applies nothing twice.
    assert Database(tmp_path / "b.db").schema_version == len(MIGRATIONS)


def test_newer_schema_is_refused(tmp_path):
    conn = sqlite3.connect(tmp_path / "b.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(HostError, match="newer"):
        Database(tmp_path / "b.db")


def test_leases_skip_gateway_and_are_never_shared(store):
    ips = [store.create_vm(draft(f"v{i}"), NET, reserved=[GATEWAY]).ip for i in range(5)]
    assert ips == [f"10.77.0.{i}" for i in range(2, 7)]
    with pytest.raises(HostError, match="no free address"):
        store.create_vm(draft("full"), NET, reserved=[GATEWAY])
    # A deleted VM's lease goes with it and is handed out again.
    store.delete_vm(store.get_vm("v0").id)
    assert store.create_vm(draft("again"), NET, reserved=[GATEWAY]).ip == "10.77.0.2"


def test_concurrent_creates_get_distinct_addresses(store):
    results: list[str] = []

    def create(i: int) -> None:
        results.append(store.create_vm(draft(f"c{i}"), NET, reserved=[GATEWAY]).ip)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 5


def test_name_collision_is_a_conflict_and_leaves_nothing(store):
    store.create_vm(draft("dev", "a1"), NET)
    with pytest.raises(Conflict, match="a VM named 'dev' already exists") as err:
        store.create_vm(draft("dev", "b2"), NET)
    # The store states the fact; the daemon, which knows the commands, adds the hint.
    assert (err.value.kind, err.value.name, err.value.hint) == ("VM", "dev", None)
    assert store.lease_count() == 1


def test_missing_things_are_not_found_facts_without_cli_hints(store):
    for lookup, kind in (
        (store.get_vm, "VM"),
        (store.get_image, "image"),
        (store.get_kernel, "kernel"),
        (store.get_operation, "operation"),
    ):
        with pytest.raises(NotFound) as err:
            lookup("nope")
        assert err.value.message == f"no {kind} named 'nope'"
        assert err.value.hint is None


def test_interrupted_operations_are_marked_failed(store):
    op = Operation(id="o1", kind="vm.create", target="x", state=OpState.RUNNING, created_at="t")
    store.save_operation(op)
    assert store.fail_interrupted_operations() == 1
    saved = store.get_operation("o1")
    assert saved.state == OpState.FAILED
    assert saved.error is not None and saved.error.code == "interrupted"


def test_orphan_leases_are_released(store, tmp_path):
    store.create_vm(draft("kept"), NET, reserved=[GATEWAY])
    gone = store.create_vm(draft("gone"), NET, reserved=[GATEWAY])
    raw = sqlite3.connect(store.db.path)  # no foreign keys: the lease outlives the row
    with raw:
        raw.execute("DELETE FROM vms WHERE id = ?", (gone.id,))
    assert store.release_orphan_leases() == [gone.ip]
    assert store.lease_count() == 1
    assert store.release_orphan_leases() == []
