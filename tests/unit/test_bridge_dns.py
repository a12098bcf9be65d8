"""The daemon's side of DNS for VMs: who may resolve outside names, from the store."""

from __future__ import annotations

import asyncio

from banger.config import Settings
from banger.net.bridge import BridgeNetwork
from banger.net.leases import lease
from banger.store import Store
from tests.unit.fakes import RecordingHelper
from tests.unit.test_store import draft


def test_only_a_vm_with_nat_is_allowed_out(settings: Settings, store: Store) -> None:
    net, gateway = settings.network, [settings.network.network_address + 1]
    plain = lease(draft("plain"), store, net, gateway)
    nat = lease(draft("out").model_copy(update={"nat": True}), store, net, gateway)
    loop = asyncio.new_event_loop()
    bridge = BridgeNetwork(settings, RecordingHelper(), store, loop)
    loop.close()
    assert bridge.allowed_out(nat.ip) is True
    assert bridge.allowed_out(plain.ip) is False
    assert bridge.allowed_out(bridge.gateway) is False  # the host itself
    assert bridge.allowed_out("10.99.0.9") is False
    # `vm set --nat` takes effect on the next query, not the next boot.
    store.update_vm(plain.id, nat=True)
    store.update_vm(nat.id, nat=False)
    assert bridge.allowed_out(plain.ip) is True
    assert bridge.allowed_out(nat.ip) is False
    assert bridge.lookup("out") == nat.ip
