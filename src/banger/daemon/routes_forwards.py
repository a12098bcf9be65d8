"""API routes for a VM's forwards: the host addresses bangerd relays to it."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from banger.api.models import PortAdd, PortForward
from banger.daemon.forwards import ForwardService
from banger.daemon.vms import VmService
from banger.errors import NotFound
from banger.net.portspec import parse_host_address, parse_publish


def forward_routes(vms: VmService, forwards: ForwardService) -> APIRouter:
    router = APIRouter(tags=["vms"])

    @router.get("/vms/{name}/forwards")
    async def list_forwards(name: str) -> list[PortForward]:
        vm = await asyncio.to_thread(vms.show, name)
        return vm.forwards

    @router.post("/vms/{name}/forwards", status_code=201)
    async def add_forward(name: str, req: PortAdd) -> PortForward:
        forward = parse_publish(req.spec)
        vm = await asyncio.to_thread(vms.store.get_vm, name)

        def publish() -> PortForward:
            # Under the VM's lock: a delete in progress must not race a new forward.
            with vms.locked(vm.name):
                return forwards.publish(vms.store.get_vm(vm.id), forward)

        return await asyncio.to_thread(publish)

    @router.delete("/vms/{name}/forwards/{address}")
    async def remove_forward(name: str, address: str) -> PortForward:
        host_ip, host_port = parse_host_address(address)
        vm = await asyncio.to_thread(vms.store.get_vm, name)
        for forward in vm.forwards:
            if forward.host_port == host_port and host_ip in (None, forward.host_ip):
                await asyncio.to_thread(forwards.unpublish, vm, forward)
                return forward
        shown = ", ".join(f"{f.host_ip}:{f.host_port}" for f in vm.forwards) or "none"
        raise NotFound(
            f"VM {vm.name!r} publishes no host port {address} (it publishes: {shown})",
            hint=f"`banger vm port list {vm.name}` shows its forwards",
        )

    return router
