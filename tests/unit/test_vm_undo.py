"""A create that fails part-way leaves nothing: no row, lease, tap or disk."""

from __future__ import annotations

from pathlib import Path

import pytest

from banger.api.models import VmCreate
from banger.daemon.context import Context
from banger.daemon.operations import Progress
from banger.daemon.vms import VmService
from banger.errors import VmmError
from banger.vmm.accel import AccelChoice
from banger.vmm.base import VmmConfig


class RecordingHelper:
    def __init__(self) -> None:
        self.taps: set[str] = set()

    def ensure_bridge(self, name: str, address: str) -> dict[str, object]:
        return {"changed": []}

    def create_tap(self, name: str, bridge: str, owner_uid: int) -> bool:
        self.taps.add(name)
        return True

    def delete_tap(self, name: str) -> bool:
        self.taps.discard(name)
        return True


class RecordingNetwork:
    def __init__(self) -> None:
        self.ensured = 0

    def ensure(self, helper: object) -> None:
        self.ensured += 1

    def release_if_idle(self, helper: object, leaving: str) -> None:
        pass


class FailingVmm:
    name = "fake"

    def __init__(self) -> None:
        self.killed: list[Path] = []

    def check_host(self) -> None:
        return None

    def argv(self, config: VmmConfig) -> list[str]:
        return []

    def launch(self, config: VmmConfig) -> int:
        raise VmmError("QEMU failed to start VM 'dev': boom")

    def pid(self, run_dir: Path) -> int | None:
        return None

    def kill(self, run_dir: Path, *, timeout: float = 10.0) -> None:
        self.killed.append(run_dir)


class SilentProgress(Progress):
    def __init__(self) -> None:
        pass

    def stage(self, stage: str, message: str = "") -> None:
        pass

    def info(self, message: str) -> None:
        pass


@pytest.fixture
def service(settings, store):
    helper = RecordingHelper()
    ctx = Context(
        settings=settings,
        store=store,
        vmm=FailingVmm(),
        accel=AccelChoice("tcg", "t"),
        tsc_khz=None,
    )
    ctx._helper = helper  # type: ignore[assignment]
    ctx.network = RecordingNetwork()  # type: ignore[assignment]
    return VmService(ctx), ctx, helper


def test_failed_launch_undoes_everything(service, settings):
    vms, ctx, helper = service
    req = vms.validate(VmCreate(name="dev", system_overlay_size="64M"))
    with pytest.raises(VmmError, match="boom"):
        vms.create(req, SilentProgress())
    assert ctx.store.list_vms() == []
    assert ctx.store.lease_count() == 0
    assert helper.taps == set()
    assert list(settings.vms_dir.iterdir()) == []
    assert ctx.vmm.killed == []  # it never started, so nothing to kill
    assert ctx.network.ensured == 1
    # The name is free again.
    assert vms.validate(VmCreate(name="dev")).name == "dev"
