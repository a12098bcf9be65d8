"""banger.net owns VM networking: what attach, detach, set_nat and reconcile ask of the helper."""

from __future__ import annotations

import pytest

from banger.api.models import Vm, VmState
from banger.errors import HelperError
from banger.net.bridge import BridgeNetwork
from banger.net.network import VmNetwork
from tests.unit.fakes import RecordingHelper, running_loop


def vm(name: str = "dev", *, nat: bool = False, state: VmState = VmState.RUNNING) -> Vm:
    return Vm(
        id=f"id{name}",
        name=name,
        image="img",
        state=state,
        vcpus=1,
        memory_mib=256,
        overlay_bytes=1,
        nat=nat,
        ip="10.77.0.2",
        tap=f"bgt{name}",
        mac="02:00:00:00:00:01",
        vmm="qemu",
        dir="/nowhere",
        created_at="t",
    )


class Directory:
    def __init__(self, *vms: Vm) -> None:
        self.vms = list(vms)

    def list_vms(self) -> list[Vm]:
        return list(self.vms)


@pytest.fixture
def net(settings):
    helper = RecordingHelper()
    directory = Directory()
    with running_loop() as loop:
        bridge = BridgeNetwork(settings, helper, directory, loop)
        yield VmNetwork(settings, helper, bridge, owner_uid=1000), helper, directory


def test_attach_brings_the_bridge_up_then_the_tap_then_nat(net, settings):
    network, helper, _ = net
    network.attach(vm(nat=True))
    assert helper.verbs() == [
        "bridge_ensure",
        "net_isolate",
        "dns_redirect",
        "resolver_link",
        "tap_create",
        "nat_enable",
    ]
    assert helper.calls[0] == ("bridge_ensure", settings.bridge, "10.77.0.1/24")
    assert helper.taps == {"bgtdev"} and helper.nat == {"10.77.0.2"}


def test_the_undo_of_attach_removes_what_it_made_in_reverse_order(net):
    network, helper, _ = net
    undo = network.attach(vm(nat=True))
    helper.calls.clear()
    undo()
    assert helper.calls == [("nat_disable", "10.77.0.2"), ("tap_delete", "bgtdev")]
    assert helper.taps == set() and helper.nat == set()


def test_attach_that_fails_midway_leaves_no_tap(net):
    network, helper, _ = net

    def refuse(bridge: str, subnet: str, source: str) -> dict[str, object]:
        raise HelperError("nft failed")

    helper.nat_enable = refuse  # type: ignore[method-assign]
    with pytest.raises(HelperError):
        network.attach(vm(nat=True))
    assert helper.taps == set()


def test_detach_frees_nat_and_tap_and_the_rules_when_no_other_vm_runs(net):
    network, helper, directory = net
    leaving = vm(nat=True)
    directory.vms = [leaving]
    network.attach(leaving)
    helper.calls.clear()
    network.detach(leaving)
    assert helper.verbs() == ["nat_disable", "tap_delete", "net_teardown", "resolver_unlink"]


def test_detach_keeps_the_rules_while_another_vm_runs(net):
    network, helper, directory = net
    leaving, staying = vm("a"), vm("b")
    directory.vms = [leaving, staying]
    network.detach(leaving)
    assert helper.verbs() == ["tap_delete"]
    helper.calls.clear()
    network.detach(leaving)  # idempotent: already gone is fine
    assert helper.verbs() == ["tap_delete"]


def test_a_vm_booting_beside_running_ones_asks_only_for_its_tap(net):
    network, helper, directory = net
    first, second = vm("a"), vm("b")
    directory.vms = [first, second]
    network.attach(first)
    helper.calls.clear()
    network.attach(second)
    # DNS for VMs is tried again while it does not run (here: no such address to bind).
    assert [v for v in helper.verbs() if v != "resolver_link"] == ["tap_create"]
    # Once the last VM has gone the rules are down, and the next boot brings them up.
    network.detach(second)
    directory.vms = [first]
    network.detach(first)
    directory.vms = [second]
    helper.calls.clear()
    network.attach(second)
    assert helper.verbs()[:3] == ["bridge_ensure", "net_isolate", "dns_redirect"]


def test_set_nat_changes_a_running_vm_at_once(net):
    network, helper, _ = net
    network.set_nat(vm(), True)
    network.set_nat(vm(), False)
    assert helper.calls == [("nat_enable", "10.77.0.2"), ("nat_disable", "10.77.0.2")]


def test_reconcile_removes_only_our_stale_taps_and_restores_running_ones(net, settings):
    network, helper, _ = net
    helper.links = [
        {"name": "bgtdev", "kind": "tap", "master": settings.bridge},
        {"name": "bgtgone", "kind": "tap", "master": settings.bridge},
        {"name": "bgtother", "kind": "tap", "master": "bgsomeoneelse"},
    ]
    fixes = network.reconcile([vm(nat=True)])
    assert ("tap_delete", "bgtgone") in helper.calls
    assert ("tap_delete", "bgtother") not in helper.calls
    assert ("nat_enable", "10.77.0.2") in helper.calls
    assert fixes == ["removed tap bgtgone, which no running VM uses", "restored NAT for 10.77.0.2"]


def test_close_removes_the_bridge_only_when_no_vm_runs(net, settings):
    network, helper, directory = net
    directory.vms = [vm()]
    network.close()
    assert "bridge_delete" not in helper.verbs()
    directory.vms = [vm(state=VmState.STOPPED)]
    network.close()
    assert helper.calls[-1] == ("bridge_delete", settings.bridge)


def test_the_helper_opens_the_tap_only_where_bangerd_cannot(net, monkeypatch):
    import os

    from banger.net import network as netmod

    network, helper, _ = net
    monkeypatch.setattr(netmod.os, "access", lambda path, mode: True)
    assert network.tap_fd(vm()) is None
    assert "tap_open" not in helper.verbs()
    monkeypatch.setattr(netmod.os, "access", lambda path, mode: path != netmod.TUN_DEVICE)
    fd = network.tap_fd(vm())
    assert fd is not None
    os.close(fd)
    assert helper.calls[-1] == ("tap_open", "bgtdev")
