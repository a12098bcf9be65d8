"""A boot snapshot's key, and the pure decision a create makes with it.

A boot snapshot is the guest as it was once its own init had finished
booting (``warm.py`` says why not earlier). A create may restore one instead
of booting only if it would have booted the very same guest: the same image
content and guest agent, kernel, initramfs and kernel command line (less the
name and address, which the identity step sets), the same VMM and version,
vCPUs, memory and disk sizes.
The key spells each of those out, so a create that does not match can say
what changed; anything the key cannot express (shared directories, a jailed
Firecracker) never takes part.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import banger
from banger.api.models import Snapshot
from banger.config import Settings
from banger.daemon.plan import HostFacts, plan_vm
from banger.daemon.vms import CreateRequest
from banger.net import plan as netplan
from banger.units import format_size

# Bumped when the key's fields change: every older boot snapshot is then stale.
KEY_VERSION = "2"  # 2: saved once init has finished booting, not when the agent answers
# Fields that tell boot snapshots of one image apart; they may coexist. A
# difference anywhere else makes the older one stale: it is replaced.
SHAPE = ("vmm", "vcpus", "memory_mib", "overlay_bytes", "work_disk_bytes")
_SIZES = ("memory_mib", "overlay_bytes", "work_disk_bytes")
_LABELS = {
    "key_version": "banger's boot snapshot format",
    "image_disk": "the image's disk",
    "image_made": "the image",
    "agent_build": "the image's guest agent",
    "kernel": "the kernel",
    "kernel_file": "the kernel file",
    "initrd": "the initramfs",
    "cmdline": "the kernel command line",
    "vmm": "VMM",
    "vmm_version": "the VMM's version",
    "banger": "banger's version",
    "vcpus": "vCPUs",
    "memory_mib": "memory",
    "overlay_bytes": "overlay size",
    "work_disk_bytes": "work disk size",
}


def _file(path: Path) -> str:
    """A file's identity: its path, size and modification time (a file replaced in place)."""
    try:
        st = path.stat()
    except OSError:
        return f"{path} (missing)"
    return f"{path} {st.st_size} {st.st_mtime_ns}"


@dataclass(frozen=True)
class BootKey:
    fields: dict[str, str]

    @property
    def text(self) -> str:
        return json.dumps(self.fields, sort_keys=True)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    @property
    def image(self) -> str:
        return self.fields["image"]

    @property
    def name(self) -> str:
        # '@' is never in a user's snapshot name: the two can never collide.
        return f"{self.image}@boot-{self.digest[:12]}"


def boot_key(req: CreateRequest, settings: Settings, host: HostFacts, vmm_version: str) -> BootKey:
    """The key of the guest this create would boot (pure but for reading two files' stat)."""
    image, kernel, vm = req.sources.image, req.sources.kernel, req.vm
    # The command line as any VM of this shape boots with it: name and address
    # are the only per-VM words, and the identity step gives those.
    placeholder = vm.model_copy(
        update={"name": "warm", "ip": str(netplan.gateway(settings.network))}
    )
    plan = plan_vm(settings, placeholder, req.sources, host)
    initrd = plan.vmm.initrd
    fields = {
        "key_version": KEY_VERSION,
        "image": image.name,
        "image_disk": _file(Path(image.rootfs)),
        "image_made": image.created_at,
        "agent_build": str(image.config.get("agent_build", "")),
        "kernel": kernel.name,
        # The bzImage for either VMM: Firecracker's vmlinux is derived from it.
        "kernel_file": _file(Path(kernel.vmlinuz)),
        # banger's own initramfs is named after its content; another one is a file.
        "initrd": str(initrd) if req.sources.own_initrd else _file(initrd),
        "cmdline": plan.vmm.cmdline,
        "vmm": vm.vmm,
        "vmm_version": vmm_version,
        "banger": banger.__version__,
        "vcpus": str(vm.vcpus),
        "memory_mib": str(vm.memory_mib),
        "overlay_bytes": str(vm.overlay_bytes),
        "work_disk_bytes": str(vm.work_disk_bytes),
    }
    return BootKey(fields)


def why_not_warm(req: CreateRequest, *, enabled: bool, jailed: bool) -> str | None:
    """Why this create boots without a boot snapshot at all (None: it takes part)."""
    if not enabled:
        return "warm start is off (the warm_start setting, BANGER_WARM_START)"
    if req.cold:
        return "--cold"
    if req.no_start:
        return "--no-start"
    if req.sources.image.channel == 0:
        return f"image {req.sources.image.name} has no banger agent"
    if req.vm.mounts:
        return "--mount shares a host directory the snapshot cannot hold"
    if jailed:
        return "Firecracker runs jailed"
    return None


class Action(StrEnum):
    RESTORE = "restore"  # a boot snapshot with this key exists
    SAVE = "save"  # none does: boot, then save one
    BOOT = "boot"  # another create is saving this key's right now: just boot


@dataclass(frozen=True)
class Decision:
    action: Action
    snapshot: Snapshot | None = None
    # What differs from the image's newest boot snapshot, for one progress line.
    changed: list[str] = field(default_factory=list)
    # The image's boot snapshots a new one replaces.
    stale: list[str] = field(default_factory=list)


def key_fields(snap: Snapshot) -> dict[str, str]:
    try:
        fields = json.loads(snap.boot_key or "{}")
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in fields.items()} if isinstance(fields, dict) else {}


def decide(key: BootKey, existing: list[Snapshot], *, saving: bool) -> Decision:
    """Restore, boot and save, or just boot; ``existing`` is the image's, newest first."""
    if saving:
        return Decision(Action.BOOT)
    for snap in existing:
        if key_fields(snap) == key.fields:
            return Decision(Action.RESTORE, snapshot=snap)
    changed = describe(key_fields(existing[0]), key.fields) if existing else []
    stale = [s.name for s in existing if is_stale(key_fields(s), key.fields)]
    return Decision(Action.SAVE, changed=changed, stale=stale)


def is_stale(old: dict[str, str], new: dict[str, str]) -> bool:
    """``old`` was made of what this image no longer boots with: kernel, agent, banger..."""
    if old.get("image") != new.get("image"):
        return False
    base = [k for k in new if k not in SHAPE and k != "vmm_version"]
    if any(old.get(k) != new[k] for k in base):
        return True
    return old.get("vmm") == new.get("vmm") and old.get("vmm_version") != new.get("vmm_version")


def describe(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """What differs, in words: `memory 512 MiB -> 1 GiB`, `the kernel file`."""
    out = []
    for name, value in new.items():
        before = old.get(name)
        if before == value:
            continue
        label = _LABELS.get(name, name)
        if name in SHAPE and before is not None:
            out.append(f"{label} {_shown(name, before)} -> {_shown(name, value)}")
        else:
            out.append(label)
    return out


def _shown(name: str, value: str) -> str:
    if name == "memory_mib" and value.isdigit():
        return f"{value} MiB"  # as --memory takes it
    if name in _SIZES and value.isdigit():
        return format_size(int(value))
    return value
