"""Typed queries over the store; the only code that writes SQL rows."""

from __future__ import annotations

import json
import sqlite3
from enum import StrEnum

from banger.api.models import (
    ErrorBody,
    ForwardSource,
    Image,
    Kernel,
    Mount,
    Operation,
    OpState,
    PortForward,
    Snapshot,
    SnapshotKind,
    Vm,
    VmState,
    Workspace,
    WorkspaceRecord,
)
from banger.errors import Conflict, NotFound
from banger.net.leases import AddressTaken
from banger.store.db import Database


def _kernel(row: sqlite3.Row) -> Kernel:
    return Kernel(**dict(row))


def _image(row: sqlite3.Row) -> Image:
    data = dict(row)
    data["config"] = json.loads(data["config"] or "{}")
    return Image(**data)


def _vm(row: sqlite3.Row, forwards: list[PortForward] | None = None) -> Vm:
    data = dict(row)
    data["mounts"] = [Mount(**m) for m in json.loads(data["mounts"] or "[]")]
    return Vm(**data, forwards=forwards or [])


def _forward(row: sqlite3.Row) -> PortForward:
    return PortForward(
        host_ip=row["host_ip"],
        host_port=row["host_port"],
        guest_port=row["guest_port"],
        proto=row["proto"],
        source=ForwardSource.PUBLISHED,
    )


class RecordKind(StrEnum):
    """The records that have names a user types: what `/names/{kind}` answers for."""

    VMS = "vms"
    IMAGES = "images"
    KERNELS = "kernels"


# Each in the order its full listing (list_vms, list_images, list_kernels) uses.
_NAMES = {
    RecordKind.VMS: "SELECT name FROM vms ORDER BY created_at",
    RecordKind.IMAGES: "SELECT name FROM images ORDER BY name",
    RecordKind.KERNELS: "SELECT name FROM kernels ORDER BY name",
}


class PortPublished(Conflict):
    """A host address is published already, by ``vm`` (a VM's name)."""

    def __init__(self, forward: PortForward, vm: str) -> None:
        super().__init__(
            f"host port {forward.host_ip}:{forward.host_port} is already forwarded to VM {vm!r}",
            hint=f"pick another host port, or free it with `banger vm port remove {vm}"
            f" {forward.host_ip}:{forward.host_port}`",
        )
        self.vm = vm


def _operation(row: sqlite3.Row) -> Operation:
    data = dict(row)
    data["error"] = ErrorBody(**json.loads(data["error"])) if data["error"] else None
    data["result"] = json.loads(data["result"]) if data["result"] else None
    return Operation(**data)


class Missing(NotFound):
    """No record of ``kind`` (a VM, an image, a kernel, an operation) is called ``name``.

    The store states the fact; the daemon, which knows the commands, adds the hint.
    """

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"no {kind} named {name!r}")
        self.kind = kind
        self.name = name


class Taken(Conflict):
    """A record of ``kind`` called ``name`` exists already."""

    def __init__(self, kind: str, name: str) -> None:
        article = "an" if kind[0] in "aeiou" else "a"
        super().__init__(f"{article} {kind} named {name!r} already exists")
        self.kind = kind
        self.name = name


def name_taken(name: str) -> Taken:
    return Taken("VM", name)


_VM_SELECT = "SELECT vms.*, leases.ip AS ip FROM vms JOIN leases ON leases.vm_id = vms.id"


class Store:
    def __init__(self, db: Database) -> None:
        self.db = db

    # kernels

    def add_kernel(self, kernel: Kernel) -> None:
        try:
            with self.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO kernels (name, version, dir, vmlinuz, initrd, source, created_at,"
                    " vmlinux) VALUES (:name, :version, :dir, :vmlinuz, :initrd, :source,"
                    " :created_at, :vmlinux)",
                    kernel.model_dump(),
                )
        except sqlite3.IntegrityError as exc:
            raise Taken("kernel", kernel.name) from exc

    def get_kernel(self, name: str) -> Kernel:
        rows = self.db.query("SELECT * FROM kernels WHERE name = ?", (name,))
        if not rows:
            raise Missing("kernel", name)
        return _kernel(rows[0])

    def find_kernel(self, name: str) -> Kernel | None:
        rows = self.db.query("SELECT * FROM kernels WHERE name = ?", (name,))
        return _kernel(rows[0]) if rows else None

    def names(self, kind: RecordKind) -> list[str]:
        """The names of every record of ``kind``, without reading the records."""
        return [str(r["name"]) for r in self.db.query(_NAMES[kind])]

    def list_kernels(self) -> list[Kernel]:
        return [_kernel(r) for r in self.db.query("SELECT * FROM kernels ORDER BY name")]

    def delete_kernel(self, name: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM kernels WHERE name = ?", (name,))

    def images_using_kernel(self, kernel: str) -> list[str]:
        rows = self.db.query("SELECT name FROM images WHERE kernel = ? ORDER BY name", (kernel,))
        return [r[0] for r in rows]

    # images

    def add_image(self, image: Image) -> None:
        try:
            with self.db.transaction() as conn:
                row = image.model_dump()
                row["config"] = json.dumps(image.config)
                conn.execute(
                    "INSERT INTO images (name, kernel, rootfs, size_bytes, source, created_at,"
                    " work_seed, init, config, channel) VALUES (:name, :kernel, :rootfs,"
                    " :size_bytes, :source, :created_at, :work_seed, :init, :config, :channel)",
                    row,
                )
        except sqlite3.IntegrityError as exc:
            raise Taken("image", image.name) from exc

    def get_image(self, name: str) -> Image:
        rows = self.db.query("SELECT * FROM images WHERE name = ?", (name,))
        if not rows:
            raise Missing("image", name)
        return _image(rows[0])

    def find_image(self, name: str) -> Image | None:
        rows = self.db.query("SELECT * FROM images WHERE name = ?", (name,))
        return _image(rows[0]) if rows else None

    def list_images(self) -> list[Image]:
        return [_image(r) for r in self.db.query("SELECT * FROM images ORDER BY name")]

    def delete_image(self, name: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM images WHERE name = ?", (name,))

    # VMs and their address leases

    def leased_addresses(self) -> set[str]:
        return {str(r[0]) for r in self.db.query("SELECT ip FROM leases")}

    def insert_vm(self, vm: Vm) -> Vm:
        """Record a VM and the lease of its address (``vm.ip``, chosen by banger.net) at once.

        The lease table's primary key makes a double lease impossible even if
        two daemons raced on one store: the loser gets AddressTaken.
        """
        row = vm.model_dump(exclude={"ip", "pid", "forwards"})
        row["state"] = str(vm.state)
        row["mounts"] = json.dumps(row["mounts"])
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM vms WHERE name = ?", (vm.name,)).fetchone():
                raise name_taken(vm.name)
            if conn.execute("SELECT 1 FROM leases WHERE ip = ?", (vm.ip,)).fetchone():
                raise AddressTaken(f"address {vm.ip} is already leased")
            conn.execute(
                "INSERT INTO vms (id, name, image, state, vcpus, memory_mib, overlay_bytes,"
                " work_disk_bytes, nat, tap, mac, vmm, dir, created_at, forward_ports, mounts,"
                " snapshot, boot_snapshot) VALUES (:id, :name, :image, :state, :vcpus,"
                " :memory_mib, :overlay_bytes, :work_disk_bytes, :nat, :tap, :mac, :vmm, :dir,"
                " :created_at, :forward_ports, :mounts, :snapshot, :boot_snapshot)",
                row,
            )
            for forward in vm.forwards:
                self._insert_forward(conn, vm.id, forward)
            try:
                conn.execute(
                    "INSERT INTO leases (ip, vm_id, leased_at) VALUES (?, ?, ?)",
                    (vm.ip, vm.id, vm.created_at),
                )
            except sqlite3.IntegrityError as exc:
                raise AddressTaken(f"address {vm.ip} is already leased") from exc
        return vm

    def get_vm(self, name: str) -> Vm:
        rows = self.db.query(f"{_VM_SELECT} WHERE vms.name = ? OR vms.id = ?", (name, name))
        if not rows:
            raise Missing("VM", name)
        return _vm(rows[0], self.forwards_of(rows[0]["id"]))

    def list_vms(self) -> list[Vm]:
        forwards: dict[str, list[PortForward]] = {}
        for row in self.db.query("SELECT * FROM forwards ORDER BY host_port"):
            forwards.setdefault(row["vm_id"], []).append(_forward(row))
        rows = self.db.query(f"{_VM_SELECT} ORDER BY vms.created_at")
        return [_vm(r, forwards.get(r["id"])) for r in rows]

    # published ports

    def _insert_forward(self, conn: sqlite3.Connection, vm_id: str, forward: PortForward) -> None:
        key = (forward.host_ip, forward.host_port, forward.proto)
        holder = conn.execute(
            "SELECT vms.name FROM forwards JOIN vms ON vms.id = forwards.vm_id"
            " WHERE host_ip = ? AND host_port = ? AND proto = ?",
            key,
        ).fetchone()
        if holder:
            raise PortPublished(forward, str(holder[0]))
        conn.execute(
            "INSERT INTO forwards (vm_id, host_ip, host_port, guest_port, proto)"
            " VALUES (?, ?, ?, ?, ?)",
            (vm_id, *key[:2], forward.guest_port, forward.proto),
        )

    def add_forward(self, vm_id: str, forward: PortForward) -> None:
        """Record a published port; PortPublished when a VM has that host address."""
        with self.db.transaction() as conn:
            self._insert_forward(conn, vm_id, forward)

    def remove_forward(self, vm_id: str, forward: PortForward) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "DELETE FROM forwards WHERE vm_id = ? AND host_ip = ? AND host_port = ?"
                " AND proto = ?",
                (vm_id, forward.host_ip, forward.host_port, forward.proto),
            )

    def forwards_of(self, vm_id: str) -> list[PortForward]:
        rows = self.db.query("SELECT * FROM forwards WHERE vm_id = ? ORDER BY host_port", (vm_id,))
        return [_forward(r) for r in rows]

    def forward_holder(self, host_port: int) -> tuple[str, PortForward] | None:
        """The VM (its name) that publishes ``host_port`` on any address, if one does."""
        rows = self.db.query(
            "SELECT forwards.*, vms.name AS vm FROM forwards JOIN vms ON vms.id = forwards.vm_id"
            " WHERE host_port = ?",
            (host_port,),
        )
        return (str(rows[0]["vm"]), _forward(rows[0])) if rows else None

    def set_vm_state(self, vm_id: str, state: VmState) -> None:
        with self.db.transaction() as conn:
            conn.execute("UPDATE vms SET state = ? WHERE id = ?", (str(state), vm_id))

    def update_vm(
        self,
        vm_id: str,
        *,
        vcpus: int | None = None,
        memory_mib: int | None = None,
        work_disk_bytes: int | None = None,
        nat: bool | None = None,
    ) -> None:
        """Change a VM's settings; None leaves a setting as it is."""
        changes = {
            "vcpus": vcpus,
            "memory_mib": memory_mib,
            "work_disk_bytes": work_disk_bytes,
            "nat": nat,
        }
        with self.db.transaction() as conn:
            for column, value in changes.items():
                if value is not None:
                    # column comes from the fixed dict above, never from input
                    conn.execute(f"UPDATE vms SET {column} = ? WHERE id = ?", (value, vm_id))  # noqa: S608

    def delete_vm(self, vm_id: str) -> None:
        """Remove a VM and, by cascade, its lease; no-op when already gone."""
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM vms WHERE id = ?", (vm_id,))

    def vms_using_image(self, image: str) -> list[str]:
        return [r[0] for r in self.db.query("SELECT name FROM vms WHERE image = ?", (image,))]

    def release_orphan_leases(self) -> list[str]:
        """Free addresses leased to VMs that no longer exist; return them."""
        with self.db.transaction() as conn:
            rows = conn.execute(
                "SELECT ip FROM leases WHERE vm_id NOT IN (SELECT id FROM vms)"
            ).fetchall()
            conn.execute("DELETE FROM leases WHERE vm_id NOT IN (SELECT id FROM vms)")
        return [str(r[0]) for r in rows]

    def lease_count(self) -> int:
        return int(self.db.query("SELECT COUNT(*) FROM leases")[0][0])

    # snapshots

    def add_snapshot(self, snap: Snapshot) -> None:
        row = snap.model_dump()
        row["kind"] = str(snap.kind)
        columns = ", ".join(row)
        values = ", ".join(f":{key}" for key in row)
        try:
            with self.db.transaction() as conn:
                # the columns are the model's own field names, never input
                conn.execute(f"INSERT INTO snapshots ({columns}) VALUES ({values})", row)  # noqa: S608
        except sqlite3.IntegrityError as exc:
            raise Taken("snapshot", snap.name) from exc

    def get_snapshot(self, name: str, kind: SnapshotKind = SnapshotKind.USER) -> Snapshot:
        rows = self.db.query(
            "SELECT * FROM snapshots WHERE name = ? AND kind = ?", (name, str(kind))
        )
        if not rows:
            raise Missing("snapshot" if kind == SnapshotKind.USER else "boot snapshot", name)
        return Snapshot(**dict(rows[0]))

    def list_snapshots(self, kind: SnapshotKind = SnapshotKind.USER) -> list[Snapshot]:
        rows = self.db.query(
            "SELECT * FROM snapshots WHERE kind = ? ORDER BY created_at, name", (str(kind),)
        )
        return [Snapshot(**dict(r)) for r in rows]

    def boot_snapshots(self, image: str) -> list[Snapshot]:
        """The image's boot snapshots, newest first."""
        rows = self.db.query(
            "SELECT * FROM snapshots WHERE kind = ? AND image = ? ORDER BY created_at DESC, name",
            (str(SnapshotKind.BOOT), image),
        )
        return [Snapshot(**dict(r)) for r in rows]

    def delete_snapshot(self, name: str) -> None:
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM snapshots WHERE name = ?", (name,))

    def snapshots_of_image(self, image: str) -> list[str]:
        """The users' snapshots of ``image`` (its boot snapshots go with it)."""
        rows = self.db.query(
            "SELECT name FROM snapshots WHERE image = ? AND kind = ? ORDER BY name",
            (image, str(SnapshotKind.USER)),
        )
        return [r[0] for r in rows]

    # workspaces

    def save_workspace(self, vm: Vm, record: WorkspaceRecord, prepared_at: str) -> Workspace:
        """Record (or replace) the workspace prepared in ``vm``; one per VM."""
        row = record.model_dump()
        row.update(vm_id=vm.id, mode=str(record.mode), prepared_at=prepared_at)
        row["include_untracked"] = int(record.include_untracked)
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO workspaces (vm_id, host_path, guest_path, base_commit,"
                " tree, host_head, branch, mode, include_untracked, prepared_at) VALUES (:vm_id,"
                " :host_path, :guest_path, :base_commit, :tree, :host_head, :branch, :mode,"
                " :include_untracked, :prepared_at)",
                row,
            )
        return self.get_workspace(vm)

    def get_workspace(self, vm: Vm) -> Workspace:
        rows = self.db.query("SELECT * FROM workspaces WHERE vm_id = ?", (vm.id,))
        if not rows:
            raise Missing("workspace in VM", vm.name)
        data = dict(rows[0])
        data.pop("vm_id")
        data["include_untracked"] = bool(data["include_untracked"])
        return Workspace(vm=vm.name, **data)

    # operations

    def save_operation(self, op: Operation) -> None:
        row = op.model_dump(exclude={"error", "result"})
        row["state"] = str(op.state)
        row["error"] = op.error.model_dump_json() if op.error else None
        row["result"] = json.dumps(op.result) if op.result is not None else None
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO operations (id, kind, target, state, stage, error, result,"
                " created_at, finished_at) VALUES (:id, :kind, :target, :state, :stage, :error,"
                " :result, :created_at, :finished_at)",
                row,
            )

    def get_operation(self, op_id: str) -> Operation:
        rows = self.db.query("SELECT * FROM operations WHERE id = ?", (op_id,))
        if not rows:
            raise Missing("operation", op_id)
        return _operation(rows[0])

    def list_operations(self, limit: int = 50) -> list[Operation]:
        rows = self.db.query("SELECT * FROM operations ORDER BY created_at DESC LIMIT ?", (limit,))
        return [_operation(r) for r in rows]

    def fail_interrupted_operations(self) -> int:
        """Operations a previous daemon left running can never finish: mark them failed."""
        err = ErrorBody(code="interrupted", message="the daemon stopped during this operation")
        with self.db.transaction() as conn:
            cur = conn.execute(
                "UPDATE operations SET state = ?, error = ? WHERE state = ?",
                (str(OpState.FAILED), err.model_dump_json(), str(OpState.RUNNING)),
            )
            return cur.rowcount
