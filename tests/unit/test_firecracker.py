"""The Firecracker driver: its API table and requests against the spec, the
jailer's argv, and a launch against the stand-in Firecracker (tests/standin)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from banger.errors import VmmError
from banger.helper.jail import JailSpec, jailer_argv
from banger.vmm import fc_api
from banger.vmm.base import DiskSpec, NetSpec, VmmConfig
from banger.vmm.fc_config import jail_uid, requests
from banger.vmm.firecracker import FirecrackerVmm
from tests.standin import spec
from tests.standin.install import install

pytestmark = pytest.mark.skipif(spec.spec_path() is None, reason="no Firecracker API spec")

TEMPLATES = {
    "/drives/{id}": "/drives/{drive_id}",
    "/network-interfaces/{id}": "/network-interfaces/{iface_id}",
}


def config(tmp_path: Path) -> VmmConfig:
    run = tmp_path / "vms" / "0123456789ab"
    run.mkdir(parents=True)
    for name in ("vmlinux", "initramfs.img", "root.ext4"):
        (tmp_path / name).write_bytes(b"\0" * 4096)
    (run / "overlay.ext4").write_bytes(b"\0" * 4096)
    return VmmConfig(
        name="calm-otter",
        vcpus=2,
        memory_mib=512,
        kernel=tmp_path / "vmlinux",
        initrd=tmp_path / "initramfs.img",
        cmdline="console=ttyS0 banger.disks=bgroot,bgoverlay",
        disks=(
            DiskSpec(tmp_path / "root.ext4", "bgroot", read_only=True),
            DiskSpec(run / "overlay.ext4", "bgoverlay"),
        ),
        net=NetSpec("bgt0123456789", "02:00:0a:4d:00:05"),
        run_dir=run,
    )


@pytest.mark.parametrize("resource", fc_api.RESOURCES, ids=lambda r: r.path)
def test_every_resource_matches_its_definition_in_the_spec(resource: fc_api.Resource) -> None:
    name = spec.body_definition(resource.method, TEMPLATES.get(resource.path, resource.path))
    assert name is not None, f"{resource.method} {resource.path} is not in the spec"
    definition = spec.load()["definitions"][name]
    assert resource.required == set(definition.get("required", []))
    assert resource.allowed == set(definition["properties"])


def test_the_request_sequence_configures_everything_then_starts(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    reqs = requests(cfg, lambda p: str(p), "/run/v.sock")
    assert [r.step for r in reqs] == [
        "logger", "metrics", "machine-config", "boot-source", "drive bgroot",
        "drive bgoverlay", "network", "vsock", "InstanceStart",
    ]  # fmt: skip
    for req in reqs:
        template = TEMPLATES.get(req.resource.path, req.resource.path)
        assert spec.problems(spec.body_definition("PUT", template), req.body) == [], req.step
    by_step = {r.step: r for r in reqs}
    assert by_step["boot-source"].body == {
        "kernel_image_path": str(tmp_path / "vmlinux"),
        "initrd_path": str(tmp_path / "initramfs.img"),
        "boot_args": cfg.cmdline,
    }
    assert by_step["drive bgroot"].url == "/drives/bgroot"
    assert by_step["drive bgroot"].body["is_read_only"] is True
    assert by_step["network"].body["guest_mac"] == "02:00:0a:4d:00:05"
    assert by_step["machine-config"].body == {"vcpu_count": 2, "mem_size_mib": 512, "smt": False}


def test_a_body_the_table_does_not_allow_is_refused_before_sending() -> None:
    with pytest.raises(VmmError, match="unknown \\['bogus'\\]"):
        fc_api.DRIVES.check({"drive_id": "x", "is_root_device": False, "bogus": 1}, "x")
    with pytest.raises(VmmError, match="must equal the path's id"):
        fc_api.DRIVES.check({"drive_id": "x", "is_root_device": False}, "y")


def test_jailer_argv() -> None:
    uid = jail_uid("0123456789ab")
    spec_ = JailSpec(
        id="0123456789ab",
        jailer=Path("/usr/bin/jailer"),
        firecracker=Path("/usr/bin/firecracker"),
        jail_base=Path("/var/lib/banger/jail"),
        uid=uid,
        gid=uid,
        vcpus=2,
        memory_mib=512,
    )
    assert 900_000 <= uid < 900_000 + 65_536
    assert jailer_argv(spec_) == [
        "/usr/bin/jailer", "--id", "0123456789ab", "--exec-file", "/usr/bin/firecracker",
        "--uid", str(uid), "--gid", str(uid), "--chroot-base-dir", "/var/lib/banger/jail",
        "--cgroup-version", "2", "--cgroup", "cpu.max=200000 100000",
        "--cgroup", f"memory.max={(512 + 256) << 20}", "--new-pid-ns",
        "--", "--api-sock", "/api.sock",
    ]  # fmt: skip
    assert spec_.root == Path("/var/lib/banger/jail/firecracker/0123456789ab/root")


def _driver(tmp_path: Path, **env: str) -> FirecrackerVmm:
    firecracker, _ = install(tmp_path / "bin", {"STANDIN_NO_BOOT": "1", **env})
    return FirecrackerVmm(firecracker, None, None, tmp_path / "jail")


def test_launch_configures_the_stand_in_and_ctrl_alt_del_stops_it(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    vmm = _driver(tmp_path)
    pid = vmm.launch(cfg)
    try:
        assert vmm.pid(cfg.run_dir) == pid
        assert vmm.running_under(tmp_path / "vms") == {cfg.run_dir: pid}
        assert vmm.metrics(cfg.run_dir)["api_server"]["requests"] >= 10
        # Pre-boot calls are refused once it runs, with Firecracker's words.
        client = fc_api.ApiClient(cfg.control_socket, vm=cfg.name)
        with pytest.raises(VmmError, match="not supported after starting the microVM"):
            client.send(requests(cfg, str, "/x")[2])
        assert vmm.shutdown(cfg.run_dir)
        deadline = time.monotonic() + 10
        while vmm.pid(cfg.run_dir) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert vmm.pid(cfg.run_dir) is None
    finally:
        vmm.kill(cfg.run_dir)
    assert not cfg.control_socket.exists() and not cfg.pidfile.exists()


def test_an_api_error_names_the_step_quotes_firecracker_and_leaves_nothing(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    vmm = _driver(tmp_path, STANDIN_FAIL="drives")
    with pytest.raises(VmmError) as info:
        vmm.launch(cfg)
    message = info.value.message
    assert "Firecracker refused drive bgroot (400)" in message
    assert "Stand-in told to refuse /drives/{drive_id}" in message and "\n" not in message
    assert vmm.running_under(tmp_path / "vms") == {}
    assert not cfg.control_socket.exists() and not cfg.pidfile.exists()


def test_doctor_says_which_vmm_auto_picks_and_why(tmp_path: Path) -> None:
    from banger.config import Settings
    from banger.doctor import Host, check_vmm_choice

    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "kvm").touch()
    settings = Settings(home=tmp_path / "home")
    kvm_host = Host(dev=tmp_path / "dev", sys_module=tmp_path, boot=tmp_path, which=str)
    check = check_vmm_choice(settings, kvm_host)
    assert (check.status, check.detail) == (
        "ok",
        "auto picks firecracker: Firecracker is installed and KVM can run guests",
    )
    (tmp_path / "kvm_pvm").mkdir()  # the module of a KVM that cannot run stock kernels
    check = check_vmm_choice(settings, kvm_host)
    assert (
        check.status == "info"
        and "auto picks qemu: Firecracker is installed but needs KVM" in check.detail
    )
