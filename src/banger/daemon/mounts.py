"""Shared host directories: ``--mount HOST_DIR:GUEST_DIR[:ro]``, checked before a create.

Under QEMU a mount is a virtio-9p device (``security_model=passthrough``)
that banger's ``/init`` mounts at GUEST_DIR before the image's init runs.
Passthrough because the guest should see the host's files as the host has
them: the owner's uid and gid, modes, symlinks as symlinks; and what the
guest writes lands as plain files the host can read, owned as the guest
wrote them. (``mapped-xattr`` would keep the guest's ownership in xattrs
and store symlinks and devices as regular files, so the host would see a
different tree from the guest.) Where QEMU runs as the owner rather than
root it cannot chown, and passthrough would fail every guest write, so it
gets ``none``: the same view, the chown skipped, new files the owner's.
The directory is QEMU's to read and write with QEMU's own rights; ``:ro``
makes the device and the guest mount read-only.

Firecracker has no shared-filesystem device; a mount there is refused.
"""

from __future__ import annotations

import re
from pathlib import Path

from banger.api.models import Mount
from banger.config import Settings
from banger.errors import UserError
from banger.kernel import modules as kmod

MOUNT_TAG_PREFIX = "bgfs"
# Words of the kernel command line: a guest path must not break one.
_GUEST_DIR_RE = re.compile(r"/[A-Za-z0-9._/+@-]*")
_HINT = "write --mount HOST_DIR:GUEST_DIR[:ro], e.g. --mount ./src:/src or --mount /data:/data:ro"
# What the guest needs to mount a 9p share over virtio.
NINEP_MODULES = ("9p", "9pnet", "9pnet_virtio")


def parse_mount(spec: str, index: int, settings: Settings) -> Mount:
    """One ``--mount`` value, checked against the host; UserError naming what is wrong."""
    parts = spec.split(":")
    read_only = False
    if len(parts) == 3 and parts[2] in ("ro", "rw"):
        read_only = parts.pop() == "ro"
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise UserError(f"--mount {spec!r} is not HOST_DIR:GUEST_DIR[:ro]", hint=_HINT)
    host = Path(parts[0]).expanduser()
    if not host.is_absolute():
        raise UserError(
            f"--mount {spec!r}: the host directory must be an absolute path here",
            hint="the CLI makes relative paths absolute; over the API send one",
        )
    _check_host_dir(host, spec, settings)
    guest = parts[1]
    if not _GUEST_DIR_RE.fullmatch(guest) or "/../" in f"{guest}/" or "/./" in f"{guest}/":
        raise UserError(
            f"--mount {spec!r}: the guest directory {guest!r} must be an absolute path of"
            " letters, digits and . _ - + @",
            hint=_HINT,
        )
    guest = guest.rstrip("/") or "/"
    if guest == "/":
        raise UserError(
            f"--mount {spec!r} would hide the guest's whole root",
            hint="mount it at a directory such as /mnt/host or /src",
        )
    return Mount(
        host_dir=str(host.resolve()),
        guest_dir=guest,
        read_only=read_only,
        tag=f"{MOUNT_TAG_PREFIX}{index}",
    )


def _check_host_dir(host: Path, spec: str, settings: Settings) -> None:
    if not host.exists():
        raise UserError(f"--mount {spec!r}: {host} does not exist", hint="create it first")
    if not host.is_dir():
        raise UserError(
            f"--mount {spec!r}: {host} is not a directory",
            hint="mount the directory that holds it; `banger vm cp` copies single files",
        )
    real = host.resolve()
    if real == Path("/"):
        raise UserError(
            f"--mount {spec!r} would share the host's whole filesystem",
            hint="share the project directory you need, e.g. --mount ~/src/app:/src",
        )
    for own in (settings.home, settings.runtime_dir, settings.cache_dir):
        own = own.resolve()
        if real == own or own in real.parents:
            raise UserError(
                f"--mount {spec!r}: {real} holds banger's own state ({own})",
                hint="share a directory outside it",
            )


def check_mounts(specs: list[str], settings: Settings, *, vmm: str) -> list[Mount]:
    """Every ``--mount`` of a create request, or an error before anything exists."""
    if specs and vmm == "firecracker":
        raise UserError(
            "Firecracker has no shared-directory device, so --mount works only with --vmm qemu",
            hint="copy files in with `banger vm workspace prepare` or `banger vm cp`",
        )
    mounts = [parse_mount(spec, index, settings) for index, spec in enumerate(specs)]
    seen: set[str] = set()
    for mount in mounts:
        if mount.guest_dir in seen:
            raise UserError(
                f"two --mount options share the guest directory {mount.guest_dir}",
                hint="give each mount its own guest directory",
            )
        seen.add(mount.guest_dir)
    return mounts


def kernel_has_9p(kernel_dir: Path, version: str) -> bool:
    """Whether a kernel banger builds the initramfs of has the 9p modules (or built in)."""
    tree = kernel_dir / "modules" / version
    if not tree.is_dir():
        return False
    index = kmod.index_modules(tree)
    builtin_file = tree / "modules.builtin"
    builtin = (
        {kmod.module_name(Path(line)) for line in builtin_file.read_text().split()}
        if builtin_file.is_file()
        else set()
    )
    return all(name in index or name in builtin for name in NINEP_MODULES)
