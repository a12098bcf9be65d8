"""The daemon's HTTP/JSON API: thin routes over the services."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from banger import __version__
from banger.api.models import (
    DaemonStatus,
    Operation,
    SshTarget,
    Vm,
    VmCreate,
    VmKill,
    VmPrune,
    VmSet,
    VmStop,
)
from banger.daemon.operations import dump
from banger.daemon.routes_images import artifact_routes
from banger.daemon.runtime import parse_signal
from banger.daemon.services import Services
from banger.errors import BangerError, NotFound


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


def create_app(services: Services, shutdown: asyncio.Event) -> FastAPI:
    app = FastAPI(
        title="bangerd",
        version=__version__,
        description="banger's daemon: disposable microVMs over HTTP/JSON on a unix socket.",
    )
    s = services
    vms, inspector, ops, store = s.vms, s.inspector, s.ops, s.store
    app.include_router(artifact_routes(store, s.kernels, s.images, ops))

    @app.exception_handler(BangerError)
    async def banger_error(_: Request, exc: BangerError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        body = {
            "code": "invalid",
            "message": f"{where or 'request'}: {first.get('msg', 'invalid request')}",
            "hint": "see /openapi.json for the request's shape",
        }
        return JSONResponse(body, status_code=400)

    @app.get("/status")
    async def status() -> DaemonStatus:
        return DaemonStatus(
            version=__version__,
            pid=os.getpid(),
            socket=str(s.settings.socket),
            home=str(s.settings.home),
            uid=s.uid,
            vmm=s.vmm.name,
            vmm_reason=s.vmm.default.reason,
            accel=s.accel.kind,
            accel_reason=s.accel.reason,
        )

    @app.post("/shutdown", status_code=202)
    async def stop_daemon() -> dict[str, str]:
        shutdown.set()
        return {"status": "stopping"}

    # VMs

    @app.get("/vms")
    async def list_vms() -> list[Vm]:
        return await asyncio.to_thread(vms.list_all)

    @app.get("/vms/{name}")
    async def show_vm(name: str) -> Vm:
        return await asyncio.to_thread(vms.show, name)

    @app.post("/vms", status_code=202)
    async def create_vm(req: VmCreate) -> Operation:
        checked = vms.validate(req)
        return ops.start(
            "vm.create",
            checked.vm.name,
            lambda p: dump(vms.create(checked, p)),
        )

    @app.post("/vms/{name}/start", status_code=202)
    async def start_vm(name: str) -> Operation:
        vm = store.get_vm(name)
        return ops.start("vm.start", vm.name, lambda p: dump(vms.start(vm.name, p)))

    @app.post("/vms/{name}/stop", status_code=202)
    async def stop_vm(name: str, req: VmStop) -> Operation:
        vm = store.get_vm(name)
        return ops.start("vm.stop", vm.name, lambda p: dump(vms.stop(vm.name, req.timeout, p)))

    @app.post("/vms/{name}/restart", status_code=202)
    async def restart_vm(name: str, req: VmStop) -> Operation:
        vm = store.get_vm(name)
        return ops.start(
            "vm.restart", vm.name, lambda p: dump(vms.restart(vm.name, req.timeout, p))
        )

    @app.post("/vms/{name}/kill", status_code=202)
    async def kill_vm(name: str, req: VmKill) -> Operation:
        vm = store.get_vm(name)
        parse_signal(req.signal)
        return ops.start("vm.kill", vm.name, lambda p: dump(vms.kill(vm.name, req.signal, p)))

    @app.patch("/vms/{name}", status_code=202)
    async def set_vm(name: str, req: VmSet) -> Operation:
        vm = vms.check_set(name, req)
        return ops.start("vm.set", vm.name, lambda p: dump(vms.set(vm.name, req, p)))

    @app.post("/vms/prune", status_code=202)
    async def prune(req: VmPrune) -> Operation:
        for name in req.names:
            store.get_vm(name)
        return ops.start(
            "vm.prune", ",".join(req.names), lambda p: {"deleted": vms.prune(req.names, p)}
        )

    @app.get("/vms/{name}/stats")
    async def vm_stats(name: str) -> dict[str, Any]:
        return await asyncio.to_thread(inspector.stats, name)

    @app.get("/vms/{name}/ports")
    async def vm_ports(name: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(inspector.ports, name)

    @app.get("/vms/{name}/health")
    async def vm_health(name: str) -> dict[str, Any]:
        return await asyncio.to_thread(inspector.health, name)

    @app.get("/vms/{name}/ping")
    async def vm_ping(name: str) -> dict[str, Any]:
        return await asyncio.to_thread(inspector.ping, name)

    @app.get(
        "/vms/{name}/logs",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/plain": {}}}},
    )
    async def vm_logs(name: str, follow: bool = False) -> StreamingResponse:
        """The serial console; with follow, new output as it comes until the VM stops."""
        path = await asyncio.to_thread(inspector.console_log, name)
        vm = store.get_vm(name)
        return StreamingResponse(
            tail_file(path, follow, lambda: s.vmm.pid(Path(vm.dir)) is not None),
            media_type="text/plain",
        )

    @app.delete("/vms/{name}", status_code=202)
    async def delete_vm(name: str) -> Operation:
        vm = store.get_vm(name)
        return ops.start("vm.delete", vm.name, lambda p: dump(vms.delete(vm.name, p)))

    @app.get("/vms/{name}/ssh")
    async def ssh_target(name: str) -> SshTarget:
        return await asyncio.to_thread(vms.ssh_target, name)

    # operations

    @app.get("/operations")
    async def list_operations() -> list[Operation]:
        return store.list_operations()

    @app.get("/operations/{op_id}")
    async def show_operation(op_id: str) -> Operation:
        return ops.get(op_id)

    @app.get(
        "/operations/{op_id}/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"application/x-ndjson": {}}}},
    )
    async def operation_events(op_id: str) -> StreamingResponse:
        """Progress events as newline-delimited JSON, replayed from the start."""
        run = ops.run_of(op_id)
        if run is None:
            op = ops.get(op_id)  # finished before this daemon started, or unknown
            raise NotFound(
                f"operation {op_id} ({op.state}) has no live event stream",
                hint=f"GET /operations/{op_id} gives its outcome",
            )

        async def lines() -> AsyncIterator[bytes]:
            async for event in run.follow():
                yield event.model_dump_json().encode() + b"\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return app
