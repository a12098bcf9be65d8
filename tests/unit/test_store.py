from __future__ import annotations

import ipaddress
import sqlite3
import threading

import pytest

from banger.api.models import Operation, OpState, Vm, VmState
from banger.errors import Conflict, HostError, NotFound
from banger.net.leases import AddressTaken, lease
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
    ips = [lease(draft(f"v{i}"), store, NET, [GATEWAY]).ip for i in range(5)]
    assert ips == [f"10.77.0.{i}" for i in range(2, 7)]
    with pytest.raises(HostError, match="no free address"):
        lease(draft("full"), store, NET, [GATEWAY])
    # A deleted VM's lease goes with it and is handed out again.
    store.delete_vm(store.get_vm("v0").id)
    assert lease(draft("again"), store, NET, [GATEWAY]).ip == "10.77.0.2"


def test_the_store_refuses_an_address_already_leased(store):
    lease(draft("a"), store, NET, [GATEWAY])
    taken = draft("b").model_copy(update={"ip": "10.77.0.2"})
    with pytest.raises(AddressTaken):
        store.insert_vm(taken)
    assert [vm.name for vm in store.list_vms()] == ["a"]
    assert store.lease_count() == 1


def test_a_lost_race_for_an_address_picks_the_next_one(store):
    class Racing:
        """A second daemon leases the address the first one chose, once."""

        def __init__(self) -> None:
            self.raced = False

        def leased_addresses(self) -> set[str]:
            return store.leased_addresses()

        def insert_vm(self, vm: Vm) -> Vm:
            if not self.raced:
                self.raced = True
                store.insert_vm(draft("other").model_copy(update={"ip": vm.ip}))
            return store.insert_vm(vm)

    assert lease(draft("mine"), Racing(), NET, [GATEWAY]).ip == "10.77.0.3"
    assert store.get_vm("other").ip == "10.77.0.2"


def test_concurrent_creates_get_distinct_addresses(store):
    results: list[str] = []

    def create(i: int) -> None:
        results.append(lease(draft(f"c{i}"), store, NET, [GATEWAY]).ip)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 5


def test_name_collision_is_a_conflict_and_leaves_nothing(store):
    lease(draft("dev", "a1"), store, NET)
    with pytest.raises(Conflict, match="a VM named 'dev' already exists") as err:
        lease(draft("dev", "b2"), store, NET)
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
    lease(draft("kept"), store, NET, [GATEWAY])
    gone = lease(draft("gone"), store, NET, [GATEWAY])
    raw = sqlite3.connect(store.db.path)  # no foreign keys: the lease outlives the row
    with raw:
        raw.execute("DELETE FROM vms WHERE id = ?", (gone.id,))
    assert store.release_orphan_leases() == [gone.ip]
    assert store.lease_count() == 1
    assert store.release_orphan_leases() == []


def test_a_kernel_stored_before_migration_3_gains_an_empty_vmlinux(tmp_path):
    from banger.api.models import Kernel
    from banger.store import Store

    conn = sqlite3.connect(tmp_path / "b.db")
    for statement in [s for step in MIGRATIONS[:2] for s in step]:
        conn.execute(statement)
    conn.execute(
        "INSERT INTO kernels VALUES ('old', '6.1', '/k', '/k/vmlinuz', '/k/initrd', 't', 't')"
    )
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    store = Store(Database(tmp_path / "b.db"))
    assert store.get_kernel("old").vmlinux == ""
    new = Kernel(
        name="new", version="6.1", dir="/n", vmlinuz="/n/vmlinuz", initrd="/n/i",
        source="t", created_at="t", vmlinux="/n/vmlinux",
    )  # fmt: skip
    store.add_kernel(new)
    assert store.get_kernel("new").vmlinux == "/n/vmlinux"


def test_an_image_keeps_the_channel_version_of_its_agent(store):
    from banger.api.models import Image

    image = Image(name="chan", kernel="k", rootfs="/c", size_bytes=1, source="t", created_at="t")
    store.add_image(image.model_copy(update={"channel": 1}))
    assert store.get_image("chan").channel == 1
    assert store.get_image("debian-bookworm").channel == 0  # an image of before: SSH only


def test_names_are_read_without_the_records_in_the_listings_order(store):
    from banger.store.repo import RecordKind

    for name in ("web", "dev"):
        lease(draft(name), store, NET, [GATEWAY])
    assert store.names(RecordKind.VMS) == [vm.name for vm in store.list_vms()] == ["web", "dev"]
    assert store.names(RecordKind.IMAGES) == ["debian-bookworm"]
    assert store.names(RecordKind.KERNELS) == ["k"]
