"""API routes for workspaces and banger's ssh_config.

The copying itself streams between the CLI's host checkout and the guest
(over the VM's SSH, the same connection `banger vm ssh` uses); the daemon
records what was copied, so export and dirty detection can refer to it.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from fastapi import APIRouter

from banger.api.models import SshConfig, Workspace, WorkspaceRecord
from banger.daemon.sshconfig import SshConfigFiles
from banger.store import Store


def workspace_routes(store: Store, ssh_config: SshConfigFiles) -> APIRouter:
    router = APIRouter(tags=["workspaces"])

    @router.put("/vms/{name}/workspace")
    async def record_workspace(name: str, req: WorkspaceRecord) -> Workspace:
        """Record the workspace `vm workspace prepare` just copied into VM NAME."""
        vm = store.get_vm(name)
        now = datetime.now(UTC).isoformat(timespec="seconds")
        return await asyncio.to_thread(store.save_workspace, vm, req, now)

    @router.get("/vms/{name}/workspace")
    async def show_workspace(name: str) -> Workspace:
        return await asyncio.to_thread(store.get_workspace, store.get_vm(name))

    @router.post("/ssh-config")
    async def write_ssh_config() -> SshConfig:
        """(Re)write every VM's `Host NAME.vm` block; the pattern to `Include` and the text."""
        return await asyncio.to_thread(ssh_config.refresh)

    return router
