"""``banger kernel import``: a kernel from a directory the user points at.

The directory holds a kernel image (``vmlinuz*``, ``bzImage``, ``vmlinux*``,
at the top or under ``boot/``), and either its modules (``lib/modules/VER``
or ``modules/VER``), from which banger builds its own initramfs, or an
initramfs (``initrd*``/``initramfs*``) that must then follow banger's boot
contract itself (see guest/init.sh).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from banger.errors import UserError
from banger.kernel.debian import KernelInfo, fetch_busybox
from banger.kernel.initramfs import build_initramfs

_KERNEL_GLOBS = ("vmlinuz*", "bzImage*", "vmlinux*")
_INITRD_GLOBS = ("initrd*", "initramfs*")


def _first(src: Path, globs: tuple[str, ...]) -> Path | None:
    for base in (src, src / "boot"):
        for pattern in globs:
            found = sorted(p for p in base.glob(pattern) if p.is_file() and not p.is_symlink())
            if found:
                return found[0]
    return None


def _modules(src: Path) -> Path | None:
    """The directory holding ``<version>/`` of kernel modules, if any."""
    for base in (src / "lib" / "modules", src / "modules"):
        if base.is_dir() and any(p.is_dir() for p in base.iterdir()):
            return base
    return None


def find_in_dir(src: Path) -> tuple[Path, Path | None, Path | None]:
    """(kernel, initrd, modules) found in a directory laid out as described above."""
    kernel = _first(src, _KERNEL_GLOBS)
    if kernel is None:
        raise UserError(
            f"no kernel image in {src}",
            hint="it needs a file named vmlinuz*, bzImage or vmlinux*, at the top or in boot/",
        )
    return kernel, _first(src, _INITRD_GLOBS), _modules(src)


def import_kernel(
    dest: Path,
    *,
    kernel: Path,
    initrd: Path | None,
    modules: Path | None,
    progress: Callable[[str], None] = lambda s: None,
) -> KernelInfo:
    """Copy a kernel into ``dest``; ``modules`` holds ``<version>/`` directories."""
    if modules is None and initrd is None:
        raise UserError(
            f"the kernel {kernel} comes with neither its modules nor an initramfs",
            hint="add its modules (lib/modules/VERSION; banger builds the initramfs) or an initrd",
        )
    if modules is not None and not any(p.is_dir() for p in modules.iterdir()):
        raise UserError(
            f"{modules} holds no <version>/ directory of modules",
            hint="pass the lib/modules directory of the kernel's build",
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    version = "unknown"
    with tempfile.TemporaryDirectory(prefix=f".{dest.name}.", dir=dest.parent) as tmp:
        out = Path(tmp) / "result"
        out.mkdir()
        shutil.copy2(kernel, out / "vmlinuz")
        if modules is not None:
            versions = sorted(p.name for p in modules.iterdir() if p.is_dir())
            version = versions[-1]
            progress(f"copying the modules of {version}")
            shutil.copytree(modules / version, out / "modules" / version, symlinks=True)
            progress("fetching busybox-static for banger's initramfs")
            shutil.copy2(fetch_busybox(Path(tmp)), out / "busybox")
            progress(f"building the initramfs for {version}")
            build_initramfs(out / "modules", version, out / "busybox", out / "initramfs.img")
        elif initrd is not None:
            version = kernel.name.partition("-")[2] or version
            progress(f"using {initrd.name} as is: it must follow banger's boot contract")
            shutil.copy2(initrd, out / "initramfs.img")
        (out / "version").write_text(f"{version}\n")
        out.rename(dest)
    return KernelInfo(
        name=dest.name,
        version=version,
        vmlinuz=dest / "vmlinuz",
        initrd=dest / "initramfs.img",
        modules_dir=dest / "modules",
        config=dest / "config",
    )
