"""Planning a VM is pure: compare the values, touch nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from banger.api.models import Image, Kernel, Vm, VmState
from banger.daemon.plan import (
    check_name,
    default_memory_mib,
    default_vcpus,
    plan_vm,
    random_name,
)
from banger.errors import UserError
from banger.guest import boot
from banger.net import plan as netplan


def make_vm(settings, ip: str = "10.77.0.2") -> Vm:
    return Vm(
        id="0123456789ab",
        name="dev",
        image="img",
        state=VmState.CREATING,
        vcpus=2,
        memory_mib=512,
        overlay_bytes=4 << 30,
        ip=ip,
        tap=netplan.tap_name("0123456789ab"),
        mac=netplan.mac_address("0123456789ab"),
        vmm="qemu",
        dir=str(settings.vms_dir / "0123456789ab"),
        created_at="t",
    )


KERNEL = Kernel(
    name="k",
    version="6.1",
    dir="/k",
    vmlinuz="/k/vmlinuz",
    initrd="/k/initramfs.img",
    source="t",
    created_at="t",
)
IMAGE = Image(
    name="img",
    kernel="k",
    rootfs="/images/img/rootfs.ext4",
    size_bytes=1 << 30,
    source="t",
    created_at="t",
)


def test_plan_shares_the_image_read_only_and_gives_the_vm_its_overlay(settings):
    plan = plan_vm(settings, make_vm(settings), IMAGE, KERNEL, accel="tcg", tsc_khz=2_000_000)
    root, overlay = plan.vmm.disks
    assert root.path == Path(IMAGE.rootfs) and root.read_only and root.serial == boot.ROOT_SERIAL
    assert overlay.path == settings.vms_dir / "0123456789ab" / "overlay.ext4"
    assert not overlay.read_only and overlay.serial == boot.OVERLAY_SERIAL
    assert plan.vmm.kernel == Path("/k/vmlinuz") and plan.vmm.initrd == Path("/k/initramfs.img")
    assert (plan.vmm.vcpus, plan.vmm.memory_mib) == (2, 512)
    assert plan.vmm.net is not None and plan.vmm.net.tap == "bgt0123456789"
    assert plan.host_key_alias == "banger-0123456789ab"


def test_cmdline_carries_address_gateway_hostname_and_tsc_under_tcg(settings):
    plan = plan_vm(settings, make_vm(settings), IMAGE, KERNEL, accel="tcg", tsc_khz=2_000_000)
    args = plan.vmm.cmdline.split()
    assert "banger.ip=10.77.0.2/24" in args
    assert "banger.gw=10.77.0.1" in args
    assert "banger.hostname=dev" in args
    assert "tsc_early_khz=2000000" in args
    kvm = plan_vm(settings, make_vm(settings), IMAGE, KERNEL, accel="kvm", tsc_khz=2_000_000)
    assert "tsc_early_khz=2000000" not in kvm.vmm.cmdline


def test_tap_names_fit_ifnamsiz_and_macs_are_local_unicast():
    assert len(netplan.tap_name("f" * 32)) <= 15
    mac = netplan.mac_address("abc")
    first = int(mac.split(":")[0], 16)
    assert first & 0b10 and not first & 0b1
    assert mac == netplan.mac_address("abc") != netplan.mac_address("abd")


@pytest.mark.parametrize("name", ["dev", "a", "my-vm-2", "x" * 32])
def test_good_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "Dev", "-a", "a-", "a_b", "a.b", "x" * 33, "a b", "$(x)"])
def test_bad_names_are_user_errors_with_hints(name):
    with pytest.raises(UserError) as err:
        check_name(name)
    assert err.value.hint


def test_random_names_avoid_taken_ones():
    taken = {random_name(set()) for _ in range(50)}
    assert random_name(taken) not in taken


def test_host_aware_defaults():
    assert default_vcpus(2) == 1 and default_vcpus(16) == 4 and default_vcpus(1) == 1
    assert default_memory_mib(24 * 1024) == 2048
    assert default_memory_mib(1024) == 256


def test_work_disk_and_image_init_reach_the_cmdline(settings):
    vm = make_vm(settings).model_copy(update={"work_disk_bytes": 1 << 30})
    image = IMAGE.model_copy(update={"init": "/.banger/agent"})
    plan = plan_vm(settings, vm, image, KERNEL, accel="kvm", tsc_khz=None)
    assert plan.work_disk == settings.vms_dir / "0123456789ab" / "work.ext4"
    assert plan.vmm.disks[-1].path == plan.work_disk and plan.vmm.disks[-1].serial == "bgwork"
    args = plan.vmm.cmdline.split()
    assert "banger.work=bgwork" in args and "banger.init=/.banger/agent" in args
    no_work = plan_vm(settings, make_vm(settings), IMAGE, KERNEL, accel="kvm", tsc_khz=None)
    assert no_work.work_disk is None and len(no_work.vmm.disks) == 2
    assert "banger.work" not in no_work.vmm.cmdline and "banger.init" not in no_work.vmm.cmdline
