"""bangerd's guest routes served for real, in front of the real agent run on this host.

``GuestDaemon`` serves the guest and operation routes with uvicorn on the
settings' unix socket, in a thread of its own, over a store holding one
running VM ``dev``; behind the ``Agents`` seam sits ``HostAgents``, which
links to ``banger-agent --listen unix:PATH`` with the real ``AgentLink``.
The "VMM" of ``dev`` is the agent process: the VM runs while it does.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import warnings
from pathlib import Path

from fastapi import FastAPI
from pydantic.warnings import UnsupportedFieldAttributeWarning

from banger.api.models import Vm, VmState
from banger.config import Settings
from banger.daemon.app import add_error_handlers
from banger.daemon.routes_guest import guest_routes
from banger.daemon.routes_operations import operation_routes
from banger.daemon.routes_vms import vm_routes
from banger.daemon.routes_workspaces import workspace_routes
from banger.daemon.services import wire
from banger.guest.link import AgentLink
from banger.store import Store
from banger.vmm.accel import AccelChoice
from tests.unit.agent_host import HostAgent
from tests.unit.fakes import FakeVmm, RecordingHelper
from tests.unit.served import Closing, ServedApp


class AgentVmm(FakeVmm):
    """A VM whose process is the host-run agent: it runs while the agent does."""

    def __init__(self, agent: subprocess.Popen[bytes]) -> None:
        super().__init__()
        self.agent = agent

    def pid(self, run_dir: Path) -> int | None:
        return self.agent.pid if self.agent.poll() is None else None


class HostAgents:
    """The ``Agents`` seam: one link to the host-run agent, made on first use."""

    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self._link: AgentLink | None = None
        self.asked = 0

    async def link(self, vm: Vm) -> AgentLink | None:
        self.asked += 1
        if self._link is None or self._link.closed:
            self._link = await AgentLink.connect(self.socket, timeout=5)
        return self._link

    async def close(self) -> None:
        if self._link is not None:
            await self._link.close()


def running_vm(store: Store, vm_dir: Path) -> Vm:
    vm = Vm(
        id="0123456789ab",
        name="dev",
        image="debian-bookworm",
        state=VmState.RUNNING,
        vcpus=1,
        memory_mib=256,
        overlay_bytes=0,
        ip="10.99.0.2",
        tap="tap-dev",
        mac="02:00:00:00:00:02",
        vmm="fake",
        dir=str(vm_dir),
        created_at="2026-01-01T00:00:00+00:00",
    )
    vm_dir.mkdir(parents=True, exist_ok=True)
    return store.insert_vm(vm)


class GuestDaemon(ServedApp):
    def __init__(self, settings: Settings, store: Store, agent_binary: Path, tmp: Path) -> None:
        super().__init__(settings)
        self.store = store
        self.host_agent = HostAgent(agent_binary, tmp / "agent.sock")
        self.agents = HostAgents(self.host_agent.socket)
        self.tmp = tmp

    @property
    def agent(self) -> subprocess.Popen[bytes]:
        assert self.host_agent.process is not None
        return self.host_agent.process

    def start(self) -> GuestDaemon:
        self.host_agent.start()
        running_vm(self.store, self.tmp / "vm")
        os.makedirs(self.settings.runtime_dir, mode=0o700, exist_ok=True)
        self.serve()
        return self

    async def build(self) -> tuple[FastAPI, Closing]:
        services = wire(
            self.settings,
            store=self.store,
            vmm=AgentVmm(self.agent),
            accel=AccelChoice("tcg", "test"),
            helper=RecordingHelper(),
            user_key=self.tmp / "id_ed25519",
            loop=asyncio.get_running_loop(),
        )
        # As create_app does: pydantic's note about a lazily built body model.
        warnings.filterwarnings("ignore", "The 'alias' attribute", UnsupportedFieldAttributeWarning)
        app = FastAPI()
        app.include_router(guest_routes(services.vms, self.agents, services.ops))
        app.include_router(operation_routes(self.store, services.ops))
        app.include_router(workspace_routes(self.store, services.ssh_config))
        s = services
        app.include_router(
            vm_routes(s.store, s.vms, s.inspector, s.vmm, s.ops, s.ssh_config, s.snapshots, s.warm)
        )
        add_error_handlers(app)
        return app, self.agents.close

    def cli_env(self) -> dict[str, str]:
        """The environment for a `banger` command that talks to this daemon."""
        return {
            **os.environ,
            "BANGER_HOME": str(self.settings.home),
            "BANGER_RUNTIME_DIR": str(self.settings.runtime_dir),
            "BANGER_CONFIG": str(self.tmp / "no-config.toml"),
        }

    def stop(self) -> None:
        self.shutdown()
        self.host_agent.kill()
        self.raise_error()
