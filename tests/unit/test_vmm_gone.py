"""A VMM that dies by itself (kill -9, a crash): the VM reads stopped and holds nothing."""

from __future__ import annotations

import subprocess

import pytest

from banger.api.models import VmCreate, VmState
from banger.daemon.services import wire
from banger.vmm.accel import AccelChoice
from tests.unit.fakes import FakeVmm, RecordingHelper, running_loop
from tests.unit.test_vm_undo import SilentProgress


@pytest.fixture
def services(settings, store, tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    helper = RecordingHelper()
    with running_loop() as loop:
        built = wire(
            settings,
            store=store,
            vmm=FakeVmm(),
            accel=AccelChoice("tcg", "t"),
            helper=helper,
            user_key=key,
            loop=loop,
        )
        yield built, helper


def test_a_vm_whose_vmm_died_is_shown_stopped_and_its_tap_is_freed(services, store) -> None:
    built, helper = services
    vms = built.vms
    req = vms.validate(VmCreate(name="dev", system_overlay_size="64M", no_start=True))
    vm = vms.create(req, SilentProgress())
    # As if it had been started, and its QEMU then killed: the store says running,
    # the tap is there, and no VMM answers for its directory (FakeVmm.pid is None).
    store.set_vm_state(vm.id, VmState.RUNNING)
    helper.create_tap(vm.tap, "br", 0)
    shown = vms.show("dev")
    assert shown.state == VmState.STOPPED and shown.pid is None
    assert store.get_vm("dev").state == VmState.STOPPED
    assert helper.taps == set()
    assert ("tap_delete", vm.tap) in helper.calls
    # Once only: the next look finds it stopped and frees nothing again.
    calls = len(helper.calls)
    assert [v.state for v in vms.list_all()] == [VmState.STOPPED]
    assert len(helper.calls) == calls
