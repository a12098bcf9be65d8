"""Plan a VM's launch purely: every path, name and argument, touching nothing."""

from __future__ import annotations

import ipaddress
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

from banger.api.models import Image, Kernel, Vm
from banger.config import Settings
from banger.errors import UserError
from banger.guest import boot
from banger.net import plan as netplan
from banger.vmm.base import DiskSpec, NetSpec, VmmConfig

# The guest mounts the disk with this serial at /root (see guest/init.sh).
WORK_SERIAL = "bgwork"

NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?")

_ADJECTIVES = (
    "brisk",
    "calm",
    "eager",
    "fuzzy",
    "jolly",
    "keen",
    "lucid",
    "merry",
    "quiet",
    "swift",
)
_NOUNS = ("otter", "heron", "lynx", "marten", "osprey", "puffin", "stoat", "tern", "vole", "wren")


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise UserError(
            f"{name!r} is not a valid VM name",
            hint="use 1-32 lowercase letters, digits and dashes (it becomes NAME.vm in DNS),"
            " starting and ending with a letter or digit",
        )
    return name


def random_name(taken: set[str]) -> str:
    rng = random.SystemRandom()
    for _ in range(100):
        name = f"{rng.choice(_ADJECTIVES)}-{rng.choice(_NOUNS)}"
        if name not in taken:
            return name
    return f"vm-{rng.randrange(16**6):06x}"


def default_vcpus(cpu_count: int | None = None) -> int:
    """Half the host's cores, between 1 and 4: the host stays usable."""
    cores = cpu_count or os.cpu_count() or 1
    return max(1, min(4, cores // 2))


def default_memory_mib(total_mib: int | None = None) -> int:
    """An eighth of the host's memory, between 256 MiB and 2 GiB."""
    if total_mib is None:
        total_mib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    return max(256, min(2048, total_mib // 8))


@dataclass(frozen=True)
class VmPlan:
    vm: Vm
    dir: Path
    overlay: Path
    work_disk: Path | None
    known_hosts: Path
    host_key_alias: str
    vmm: VmmConfig


def host_key_alias(vm: Vm) -> str:
    # Keyed by id, not address or name: a reused IP or name never meets a stale key.
    return f"banger-{vm.id}"


def plan_vm(
    settings: Settings,
    vm: Vm,
    image: Image,
    kernel: Kernel,
    *,
    accel: str,
    tsc_khz: int | None,
) -> VmPlan:
    vm_dir = Path(vm.dir)
    network = settings.network
    extra: list[str] = []
    if accel == "tcg" and tsc_khz:
        # Without it, microvm under TCG hangs now and then calibrating the TSC.
        extra.append(f"tsc_early_khz={tsc_khz}")
    overlay = vm_dir / "overlay.ext4"
    disks = [
        DiskSpec(Path(image.rootfs), boot.ROOT_SERIAL, read_only=True),
        DiskSpec(overlay, boot.OVERLAY_SERIAL),
    ]
    work_disk = None
    if vm.work_disk_bytes:
        work_disk = vm_dir / "work.ext4"
        disks.append(DiskSpec(work_disk, WORK_SERIAL))
        extra.append(f"banger.work={WORK_SERIAL}")
    if image.init:
        extra.append(f"banger.init={image.init}")
    cmdline = boot.kernel_cmdline(
        ip=ipaddress.IPv4Interface(f"{vm.ip}/{network.prefixlen}"),
        gateway=netplan.gateway(network),
        dns=netplan.gateway(network),
        hostname=vm.name,
        extra=extra,
    )
    config = VmmConfig(
        name=vm.name,
        vcpus=vm.vcpus,
        memory_mib=vm.memory_mib,
        kernel=Path(kernel.vmlinuz),
        initrd=Path(kernel.initrd),
        cmdline=cmdline,
        disks=tuple(disks),
        net=NetSpec(tap=vm.tap, mac=vm.mac),
        run_dir=vm_dir,
        accel=accel,
    )
    return VmPlan(
        vm=vm,
        dir=vm_dir,
        overlay=overlay,
        work_disk=work_disk,
        known_hosts=vm_dir / "known_hosts",
        host_key_alias=host_key_alias(vm),
        vmm=config,
    )
