"""API routes for images: the catalog, pulls, registration, promotion, the blob cache."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from banger.api.models import (
    CachePrune,
    CatalogEntry,
    Image,
    ImagePromote,
    ImagePull,
    ImageRegister,
    Operation,
)
from banger.daemon.images import ImageService, with_agent_state
from banger.daemon.operations import Operations, dump
from banger.daemon.warm import boot_view
from banger.store import Store


def image_routes(store: Store, images: ImageService, ops: Operations) -> APIRouter:
    router = APIRouter(tags=["images"])

    @router.get("/images")
    async def list_images() -> list[Image]:
        return [with_agent_state(image) for image in store.list_images()]

    # Before /images/{name}, which would otherwise take "catalog" for a name.
    @router.get("/images/catalog")
    async def image_catalog() -> list[CatalogEntry]:
        """The images `image pull` knows by name."""
        from banger.image import catalog

        return [CatalogEntry(name=e.name, description=e.description) for e in catalog.entries()]

    @router.get("/images/{name}")
    async def show_image(name: str) -> Image:
        image = with_agent_state(store.get_image(name))
        boots = [boot_view(snap) for snap in store.boot_snapshots(image.name)]
        return image.model_copy(update={"boot_snapshots": boots})

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
    async def prune_cache(dry_run: bool = False) -> CachePrune:
        return CachePrune(message=await asyncio.to_thread(images.prune_cache, dry_run))

    return router
