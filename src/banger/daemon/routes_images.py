"""API routes for kernels and images."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from banger.api.models import (
    Image,
    ImagePromote,
    ImagePull,
    ImageRegister,
    Kernel,
    KernelImport,
    KernelPull,
    Operation,
)
from banger.daemon.images import ImageService
from banger.daemon.kernels import KernelService
from banger.daemon.operations import Operations, dump
from banger.store import Store


def artifact_routes(
    store: Store, kernels: KernelService, images: ImageService, ops: Operations
) -> APIRouter:
    router = APIRouter()

    @router.get("/kernels")
    async def list_kernels() -> list[Kernel]:
        return store.list_kernels()

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

    @router.get("/images")
    async def list_images() -> list[Image]:
        return store.list_images()

    @router.get("/images/{name}")
    async def show_image(name: str) -> Image:
        return store.get_image(name)

    @router.post("/images/pull", status_code=202)
    async def pull_image(req: ImagePull) -> Operation:
        checked = await asyncio.to_thread(images.check_pull, req)
        return ops.start(
            "image.pull", checked.name or req.ref, lambda p: dump(images.pull(checked, p))
        )

    @router.post("/images/promote", status_code=202)
    async def promote_image(req: ImagePromote) -> Operation:
        await asyncio.to_thread(images.check_promote, req)
        return ops.start("image.promote", req.name, lambda p: dump(images.promote(req, p)))

    @router.post("/images/register")
    async def register_image(req: ImageRegister) -> Image:
        return await asyncio.to_thread(images.register, req)

    @router.delete("/images/{name}")
    async def delete_image(name: str) -> Image:
        return await asyncio.to_thread(images.delete, name)

    @router.post("/images/cache/prune")
    async def prune_cache(dry_run: bool = False) -> dict[str, str]:
        return {"message": await asyncio.to_thread(images.prune_cache, dry_run)}

    return router
