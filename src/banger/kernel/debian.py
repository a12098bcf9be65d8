"""Fetch a Debian kernel package with the host's apt and turn it into a banger kernel.

``apt-get download`` needs no root and uses the host's own apt sources, so no
mirror is named here. The result directory holds ``vmlinuz``, ``config``,
``version``, ``modules/<version>/`` and banger's ``initramfs.img``.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from banger import proc
from banger.errors import HostError
from banger.kernel.initramfs import build_initramfs

log = logging.getLogger("banger.kernel")

BUSYBOX_PACKAGE = "busybox-static"
_APT_HINT = "check the host's apt sources and run `apt-get update` as root"


@dataclass(frozen=True)
class KernelInfo:
    name: str  # the versioned package, e.g. linux-image-6.1.0-28-cloud-amd64
    version: str  # the kernel release, e.g. 6.1.0-28-cloud-amd64
    vmlinuz: Path
    initrd: Path
    modules_dir: Path  # a lib/modules tree: it holds <version>/
    config: Path


def resolve_package(package: str) -> str:
    """The concrete ``linux-image-<version>`` package behind a metapackage."""
    if re.fullmatch(r"linux-image-\d.*", package):
        return package
    text = proc.output(["apt-cache", "depends", "--no-recommends", "--no-suggests", package])
    for line in text.splitlines():
        m = re.match(r"\s*\|?Depends:\s*(linux-image-\d\S*)", line)
        if m:
            return m.group(1)
    raise HostError(f"apt does not know which kernel {package} stands for", hint=_APT_HINT)


def _download(package: str, into: Path) -> Path:
    proc.run(["apt-get", "download", "-q", package], cwd=into, timeout=900)
    debs = sorted(into.glob(f"{package}_*.deb"))
    if not debs:
        raise HostError(f"apt-get download {package} produced no .deb file", hint=_APT_HINT)
    return debs[-1]


def _unpack(deb: Path, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    proc.run(["dpkg-deb", "-x", deb, into])
    return into


def fetch_busybox(work: Path) -> Path:
    """A static busybox from Debian's busybox-static, unpacked under ``work``."""
    deb = _download(BUSYBOX_PACKAGE, work)
    busybox = _unpack(deb, work / "busybox") / "bin" / "busybox"
    if not busybox.is_file():
        raise HostError(f"{BUSYBOX_PACKAGE} holds no bin/busybox", hint=_APT_HINT)
    return busybox


def _kernel_files(root: Path) -> tuple[str, Path, Path, Path]:
    """(version, vmlinuz, config, lib/modules dir) inside an unpacked kernel package."""
    images = sorted((root / "boot").glob("vmlinuz-*"))
    if not images:
        raise HostError("the kernel package holds no boot/vmlinuz-*", hint=_APT_HINT)
    version = images[-1].name.removeprefix("vmlinuz-")
    for base in (root / "lib" / "modules", root / "usr" / "lib" / "modules"):
        if (base / version).is_dir():
            return version, images[-1], root / "boot" / f"config-{version}", base
    raise HostError(f"the kernel package holds no modules for {version}", hint=_APT_HINT)


def fetch_debian_kernel(
    dest: Path,
    *,
    package: str = "linux-image-cloud-amd64",
    progress: Callable[[str], None] = lambda s: None,
) -> KernelInfo:
    """Download ``package`` and busybox-static, build the initramfs, fill ``dest``.

    Everything is assembled next to ``dest`` and renamed into place at the end,
    so a failure leaves no half-made kernel directory behind.
    """
    if dest.exists():
        raise HostError(f"{dest} already exists", hint="delete the kernel first")
    dest.parent.mkdir(parents=True, exist_ok=True)
    versioned = resolve_package(package)
    progress(f"{package} is {versioned}")
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.", dir=dest.parent) as tmp:
        work = Path(tmp)
        progress(f"downloading {versioned} and {BUSYBOX_PACKAGE}")
        kernel_deb = _download(versioned, work)
        busybox = fetch_busybox(work)
        progress("unpacking")
        version, vmlinuz, config, modules = _kernel_files(_unpack(kernel_deb, work / "kernel"))

        out = work / "result"
        out.mkdir()
        vmlinuz.rename(out / "vmlinuz")
        if config.is_file():
            config.rename(out / "config")
        (out / "modules").mkdir()
        (modules / version).rename(out / "modules" / version)
        shutil.copy2(busybox, out / "busybox")
        (out / "version").write_text(f"{version}\n")
        progress(f"building the initramfs for {version}")
        build_initramfs(out / "modules", version, out / "busybox", out / "initramfs.img")
        out.rename(dest)
    log.info("kernel %s (%s) ready in %s", versioned, version, dest)
    return KernelInfo(
        name=versioned,
        version=version,
        vmlinuz=dest / "vmlinuz",
        initrd=dest / "initramfs.img",
        modules_dir=dest / "modules",
        config=dest / "config",
    )
