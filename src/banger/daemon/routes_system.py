"""API routes for the daemon itself: its status, and stopping it."""

from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter

from banger import __version__
from banger.api.models import Accepted, DaemonStatus
from banger.daemon.context import Context


def system_routes(ctx: Context, shutdown: asyncio.Event) -> APIRouter:
    router = APIRouter(tags=["system"])

    @router.get("/status")
    async def status() -> DaemonStatus:
        return DaemonStatus(
            version=__version__,
            pid=os.getpid(),
            socket=str(ctx.settings.socket),
            home=str(ctx.settings.home),
            uid=ctx.uid,
            vmm=ctx.vmm.name,
            accel=ctx.accel.kind,
            accel_reason=ctx.accel.reason,
        )

    @router.post("/shutdown", status_code=202)
    async def stop_daemon() -> Accepted:
        """Stop after running operations finish; running VMs keep running."""
        shutdown.set()
        return Accepted(status="stopping")

    return router
