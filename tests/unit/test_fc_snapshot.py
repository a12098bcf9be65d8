"""Firecracker pause, resume, snapshot create and restore: the requests against its
spec, and the driver against the stand-in (which keeps Firecracker's state rules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from banger.errors import VmmError
from banger.vmm import fc_api
from banger.vmm.base import DiskSpec, NetSpec, VmmConfig
from banger.vmm.fc_snapshot import MEMORY_FILE, VMSTATE_FILE, restore_requests
from banger.vmm.firecracker import FirecrackerVmm
from tests.standin import spec
from tests.standin.install import install
from tests.unit.test_firecracker import TEMPLATES, config

pytestmark = pytest.mark.skipif(spec.spec_path() is None, reason="no Firecracker API spec")


def _template(resource: fc_api.Resource) -> str:
    return TEMPLATES.get(resource.path, resource.path)


def copy_config(tmp_path: Path, source: VmmConfig) -> VmmConfig:
    run = tmp_path / "vms" / "fedcba987654"
    run.mkdir(parents=True)
    (run / "overlay.ext4").write_bytes(b"\0" * 4096)
    return VmmConfig(
        name="brisk-heron",
        vcpus=source.vcpus,
        memory_mib=source.memory_mib,
        kernel=source.kernel,
        initrd=source.initrd,
        cmdline=source.cmdline,
        disks=(source.disks[0], DiskSpec(run / "overlay.ext4", "bgoverlay")),
        net=NetSpec("bgtfedcba98765", "02:00:0a:4d:00:06"),
        run_dir=run,
    )


def test_restore_requests_load_paused_repoint_then_resume(tmp_path: Path) -> None:
    source = config(tmp_path)
    cfg = copy_config(tmp_path, source)
    snap = tmp_path / "snap"
    reqs = restore_requests(cfg, snap, str, "/run/v.sock")
    assert [r.step for r in reqs] == [
        "logger", "metrics", "snapshot load", "drive bgoverlay", "resume",
    ]  # fmt: skip
    for req in reqs:
        definition = spec.body_definition(req.resource.method, _template(req.resource))
        assert definition is not None, req.step
        assert spec.problems(definition, req.body) == [], req.step
    load = reqs[2].body
    assert load["mem_backend"] == {"backend_type": "File", "backend_path": str(snap / "memory")}
    assert load["network_overrides"] == [{"iface_id": "eth0", "host_dev_name": cfg.net.tap}]
    assert load["resume_vm"] is False
    # The read-only image is shared: only the VM's own disk is switched.
    assert reqs[3].body == {"drive_id": "bgoverlay", "path_on_host": str(cfg.disks[1].path)}
    assert (reqs[4].resource.method, reqs[4].body) == ("PATCH", {"state": "Resumed"})


@pytest.fixture
def vmm(tmp_path: Path):
    firecracker, _ = install(tmp_path / "bin", {"STANDIN_NO_BOOT": "1"})
    driver = FirecrackerVmm(firecracker, None, None, tmp_path / "jail")
    yield driver
    for run_dir, _pid in driver.running_under(tmp_path / "vms").items():
        driver.kill(run_dir)


def test_pause_snapshot_resume_then_restore_as_another_vm(
    vmm: FirecrackerVmm, tmp_path: Path
) -> None:
    source = config(tmp_path)
    vmm.launch(source)
    vmm.pause(source.run_dir)
    assert vmm.paused(source.run_dir)
    snap = tmp_path / "snap"
    snap.mkdir()
    vmm.save(source.run_dir, snap)
    assert (snap / VMSTATE_FILE).is_file()
    assert (snap / MEMORY_FILE).stat().st_size == source.memory_mib << 20
    vmm.resume(source.run_dir)
    assert not vmm.paused(source.run_dir)

    cfg = copy_config(tmp_path, source)
    pid = vmm.restore(cfg, snap)
    assert vmm.pid(cfg.run_dir) == pid
    info = fc_api.ApiClient(cfg.control_socket, vm=cfg.name).info()
    assert info["state"] == "Running"


def test_a_snapshot_of_a_running_vm_is_refused_as_firecracker_would(
    vmm: FirecrackerVmm, tmp_path: Path
) -> None:
    source = config(tmp_path)
    vmm.launch(source)
    client = fc_api.ApiClient(source.control_socket, vm=source.name)
    body = {"snapshot_path": str(tmp_path / "s"), "mem_file_path": str(tmp_path / "m")}
    with pytest.raises(VmmError, match="not paused"):
        client.send(fc_api.Request("snapshot create", fc_api.SNAPSHOT_CREATE, body))
    assert not (tmp_path / "s").exists()


def test_a_missing_memory_file_launches_nothing(vmm: FirecrackerVmm, tmp_path: Path) -> None:
    source = config(tmp_path)
    cfg = copy_config(tmp_path, source)
    (tmp_path / "snap").mkdir()
    (tmp_path / "snap" / VMSTATE_FILE).write_text("{}")
    with pytest.raises(VmmError, match=r"memory file .* is missing"):
        vmm.restore(cfg, tmp_path / "snap")
    assert vmm.running_under(tmp_path / "vms") == {}


def test_a_foreign_vmstate_is_refused_and_leaves_nothing(
    vmm: FirecrackerVmm, tmp_path: Path
) -> None:
    source = config(tmp_path)
    cfg = copy_config(tmp_path, source)
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / VMSTATE_FILE).write_text('{"magic": "something else"}')
    (snap / MEMORY_FILE).write_bytes(b"\0" * 4096)
    with pytest.raises(VmmError, match="refused snapshot load"):
        vmm.restore(cfg, snap)
    assert vmm.running_under(tmp_path / "vms") == {}
    assert not cfg.control_socket.exists()
