"""API routes for the daemon itself: its status, and stopping it."""

from __future__ import annotations

import asyncio
import os

from fastapi import APIRouter

from banger import __version__
from banger.api.models import Accepted, DaemonStatus
from banger.daemon.services import Services


def system_routes(s: Services, shutdown: asyncio.Event) -> APIRouter:
    router = APIRouter(tags=["system"])

    @router.get("/status")
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

    @router.post("/shutdown", status_code=202)
    async def stop_daemon() -> Accepted:
        """Stop after running operations finish; running VMs keep running."""
        shutdown.set()
        return Accepted(status="stopping")

    return router
