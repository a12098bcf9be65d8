"""Plan a VM purely: its record, every path, disk, key file and VMM argument.

``decide_vm`` turns a create request into the VM's record (the one place
defaults are applied); ``plan_vm`` turns a record and the image and kernel
records into everything a create or a start needs. Neither touches the
host: the executor (``runtime.py``) applies a plan with its undo.
"""

from __future__ import annotations

import ipaddress
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

from banger.api.models import Image, Kernel, Vm, VmCreate, VmState
from banger.config import Settings
from banger.errors import UserError
from banger.guest import boot
from banger.kernel.initramfs import initramfs_path
from banger.net import plan as netplan
from banger.units import parse_size
from banger.vmm.base import DiskSpec, NetSpec, ShareSpec, VmmConfig

# The guest mounts the disk with this serial at /root (see guest/init.sh).
WORK_SERIAL = "bgwork"
DEFAULT_OVERLAY = "4G"
DEFAULT_WORK_DISK = "8G"

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


def host_memory_mib() -> int:
    """This host's physical memory in MiB."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)


def default_memory_mib(total_mib: int | None = None) -> int:
    """An eighth of the host's memory, between 256 MiB and 2 GiB."""
    if total_mib is None:
        total_mib = host_memory_mib()
    return max(256, min(2048, total_mib // 8))


@dataclass(frozen=True)
class HostFacts:
    """What the plan needs to know of the host, measured once at daemon start."""

    vmm: str  # what "auto" picks here
    accel: str  # "kvm" or "tcg"
    accel_reason: str
    tsc_khz: int | None
    cpu_count: int
    memory_mib: int
    vmm_reason: str = ""
    # Whether bangerd (and so the VMM it launches) runs as root.
    root: bool = True


@dataclass(frozen=True)
class VmPaths:
    """Every file of a VM, under its own directory; spelled here only."""

    dir: Path

    @property
    def overlay(self) -> Path:
        return self.dir / "overlay.ext4"

    @property
    def work_disk(self) -> Path:
        return self.dir / "work.ext4"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @property
    def host_key(self) -> Path:
        return self.dir / "ssh_host_ed25519_key"

    @property
    def ssh_config(self) -> Path:
        return self.dir / "ssh_config"

    @property
    def host_key_pub(self) -> Path:
        return self.dir / "ssh_host_ed25519_key.pub"


def vm_paths(vm: Vm) -> VmPaths:
    return VmPaths(Path(vm.dir))


def host_key_alias(vm: Vm) -> str:
    # Keyed by id, not address or name: a reused IP or name never meets a stale key.
    return f"banger-{vm.id}"


def decide_vm(
    req: VmCreate,
    *,
    vm_id: str,
    name: str,
    image: Image,
    settings: Settings,
    host: HostFacts,
    now: str,
) -> Vm:
    """The record of a new VM (its address comes with its lease): defaults applied here only."""
    return Vm(
        id=vm_id,
        name=name,
        image=image.name,
        state=VmState.CREATING,
        vcpus=req.vcpus or settings.default_vcpus or default_vcpus(host.cpu_count),
        memory_mib=req.memory_mib
        or settings.default_memory_mib
        or default_memory_mib(host.memory_mib),
        overlay_bytes=parse_size(
            req.system_overlay_size or DEFAULT_OVERLAY, what="--system-overlay-size"
        ),
        work_disk_bytes=parse_size(
            req.work_disk_size or DEFAULT_WORK_DISK, what="--work-disk-size"
        ),
        nat=req.nat,
        forward_ports=req.forward_ports or ("auto" if settings.forward_ports == "auto" else "off"),
        ip="",
        tap=netplan.tap_name(vm_id),
        mac=netplan.mac_address(vm_id),
        vmm=req.vmm if req.vmm and req.vmm != "auto" else host.vmm,
        dir=str(settings.vms_dir / vm_id),
        created_at=now,
    )


@dataclass(frozen=True)
class InitrdBuild:
    """banger builds this kernel's initramfs itself; the executor makes it when missing."""

    modules: Path
    busybox: Path
    version: str
    out: Path


@dataclass(frozen=True)
class DiskPlan:
    overlay: Path
    overlay_bytes: int
    work: Path | None
    work_bytes: int
    # The image's /root, copied onto a new work disk.
    work_seed: Path | None


@dataclass(frozen=True)
class VmlinuxBuild:
    """Firecracker boots the kernel's ELF form; the executor derives it when missing."""

    bzimage: Path
    out: Path


@dataclass(frozen=True)
class VmPlan:
    vm: Vm
    paths: VmPaths
    host_key_alias: str
    disks: DiskPlan
    initrd_build: InitrdBuild | None
    vmm: VmmConfig
    vmlinux_build: VmlinuxBuild | None = None

    @property
    def dir(self) -> Path:
        return self.paths.dir


@dataclass(frozen=True)
class Sources:
    """The records a VM is planned from, read once per create or start."""

    image: Image
    kernel: Kernel
    # The kernel's directory holds its modules and busybox: banger builds its initramfs.
    own_initrd: bool


def _initrd(sources: Sources) -> tuple[Path, InitrdBuild | None]:
    kernel = sources.kernel
    if not sources.own_initrd:
        return Path(kernel.initrd), None  # imported as it is: not banger's to rebuild
    kernel_dir = Path(kernel.dir)
    # Named after banger's /init, so an upgraded banger never boots a stale one.
    out = initramfs_path(kernel_dir)
    build = InitrdBuild(kernel_dir / "modules", kernel_dir / "busybox", kernel.version, out)
    return out, build


def _kernel(vm: Vm, kernel: Kernel) -> tuple[Path, VmlinuxBuild | None]:
    if vm.vmm != "firecracker":
        return Path(kernel.vmlinuz), None
    vmlinux = Path(kernel.vmlinux or Path(kernel.dir) / "vmlinux")
    return vmlinux, VmlinuxBuild(Path(kernel.vmlinuz), vmlinux)


def plan_vm(settings: Settings, vm: Vm, sources: Sources, host: HostFacts) -> VmPlan:
    image, kernel = sources.image, sources.kernel
    paths = vm_paths(vm)
    network = settings.network
    extra: list[str] = []
    if host.accel == "tcg" and host.tsc_khz:
        # Without it, microvm under TCG hangs now and then calibrating the TSC.
        extra.append(f"tsc_early_khz={host.tsc_khz}")
    disks = [
        DiskSpec(Path(image.rootfs), boot.ROOT_SERIAL, read_only=True),
        DiskSpec(paths.overlay, boot.OVERLAY_SERIAL),
    ]
    work = None
    if vm.work_disk_bytes:
        work = paths.work_disk
        disks.append(DiskSpec(work, WORK_SERIAL))
        extra.append(f"banger.work={WORK_SERIAL}")
    if image.init:
        extra.append(f"banger.init={image.init}")
    # One word per shared directory; /init mounts each tag at its guest path.
    for mount in vm.mounts:
        extra.append(
            f"banger.mount={mount.tag},{'ro' if mount.read_only else 'rw'},{mount.guest_dir}"
        )
    # The disks' names in attach order: /init's fallback where a VMM (Firecracker)
    # does not report the serial banger gave (see guest/init.sh).
    extra.append("banger.disks=" + ",".join(disk.serial for disk in disks))
    cmdline = boot.kernel_cmdline(
        ip=ipaddress.IPv4Interface(f"{vm.ip}/{network.prefixlen}"),
        gateway=netplan.gateway(network),
        dns=netplan.gateway(network),
        hostname=vm.name,
        extra=extra,
    )
    initrd, build = _initrd(sources)
    kernel_path, vmlinux_build = _kernel(vm, kernel)
    config = VmmConfig(
        name=vm.name,
        vcpus=vm.vcpus,
        memory_mib=vm.memory_mib,
        kernel=kernel_path,
        initrd=initrd,
        cmdline=cmdline,
        disks=tuple(disks),
        net=NetSpec(tap=vm.tap, mac=vm.mac),
        run_dir=paths.dir,
        accel=host.accel,
        shares=tuple(
            ShareSpec(
                Path(m.host_dir),
                m.tag,
                m.read_only,
                security_model="passthrough" if host.root else "none",
            )
            for m in vm.mounts
        ),
    )
    return VmPlan(
        vm=vm,
        paths=paths,
        host_key_alias=host_key_alias(vm),
        disks=DiskPlan(
            overlay=paths.overlay,
            overlay_bytes=vm.overlay_bytes,
            work=work,
            work_bytes=vm.work_disk_bytes,
            work_seed=Path(image.work_seed) if image.work_seed else None,
        ),
        initrd_build=build,
        vmm=config,
        vmlinux_build=vmlinux_build,
    )
