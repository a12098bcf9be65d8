"""Automatic forwarding asks the guest agent (a scripted peer) what listens, once a poll."""

from __future__ import annotations

from typing import Any

from banger.api.models import ForwardSource, VmCreate
from tests.unit.agent_peer import Request
from tests.unit.test_agents import Recorder, World, load, world  # noqa: F401 (the fixture)
from tests.unit.test_ports import GUEST, ask, echo, wait_refused  # noqa: F401 (the fixture)


def test_the_poller_follows_the_agents_ports_answer(world: World, echo: int) -> None:  # noqa: F811
    listening: list[dict[str, Any]] = []

    async def ports(request: Request) -> None:
        await request.close({"ok": True, "ports": listening})

    peer = world.peer({"load": load, "ports": ports})
    vms, store = world.services.vms, world.services.store
    vm = vms.create(
        vms.validate(
            VmCreate(
                name="dev",
                image="chan",
                forward_ports="auto",
                system_overlay_size="64M",
                work_disk_size="64M",
            )
        ),
        Recorder(),
    )
    # The echo server on another loopback address plays the guest's listener.
    store.db.query("UPDATE leases SET ip = ? WHERE vm_id = ?", (GUEST, vm.id))
    forwards = world.services.forwards

    def auto() -> list[tuple[str, int, int]]:
        world.on_loop(forwards.poll_once())
        shown = vms.show("dev").forwards
        return [
            (f.host_ip, f.host_port, f.guest_port) for f in shown if f.source == ForwardSource.AUTO
        ]

    listening.append({"proto": "tcp", "addr": "0.0.0.0", "port": echo, "process": "echo"})
    listening.append({"proto": "tcp6", "addr": "::", "port": echo})
    assert auto() == [("127.0.0.1", echo, echo)]
    assert ask(echo) == b"HELLO\n"
    listening.clear()
    assert auto() == []
    assert wait_refused(echo)
    world.close_peer(peer)
