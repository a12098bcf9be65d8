"""API route for the names of VMs, images and kernels alone: what a tab completes.

``GET /vms`` refreshes every VM's state and sends every field; a tab needs
only the names, and asks on every press, so it gets them straight from the
store, in the order the full listing has them.
"""

from __future__ import annotations

from fastapi import APIRouter

from banger.api.models import Names
from banger.store import Store
from banger.store.repo import RecordKind


def name_routes(store: Store) -> APIRouter:
    router = APIRouter(tags=["system"])

    @router.get("/names/{kind}")
    async def names(kind: RecordKind) -> Names:
        """The names of every VM, image or kernel, as `GET /{kind}` lists them."""
        return Names(names=store.names(kind))

    return router
