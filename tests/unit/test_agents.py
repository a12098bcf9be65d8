"""bangerd's Agents service and the VM lifecycle over the guest channel.

The agent is the real banger-agent run on this host (``--listen unix:``)
where it can be: killed, frozen, restarted. A scripted peer
(``agent_peer``) stands in where the real one must not act on this host
(it refuses ``poweroff`` here) or to count its HELLOs. The daemon's side is
real: the store, the service graph from ``services.wire``, the VM's disks
and keys; only the VMM and the root helper are fakes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from banger.api.models import Image, VmCreate
from banger.daemon.operations import Progress
from banger.daemon.services import Services, wire
from banger.errors import AgentUnavailable
from banger.vmm.accel import AccelChoice
from banger.vmm.base import AgentEndpoint, VmmConfig
from tests.unit.agent_host import HostAgent
from tests.unit.agent_peer import Peer, Request
from tests.unit.fakes import FakeVmm, RecordingHelper, running_loop

T = TypeVar("T")


class Recorder(Progress):
    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []

    def stage(self, stage: str, message: str = "") -> None:
        self.lines.append(("stage", f"{stage}: {message}"))

    def info(self, message: str) -> None:
        self.lines.append(("info", message))

    def text(self) -> str:
        return "\n".join(line for _, line in self.lines)


class BootingVmm(FakeVmm):
    """A VMM whose VM "runs" from launch until killed or powered off by its agent."""

    def __init__(self, agent_socket: Path) -> None:
        super().__init__()
        self.agent_socket = agent_socket
        self.running: set[Path] = set()
        self.dies_at_boot = False

    def launch(self, config: VmmConfig) -> int:
        if not self.dies_at_boot:
            self.running.add(config.run_dir)
        return super().launch(config)

    def pid(self, run_dir: Path) -> int | None:
        return 4242 if run_dir in self.running else None

    def kill(self, run_dir: Path, *, timeout: float = 10.0) -> None:
        self.running.discard(run_dir)
        super().kill(run_dir, timeout=timeout)

    def agent_endpoint(self, run_dir: Path) -> AgentEndpoint:
        return AgentEndpoint(self.agent_socket)


class World:
    def __init__(self, services: Services, vmm: BootingVmm, loop: asyncio.AbstractEventLoop):
        self.services = services
        self.vmm = vmm
        self.loop = loop

    def on_loop(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(20)

    def peer(self, handlers: dict[str, Any]) -> Peer:
        peer = Peer(self.vmm.agent_socket, handlers)
        self.on_loop(peer.__aenter__())
        return peer

    def close_peer(self, peer: Peer) -> None:
        self.on_loop(peer.__aexit__(None, None, None))


@pytest.fixture
def world(settings, store, tmp_path) -> Iterator[World]:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    store.add_image(
        Image(
            name="chan",
            kernel="k",
            rootfs="/r.ext4",
            size_bytes=1,
            source="t",
            created_at="t",
            channel=1,
        )
    )
    vmm = BootingVmm(tmp_path / "agent.sock")
    with running_loop() as loop:
        services = wire(
            settings,
            store=store,
            vmm=vmm,
            accel=AccelChoice("tcg", "t"),
            helper=RecordingHelper(),
            user_key=key,
            loop=loop,
        )
        yield World(services, vmm, loop)
        asyncio.run_coroutine_threadsafe(services.agents.close(), loop).result(5)


async def load(request: Request) -> None:
    await request.close({"ok": True, "loadavg": [0.5, 0.25, 0.0], "mem_total_kib": 1000,
                         "mem_available_kib": 600, "uptime": 3.0, "procs": 9})  # fmt: skip


async def hang(request: Request) -> None:
    await request.cancelled.wait()


def create(world: World, image: str, progress: Recorder) -> Any:
    vms = world.services.vms
    return vms.create(
        vms.validate(
            VmCreate(name="dev", image=image, system_overlay_size="64M", work_disk_size="64M")
        ),
        progress,
    )


def test_create_is_ready_when_the_agent_answers_and_stop_goes_through_it(world: World) -> None:
    stopped: list[str] = []

    async def poweroff(request: Request) -> None:
        await request.close({"ok": True})
        world.vmm.running.clear()  # the guest goes down after its answer
        stopped.append(request.op)

    peer = world.peer({"load": load, "poweroff": poweroff})
    progress = Recorder()
    vm = create(world, "chan", progress)
    assert vm.state == "running"
    assert "agent: waiting for banger's agent" in progress.text()
    assert "ssh:" not in progress.text()  # no SSH polling for an image with the channel
    assert any(line.startswith("dev's agent answered after ") for _, line in progress.lines)
    assert len(peer.hellos) == 1

    stop = Recorder()
    world.services.vms.stop("dev", 10, stop)
    assert stopped == ["poweroff"]
    assert "dev's agent is powering it off" in stop.text()
    assert "dev powered off" in stop.text()
    world.close_peer(peer)


def test_calls_share_one_link_and_a_lost_link_is_made_again(world: World) -> None:
    peer = world.peer({"load": load})
    create(world, "chan", Recorder())
    vm = world.services.vms.show("dev")
    agents = world.services.agents
    assert agents.call_sync(vm, "load")["procs"] == 9
    assert agents.call_sync(vm, "load")["procs"] == 9
    assert len(peer.hellos) == 1  # the boot's link, reused
    peer.drop()  # the agent restarted, or the daemon's connection broke
    assert agents.call_sync(vm, "load")["mem_total_kib"] == 1000
    assert len(peer.hellos) == 2
    world.close_peer(peer)


def test_a_dead_agent_is_a_clear_error_that_points_at_ssh(world: World) -> None:
    peer = world.peer({"load": load})
    create(world, "chan", Recorder())
    vm = world.services.vms.show("dev")
    world.close_peer(peer)  # the agent is gone; nothing listens any more
    started = time.monotonic()
    with pytest.raises(AgentUnavailable) as caught:
        world.services.agents.call_sync(vm, "load")
    assert time.monotonic() - started < 6
    assert "banger's agent in VM 'dev' does not answer" in caught.value.message
    assert caught.value.hint is not None and "`banger vm ssh dev` still works" in caught.value.hint


def test_an_agent_that_stops_answering_fails_in_time_and_is_reconnected(world: World) -> None:
    peer = world.peer({"load": load, "ports": hang})
    create(world, "chan", Recorder())
    vm = world.services.vms.show("dev")
    agents = world.services.agents
    with pytest.raises(AgentUnavailable, match="no answer to ports within 1s"):
        agents.call_sync(vm, "ports", timeout=1)
    # The link that went quiet is dropped: the next call says hello afresh.
    assert agents.call_sync(vm, "load")["procs"] == 9
    assert len(peer.hellos) == 2
    world.close_peer(peer)


def test_an_image_without_the_channel_has_no_link(world: World) -> None:
    vm = world.services.vms.validate(VmCreate(name="old")).vm  # debian-bookworm, channel 0
    agents = world.services.agents
    assert not agents.has_channel(vm)
    assert world.on_loop(agents.link(vm)) is None
    with pytest.raises(AgentUnavailable, match="has no agent channel") as caught:
        agents.call_sync(vm, "load")
    assert caught.value.hint is not None and "banger vm ssh old" in caught.value.hint


def test_a_vm_that_dies_while_booting_fails_the_create(world: World) -> None:
    world.vmm.dies_at_boot = True  # launched, but gone before its agent answers
    with pytest.raises(Exception, match="stopped before its guest agent answered"):
        create(world, "chan", Recorder())
    assert world.services.store.list_vms() == []


# The real banger-agent, run on this host behind the same Agents service.


@pytest.fixture
def real_agent(world: World, agent_binary: Path) -> Iterator[HostAgent]:
    agent = HostAgent(agent_binary, world.vmm.agent_socket).start()
    yield agent
    agent.kill()


def test_the_real_agent_makes_the_vm_ready_and_lists_its_listeners(
    world: World, real_agent: HostAgent
) -> None:
    progress = Recorder()
    vm = create(world, "chan", progress)
    assert any(line.startswith("dev's agent answered after ") for _, line in progress.lines)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        ports = world.services.inspector.ports(vm.name)
    # This host's listener, as the guest's would be; the endpoint reaches the VM.
    [mine] = [p for p in ports if p.port == port]
    assert (mine.proto, mine.address) == ("tcp", "127.0.0.1")
    assert mine.endpoint == f"{vm.ip}:{port}"
    load = world.services.agents.call_sync(vm, "load")
    assert load["mem_total_kib"] > 0 and len(load["loadavg"]) == 3


def test_a_killed_real_agent_fails_fast_and_a_restarted_one_is_found(
    world: World, real_agent: HostAgent, agent_binary: Path
) -> None:
    vm = create(world, "chan", Recorder())
    agents = world.services.agents
    real_agent.kill()
    started = time.monotonic()
    with pytest.raises(AgentUnavailable, match="banger's agent in VM 'dev' does not answer"):
        agents.call_sync(vm, "load")
    assert time.monotonic() - started < 6
    again = HostAgent(agent_binary, world.vmm.agent_socket).start()
    listening(world.vmm.agent_socket)  # its log says "channel up" already, from the first
    try:
        assert agents.call_sync(vm, "load")["procs"] > 0
    finally:
        again.kill()


def listening(path: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX) as probe:
            if probe.connect_ex(str(path)) == 0:
                return
        time.sleep(0.02)
    raise AssertionError(f"nothing listens on {path}")


def test_a_frozen_real_agent_times_out_and_is_reconnected_when_it_thaws(
    world: World, real_agent: HostAgent
) -> None:
    vm = create(world, "chan", Recorder())
    agents = world.services.agents
    assert real_agent.process is not None
    os.kill(real_agent.process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(AgentUnavailable, match="no answer to load within 1s") as caught:
            agents.call_sync(vm, "load", timeout=1)
        assert caught.value.hint is not None and "banger vm ssh dev" in caught.value.hint
    finally:
        os.kill(real_agent.process.pid, signal.SIGCONT)
    assert agents.call_sync(vm, "load")["procs"] > 0
