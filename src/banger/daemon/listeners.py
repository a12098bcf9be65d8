"""What listens in a guest, from its agent: the source automatic forwarding polls."""

from __future__ import annotations

import logging

from banger.api.models import Vm
from banger.daemon.agents import Agents
from banger.daemon.inspect import ports_from_agent

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
