"""API routes for VMs: their lifecycle as operations, and looking into them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from banger.api.models import (
    Operation,
    Port,
    SshTarget,
    Vm,
    VmCreate,
    VmHealth,
    VmKill,
    VmPing,
    VmPrune,
    VmPruned,
    VmSet,
    VmStats,
    VmStop,
)
from banger.daemon.inspect import Inspector
from banger.daemon.operations import Operations, dump
from banger.daemon.runtime import parse_signal
from banger.daemon.snapshots import SnapshotService
from banger.daemon.sshconfig import SshConfigFiles
from banger.daemon.vms import VmService
from banger.daemon.warm import WarmStart
from banger.store import Store
from banger.vmm.base import Vmm


async def tail_file(
    path: Path, follow: bool, alive: Callable[[], bool], chunk: int = 65536
) -> AsyncIterator[bytes]:
    try:
        handle = await asyncio.to_thread(path.open, "rb")
    except FileNotFoundError:
        return
    with handle:
        while True:
            data = await asyncio.to_thread(handle.read, chunk)
            if data:
                yield data
                continue
            if not follow or not alive():
                return
            await asyncio.sleep(0.25)


def vm_routes(
    store: Store,
    vms: VmService,
    inspector: Inspector,
    vmm: Vmm,
    ops: Operations,
    ssh_config: SshConfigFiles,
    snapshots: SnapshotService,
    warm: WarmStart,
) -> APIRouter:
    router = APIRouter(tags=["vms"])
    lifecycle_routes(router, store, vms, ops, ssh_config, snapshots, warm)
    inspect_routes(router, store, vms, inspector, vmm)
    return router


def lifecycle_routes(
    router: APIRouter,
    store: Store,
    vms: VmService,
    ops: Operations,
    ssh_config: SshConfigFiles,
    snapshots: SnapshotService,
    warm: WarmStart,
) -> None:
    @router.get("/vms")
    async def list_vms() -> list[Vm]:
        return await asyncio.to_thread(vms.list_all)

    @router.get("/vms/{name}")
    async def show_vm(name: str) -> Vm:
        return await asyncio.to_thread(vms.show, name)

    @router.post("/vms", status_code=202)
    async def create_vm(req: VmCreate) -> Operation:
        if req.from_snapshot:
            restore = await asyncio.to_thread(snapshots.check_restore, req)
            return ops.start(
                "vm.create",
                restore.vm.name,
                lambda p: dump(ssh_config.write(snapshots.restore(restore, p))),
            )
        checked = vms.validate(req)
        # Its `Host NAME.vm` block goes beside its disks, and with them.
        # Restored from its image's boot snapshot where one fits (warm.py).
        return ops.start(
            "vm.create",
            checked.vm.name,
            lambda p: dump(ssh_config.write(warm.create(checked, p))),
        )

    @router.post("/vms/{name}/start", status_code=202)
    async def start_vm(name: str) -> Operation:
        vm = store.get_vm(name)
        return ops.start("vm.start", vm.name, lambda p: dump(vms.start(vm.name, p)))

    @router.post("/vms/{name}/stop", status_code=202)
    async def stop_vm(name: str, req: VmStop) -> Operation:
        vm = store.get_vm(name)
        return ops.start("vm.stop", vm.name, lambda p: dump(vms.stop(vm.name, req.timeout, p)))

    @router.post("/vms/{name}/restart", status_code=202)
    async def restart_vm(name: str, req: VmStop) -> Operation:
        vm = store.get_vm(name)
        return ops.start(
            "vm.restart", vm.name, lambda p: dump(vms.restart(vm.name, req.timeout, p))
        )

    @router.post("/vms/{name}/kill", status_code=202)
    async def kill_vm(name: str, req: VmKill) -> Operation:
        vm = store.get_vm(name)
        parse_signal(req.signal)
        return ops.start("vm.kill", vm.name, lambda p: dump(vms.kill(vm.name, req.signal, p)))

    @router.post("/vms/{name}/pause", status_code=202)
    async def pause_vm(name: str) -> Operation:
        """Stop the guest's vCPUs; its memory, processes and network stay as they are."""
        vm = store.get_vm(name)
        return ops.start("vm.pause", vm.name, lambda p: dump(vms.pause(vm.name, p)))

    @router.post("/vms/{name}/resume", status_code=202)
    async def resume_vm(name: str) -> Operation:
        vm = store.get_vm(name)
        return ops.start("vm.resume", vm.name, lambda p: dump(vms.resume(vm.name, p)))

    @router.patch("/vms/{name}", status_code=202)
    async def set_vm(name: str, req: VmSet) -> Operation:
        vm = vms.check_set(name, req)
        return ops.start("vm.set", vm.name, lambda p: dump(vms.set(vm.name, req, p)))

    @router.post("/vms/prune", status_code=202)
    async def prune(req: VmPrune) -> Operation:
        for name in req.names:
            store.get_vm(name)
        return ops.start(
            "vm.prune",
            ",".join(req.names),
            lambda p: dump(VmPruned(deleted=vms.prune(req.names, p))),
        )

    @router.delete("/vms/{name}", status_code=202)
    async def delete_vm(name: str) -> Operation:
        vm = store.get_vm(name)
        return ops.start("vm.delete", vm.name, lambda p: dump(vms.delete(vm.name, p)))


def inspect_routes(
    router: APIRouter, store: Store, vms: VmService, inspector: Inspector, vmm: Vmm
) -> None:
    @router.get("/vms/{name}/stats")
    async def vm_stats(name: str) -> VmStats:
        return await asyncio.to_thread(inspector.stats, name)

    @router.get("/vms/{name}/ports")
    async def vm_ports(name: str) -> list[Port]:
        return await asyncio.to_thread(inspector.ports, name)

    @router.get("/vms/{name}/health")
    async def vm_health(name: str) -> VmHealth:
        return await asyncio.to_thread(inspector.health, name)

    @router.get("/vms/{name}/ping")
    async def vm_ping(name: str) -> VmPing:
        return await asyncio.to_thread(inspector.ping, name)

    @router.get(
        "/vms/{name}/logs",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def vm_logs(name: str, follow: bool = False) -> StreamingResponse:
        """The serial console; with follow, new output as it comes until the VM stops."""
        path = await asyncio.to_thread(inspector.console_log, name)
        vm = store.get_vm(name)
        return StreamingResponse(
            tail_file(path, follow, lambda: vmm.pid(Path(vm.dir)) is not None),
            media_type="text/plain",
        )

    @router.get("/vms/{name}/ssh")
    async def ssh_target(name: str) -> SshTarget:
        return await asyncio.to_thread(vms.ssh_target, name)
