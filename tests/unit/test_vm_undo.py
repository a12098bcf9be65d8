"""A create that fails part-way leaves nothing: no row, lease, tap or disk."""

from __future__ import annotations

import subprocess

import pytest

from banger.api.models import VmCreate
from banger.daemon.operations import Progress
from banger.daemon.services import wire
from banger.errors import VmmError
from banger.vmm.accel import AccelChoice
from tests.unit.fakes import FakeVmm, RecordingHelper, running_loop


class SilentProgress(Progress):
    def __init__(self) -> None:
        pass

    def stage(self, stage: str, message: str = "") -> None:
        pass

    def info(self, message: str) -> None:
        pass


@pytest.fixture
def services(settings, store, tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    helper = RecordingHelper()
    with running_loop() as loop:
        built = wire(
            settings,
            store=store,
            vmm=FakeVmm(fail=True),
            accel=AccelChoice("tcg", "t"),
            helper=helper,
            user_key=key,
            loop=loop,
        )
        yield built, helper


def test_failed_launch_undoes_everything(services, settings, store):
    built, helper = services
    vms = built.vms
    req = vms.validate(VmCreate(name="dev", system_overlay_size="64M"))
    with pytest.raises(VmmError, match="boom"):
        vms.create(req, SilentProgress())
    assert store.list_vms() == []
    assert store.lease_count() == 0
    assert helper.taps == set()
    assert list(settings.vms_dir.iterdir()) == []
    assert built.vmm.get("fake").killed == []  # it never started, so nothing to kill
    assert helper.verbs()[:4] == ["bridge_ensure", "net_isolate", "dns_redirect", "resolver_link"]
    assert ("tap_create", req.vm.tap, settings.bridge) in helper.calls
    assert ("tap_delete", req.vm.tap) in helper.calls
    # The name is free again.
    assert vms.validate(VmCreate(name="dev")).vm.name == "dev"
