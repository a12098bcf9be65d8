"""API routes for kernels: the catalog, pulls, imports."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from banger.api.models import CatalogEntry, Kernel, KernelImport, KernelPull, Operation
from banger.daemon.kernels import KernelService
from banger.daemon.operations import Operations, dump
from banger.store import Store


def kernel_routes(store: Store, kernels: KernelService, ops: Operations) -> APIRouter:
    router = APIRouter(tags=["kernels"])

    @router.get("/kernels")
    async def list_kernels() -> list[Kernel]:
        return store.list_kernels()

    # Before /kernels/{name}, which would otherwise take "catalog" for a name.
    @router.get("/kernels/catalog")
    async def kernel_catalog() -> list[CatalogEntry]:
        """The kernels `kernel pull` knows by name."""
        from banger.kernel import catalog

        return [CatalogEntry(name=e.name, description=e.description) for e in catalog.entries()]

    @router.get("/kernels/{name}")
    async def show_kernel(name: str) -> Kernel:
        return store.get_kernel(name)

    @router.post("/kernels/pull", status_code=202)
    async def pull_kernel(req: KernelPull) -> Operation:
        kernels.check_pull(req.name)
        return ops.start("kernel.pull", req.name, lambda p: dump(kernels.pull(req.name, p)))

    @router.post("/kernels/import", status_code=202)
    async def import_kernel(req: KernelImport) -> Operation:
        await asyncio.to_thread(kernels.check_import, req)
        return ops.start("kernel.import", req.name, lambda p: dump(kernels.import_(req, p)))

    @router.delete("/kernels/{name}")
    async def delete_kernel(name: str) -> Kernel:
        return await asyncio.to_thread(kernels.delete, name)

    return router
