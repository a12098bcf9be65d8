"""API routes for snapshots: taking them, listing, deleting, and VMs made from them."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from banger.api.models import Operation, Snapshot, SnapshotCreate, VmFork, VmForked
from banger.daemon.operations import Operations, dump
from banger.daemon.snapshots import SnapshotService
from banger.daemon.sshconfig import SshConfigFiles
from banger.errors import UserError
from banger.store import Store


def snapshot_routes(
    store: Store, snapshots: SnapshotService, ops: Operations, ssh_config: SshConfigFiles
) -> APIRouter:
    router = APIRouter(tags=["snapshots"])

    @router.post("/vms/{name}/snapshots", status_code=202)
    async def create_snapshot(name: str, req: SnapshotCreate) -> Operation:
        """Pause the VM, save its memory and copy its writable disks, then let it run on."""
        vm, snap_name = await asyncio.to_thread(snapshots.check_create, name, req.name)
        return ops.start(
            "vm.snapshot", vm.name, lambda p: dump(snapshots.create(vm.id, snap_name, p))
        )

    @router.get("/snapshots")
    async def list_snapshots() -> list[Snapshot]:
        return await asyncio.to_thread(snapshots.list_all)

    @router.get("/snapshots/{name}")
    async def show_snapshot(name: str) -> Snapshot:
        return await asyncio.to_thread(snapshots.show, name)

    @router.delete("/snapshots/{name}")
    async def delete_snapshot(name: str) -> Snapshot:
        return await asyncio.to_thread(snapshots.delete, name)

    @router.post("/vms/{name}/fork", status_code=202)
    async def fork_vm(name: str, req: VmFork) -> Operation:
        """Snapshot the VM and restore it as COUNT new VMs, each with its own identity."""
        vm, _ = await asyncio.to_thread(snapshots.check_create, name, None)
        names = req.names or fork_names(vm.name, req.count, {v.name for v in store.list_vms()})
        if len(names) != req.count or len(set(names)) != len(names):
            raise UserError(
                f"{req.count} fork(s) need {req.count} distinct names, got {len(names)}",
                hint=f"pass --count {len(names)}, or leave the names out",
            )
        return ops.start(
            "vm.fork",
            vm.name,
            lambda p: dump(
                VmForked(vms=[ssh_config.write(v) for v in snapshots.fork(vm.id, names, p)])
            ),
        )

    return router


def fork_names(base: str, count: int, taken: set[str]) -> list[str]:
    names: list[str] = []
    number = 1
    while len(names) < count:
        name = f"{base[:24]}-fork-{number}"
        if name not in taken:
            names.append(name)
        number += 1
    return names
