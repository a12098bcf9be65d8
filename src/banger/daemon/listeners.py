"""The guest agent as forwarding uses it: what listens (polled by automatic
forwarding), and connections made inside the guest (the relay's path to a
server bound to the guest's loopback)."""

from __future__ import annotations

import logging

from banger.api.models import Vm
from banger.daemon.agents import Agents, agent_unavailable
from banger.daemon.inspect import ports_from_agent
from banger.errors import UserError
from banger.guest.connect import CAP
from banger.net.forward import Upstream

log = logging.getLogger("banger.daemon")

# A poll a second: an answer slower than this is skipped, not waited on.
ASK_TIMEOUT = 2.0


class AgentListeners:
    """The guest agent's ``ports`` op, one short request per poll (no SSH handshake)."""

    def __init__(self, agents: Agents) -> None:
        self.agents = agents
        self._told: set[str] = set()

    async def listeners(self, vm: Vm) -> list[tuple[str, int]]:
        if not self.agents.has_channel(vm):
            if vm.id not in self._told:
                self._told.add(vm.id)
                log.info(
                    "%s: its image %s has no agent channel; --forward-ports auto has"
                    " nothing to ask (recreate the image with this banger)",
                    vm.name,
                    vm.image,
                )
            return []
        answer = await self.agents.call(vm, "ports", timeout=ASK_TIMEOUT)
        return [(p.address, p.port) for p in ports_from_agent(answer) if p.proto == "tcp"]


class AgentDialer:
    """The agent's ``connect`` op, on the VM's one link (its requests multiplexed)."""

    def __init__(self, agents: Agents) -> None:
        self.agents = agents
        self._told: set[str] = set()

    async def dial(self, vm: Vm, port: int, host: str) -> Upstream:
        link = await self.agents.link(vm)
        if link is None:
            raise agent_unavailable(vm, f"its image {vm.image!r} has no agent channel")
        if CAP not in link.info.caps:
            if vm.id not in self._told:  # the relay logs each failed connection at debug only
                self._told.add(vm.id)
                log.info(
                    "%s: its agent has no connect op; loopback-only guest listeners"
                    " cannot be forwarded (recreate the image with this banger)",
                    vm.name,
                )
            raise UserError(
                f"the agent in VM {vm.name!r} is older than forwarding to the guest's loopback",
                hint=f"`banger vm restart {vm.name}` after `banger image pull` rebuilds its"
                " image with this banger's agent; or bind the guest server to 0.0.0.0",
            )
        return await link.dial(port, host)
