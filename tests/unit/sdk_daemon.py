"""The whole of bangerd's API served on a test socket, its VMs' agent the real one run here.

``SdkDaemon`` serves ``create_app`` (every route: create, delete, fork,
snapshots, exec, files, workspaces, operations) with uvicorn on the
settings' unix socket, in a thread of its own. The seams are fakes: the root
helper records its verbs, and the VMM "boots" a VM by marking it running and
pointing its agent endpoint at one ``banger-agent --listen unix:`` process on
this host, so the daemon's own Agents service links to a real agent on
boot, and exec and files reach a real process tree and filesystem.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from fastapi import FastAPI

from banger.api.models import Image
from banger.config import Settings
from banger.daemon.app import create_app
from banger.daemon.services import Services, wire
from banger.store import Store
from banger.vmm.accel import AccelChoice
from banger.vmm.base import AgentEndpoint, VmmConfig
from tests.unit.agent_host import HostAgent
from tests.unit.fakes import FakeVmm, RecordingHelper
from tests.unit.served import Closing, ServedApp

IMAGE = "debian-bookworm"


class AgentBackedVmm(FakeVmm):
    """Each VM runs from launch (or restore) until killed; its agent is the host-run one."""

    # A name a VmCreate accepts: a fork restores through one, naming its VMM.
    name = "qemu"

    def __init__(self, agent_socket: Path) -> None:
        super().__init__()
        self.agent_socket = agent_socket
        self.running: set[Path] = set()

    def launch(self, config: VmmConfig) -> int:
        self.running.add(config.run_dir)
        return super().launch(config)

    def pid(self, run_dir: Path) -> int | None:
        return 4242 if run_dir in self.running else None

    def running_under(self, root: Path) -> dict[Path, int]:
        return {d: 4242 for d in self.running if d.is_relative_to(root)}

    def kill(self, run_dir: Path, *, timeout: float = 10.0) -> None:
        self.running.discard(run_dir)
        super().kill(run_dir, timeout=timeout)

    def agent_endpoint(self, run_dir: Path) -> AgentEndpoint:
        return AgentEndpoint(self.agent_socket)


class SdkDaemon(ServedApp):
    def __init__(self, settings: Settings, store: Store, agent_binary: Path, tmp: Path) -> None:
        super().__init__(settings)
        self.store = store
        self.agent = HostAgent(agent_binary, tmp / "agent.sock")
        self.vmm = AgentBackedVmm(self.agent.socket)
        self.tmp = tmp
        self.services: Services | None = None

    def start(self) -> SdkDaemon:
        self.agent.start()
        image = self.store.get_image(IMAGE)
        # The image has banger's agent (channel 1): a VM is ready when it answers.
        # Its rootfs is a file, which a restore (fork) checks is still there.
        rootfs = self.tmp / "rootfs.ext4"
        rootfs.write_bytes(b"")
        self.store.delete_image(IMAGE)
        self.store.add_image(Image(**{**image.model_dump(), "channel": 1, "rootfs": str(rootfs)}))
        key = self.tmp / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        os.makedirs(self.settings.runtime_dir, mode=0o700, exist_ok=True)
        self.serve()
        return self

    async def build(self) -> tuple[FastAPI, Closing]:
        self.services = wire(
            self.settings,
            store=self.store,
            vmm=self.vmm,
            accel=AccelChoice("tcg", "test"),
            helper=RecordingHelper(),
            user_key=self.tmp / "id_ed25519",
            loop=asyncio.get_running_loop(),
        )
        return create_app(self.services, asyncio.Event()), self.services.agents.close

    def stop(self) -> None:
        self.shutdown()
        self.agent.kill()
        self.raise_error()
