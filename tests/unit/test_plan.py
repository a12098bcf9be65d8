"""Planning a VM is pure: compare the values, touch nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from banger.api.models import Image, Kernel, Vm, VmCreate, VmState
from banger.daemon.plan import (
    HostFacts,
    Sources,
    check_name,
    decide_vm,
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


TCG = HostFacts(
    vmm="qemu", accel="tcg", accel_reason="t", tsc_khz=2_000_000, cpu_count=2, memory_mib=24576
)
KVM = HostFacts(
    vmm="qemu", accel="kvm", accel_reason="t", tsc_khz=2_000_000, cpu_count=2, memory_mib=24576
)


def plan_of(settings, vm, image=IMAGE, host=TCG, own_initrd=False):
    return plan_vm(settings, vm, Sources(image, KERNEL, own_initrd=own_initrd), host)


def test_plan_shares_the_image_read_only_and_gives_the_vm_its_overlay(settings):
    plan = plan_of(settings, make_vm(settings))
    root, overlay = plan.vmm.disks
    assert root.path == Path(IMAGE.rootfs) and root.read_only and root.serial == boot.ROOT_SERIAL
    assert overlay.path == settings.vms_dir / "0123456789ab" / "overlay.ext4"
    assert not overlay.read_only and overlay.serial == boot.OVERLAY_SERIAL
    assert plan.vmm.kernel == Path("/k/vmlinuz") and plan.vmm.initrd == Path("/k/initramfs.img")
    assert (plan.vmm.vcpus, plan.vmm.memory_mib) == (2, 512)
    assert plan.vmm.net is not None and plan.vmm.net.tap == "bgt0123456789"
    assert plan.host_key_alias == "banger-0123456789ab"


def test_cmdline_carries_address_gateway_hostname_and_tsc_under_tcg(settings):
    plan = plan_of(settings, make_vm(settings))
    args = plan.vmm.cmdline.split()
    assert "banger.ip=10.77.0.2/24" in args
    assert "banger.gw=10.77.0.1" in args
    assert "banger.hostname=dev" in args
    assert "tsc_early_khz=2000000" in args
    kvm = plan_of(settings, make_vm(settings), host=KVM)
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
    plan = plan_vm(settings, vm, Sources(image, KERNEL, False), KVM)
    assert plan.disks.work == settings.vms_dir / "0123456789ab" / "work.ext4"
    assert plan.vmm.disks[-1].path == plan.disks.work and plan.vmm.disks[-1].serial == "bgwork"
    args = plan.vmm.cmdline.split()
    assert "banger.work=bgwork" in args and "banger.init=/.banger/agent" in args
    no_work = plan_of(settings, make_vm(settings), host=KVM)
    assert no_work.disks.work is None and len(no_work.vmm.disks) == 2
    assert "banger.work" not in no_work.vmm.cmdline and "banger.init" not in no_work.vmm.cmdline


def test_create_applies_every_default_in_one_place(settings):
    vm = decide_vm(
        VmCreate(),
        vm_id="0123456789ab",
        name="dev",
        image=IMAGE,
        settings=settings,
        host=TCG,
        now="t",
    )
    assert (vm.vcpus, vm.memory_mib) == (1, 2048)  # half of 2 cores; an eighth of 24 GiB
    assert (vm.overlay_bytes, vm.work_disk_bytes) == (4 << 30, 8 << 30)
    assert vm.tap == netplan.tap_name("0123456789ab") and vm.mac == netplan.mac_address(vm.id)
    assert vm.dir == str(settings.vms_dir / "0123456789ab")
    assert (vm.image, vm.vmm, vm.nat, vm.ip) == ("img", "qemu", False, "")
    asked = decide_vm(
        VmCreate(vcpus=3, memory_mib=300, system_overlay_size="1G", work_disk_size="2G", nat=True),
        vm_id="0123456789ab",
        name="dev",
        image=IMAGE,
        settings=settings,
        host=TCG,
        now="t",
    )
    assert (asked.vcpus, asked.memory_mib, asked.nat) == (3, 300, True)
    assert (asked.overlay_bytes, asked.work_disk_bytes) == (1 << 30, 2 << 30)


def test_a_bad_size_is_refused_naming_the_flag(settings):
    with pytest.raises(UserError, match="--work-disk-size"):
        decide_vm(
            VmCreate(work_disk_size="lots"),
            vm_id="x",
            name="dev",
            image=IMAGE,
            settings=settings,
            host=TCG,
            now="t",
        )


def test_the_plan_of_a_create_names_every_file_and_disk(settings):
    vm = make_vm(settings).model_copy(update={"work_disk_bytes": 8 << 30})
    image = IMAGE.model_copy(update={"work_seed": "/images/img/work-seed"})
    plan = plan_of(settings, vm, image=image)
    vm_dir = settings.vms_dir / "0123456789ab"
    assert plan.paths.dir == vm_dir
    assert plan.paths.known_hosts == vm_dir / "known_hosts"
    assert plan.paths.host_key == vm_dir / "ssh_host_ed25519_key"
    assert plan.paths.host_key_pub == vm_dir / "ssh_host_ed25519_key.pub"
    assert plan.disks.overlay == vm_dir / "overlay.ext4" and plan.disks.overlay_bytes == 4 << 30
    assert plan.disks.work == vm_dir / "work.ext4" and plan.disks.work_bytes == 8 << 30
    assert plan.disks.work_seed == Path("/images/img/work-seed")
    assert plan.vmm.run_dir == vm_dir and plan.vmm.console_log == vm_dir / "console.log"
    assert plan.vmm.net is not None and plan.vmm.net.mac == vm.mac


def test_the_plan_of_a_start_uses_banger_s_current_initramfs(settings):
    from banger.kernel.initramfs import initramfs_path

    plan = plan_of(settings, make_vm(settings), own_initrd=True)
    assert plan.vmm.initrd == initramfs_path(Path("/k"))
    assert plan.initrd_build is not None and plan.initrd_build.out == plan.vmm.initrd
    assert plan.initrd_build.modules == Path("/k/modules")
    assert plan.initrd_build.busybox == Path("/k/busybox") and plan.initrd_build.version == "6.1"
    imported = plan_of(settings, make_vm(settings), own_initrd=False)
    assert imported.vmm.initrd == Path("/k/initramfs.img") and imported.initrd_build is None


def test_a_nat_vm_plans_like_any_other_its_policy_is_the_network_s(settings):
    nat = make_vm(settings).model_copy(update={"nat": True})
    assert plan_of(settings, nat).vmm == plan_of(settings, make_vm(settings)).vmm


def test_planning_touches_nothing(settings, tmp_path):
    before = sorted(tmp_path.rglob("*"))
    plan_of(settings, make_vm(settings), own_initrd=True)
    assert sorted(tmp_path.rglob("*")) == before


def test_the_vmm_is_the_requests_or_the_hosts_and_recorded_per_vm(settings):
    def decided(req: VmCreate) -> str:
        vm = decide_vm(
            req, vm_id="0123456789ab", name="dev", image=IMAGE, settings=settings, host=TCG, now="t"
        )
        return vm.vmm

    assert decided(VmCreate()) == "qemu"
    assert decided(VmCreate(vmm="auto")) == "qemu"
    assert decided(VmCreate(vmm="firecracker")) == "firecracker"


def test_a_firecracker_vm_boots_the_elf_vmlinux_and_names_its_disks_by_order(settings):
    vm = make_vm(settings).model_copy(update={"vmm": "firecracker", "work_disk_bytes": 1 << 30})
    plan = plan_of(settings, vm)
    assert plan.vmm.kernel == Path("/k/vmlinux")
    assert plan.vmlinux_build is not None
    assert plan.vmlinux_build.bzimage == Path("/k/vmlinuz")
    # Firecracker's drives report no serial of banger's: /init falls back to this order.
    assert "banger.disks=bgroot,bgoverlay,bgwork" in plan.vmm.cmdline.split()
    recorded = KERNEL.model_copy(update={"vmlinux": "/k/elsewhere/vmlinux"})
    elsewhere = plan_vm(settings, vm, Sources(IMAGE, recorded, own_initrd=False), TCG)
    assert elsewhere.vmm.kernel == Path("/k/elsewhere/vmlinux")
    assert plan_of(settings, make_vm(settings)).vmlinux_build is None  # QEMU boots the bzImage


def test_mounts_reach_the_vmm_and_the_cmdline(settings):
    from banger.api.models import Mount

    vm = make_vm(settings).model_copy(
        update={
            "mounts": [
                Mount(host_dir="/home/u/app", guest_dir="/src", tag="bgfs0"),
                Mount(host_dir="/data", guest_dir="/root/data", read_only=True, tag="bgfs1"),
            ]
        }
    )
    plan = plan_of(settings, vm)
    words = plan.vmm.cmdline.split()
    assert "banger.mount=bgfs0,rw,/src" in words
    assert "banger.mount=bgfs1,ro,/root/data" in words
    assert [(s.path, s.tag, s.read_only) for s in plan.vmm.shares] == [
        (Path("/home/u/app"), "bgfs0", False),
        (Path("/data"), "bgfs1", True),
    ]


def test_an_unprivileged_vmm_shares_without_chown(settings):
    from dataclasses import replace

    from banger.api.models import Mount

    vm = make_vm(settings).model_copy(
        update={"mounts": [Mount(host_dir="/srv", guest_dir="/srv", tag="bgfs0")]}
    )
    assert plan_of(settings, vm).vmm.shares[0].security_model == "passthrough"
    user = plan_of(settings, vm, host=replace(TCG, root=False))
    assert user.vmm.shares[0].security_model == "none"
