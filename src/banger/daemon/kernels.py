"""Kernels: pulled from the catalog or imported from a directory."""

from __future__ import annotations

import shutil
from pathlib import Path

from banger.api.models import Kernel, KernelImport
from banger.config import Settings
from banger.daemon.operations import Progress, now_iso
from banger.errors import BangerError, Conflict, UserError
from banger.store import Store


def _existing(text: str, kind: str) -> Path:
    path = Path(text)
    ok = path.is_dir() if kind == "directory" else path.is_file()
    if not path.is_absolute() or not ok:
        raise UserError(
            f"{text!r} is not an existing {kind}", hint=f"pass an absolute path to a {kind}"
        )
    return path


class KernelService:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store

    def _check_free(self, name: str) -> None:
        if not name or "/" in name or name.startswith(".") or len(name) > 64:
            raise UserError(
                f"{name!r} is not a valid kernel name",
                hint="use letters, digits, dots and dashes, like debian-bookworm-cloud",
            )
        if self.store.find_kernel(name):
            raise Conflict(
                f"kernel {name!r} already exists",
                hint=f"see it with `banger kernel show {name}`, or delete it first",
            )

    def check_pull(self, name: str) -> None:
        from banger.kernel import catalog

        catalog.lookup(name)
        self._check_free(name)

    def pull(self, name: str, progress: Progress) -> Kernel:
        from banger.kernel import catalog
        from banger.kernel.debian import fetch_debian_kernel

        entry = catalog.lookup(name)
        dest = self.settings.kernels_dir / name
        if dest.exists():
            # Left by a pull that died with its daemon; the store never saw it.
            shutil.rmtree(dest)
        progress.stage("fetch", f"fetching {entry.package} with apt")
        info = fetch_debian_kernel(dest, package=entry.package, progress=progress.info)
        vmlinux = derive_vmlinux(info.vmlinuz, progress)
        return self._register(name, info.version, dest, info.vmlinuz, info.initrd,
                              f"debian:{entry.package}", vmlinux)  # fmt: skip

    def check_import(self, req: KernelImport) -> tuple[Path, Path | None, Path | None]:
        """The (kernel, initrd, modules) paths of an import request, checked."""
        from banger.kernel.importer import find_in_dir

        self._check_free(req.name)
        if req.dir is not None:
            if req.kernel or req.initrd or req.modules:
                raise UserError("pass either a directory or --kernel/--initrd/--modules, not both")
            return find_in_dir(_existing(req.dir, "directory"))
        if req.kernel is None:
            raise UserError(
                "nothing to import", hint="pass a directory, or --kernel with --initrd or --modules"
            )
        return (
            _existing(req.kernel, "file"),
            _existing(req.initrd, "file") if req.initrd else None,
            _existing(req.modules, "directory") if req.modules else None,
        )

    def import_(self, req: KernelImport, progress: Progress) -> Kernel:
        from banger.kernel.importer import import_kernel

        kernel, initrd, modules = self.check_import(req)
        dest = self.settings.kernels_dir / req.name
        if dest.exists():
            shutil.rmtree(dest)
        progress.stage("import", f"importing {kernel}")
        info = import_kernel(
            dest, kernel=kernel, initrd=initrd, modules=modules, progress=progress.info
        )
        vmlinux = derive_vmlinux(info.vmlinuz, progress)
        return self._register(
            req.name, info.version, dest, info.vmlinuz, info.initrd, f"file:{kernel}", vmlinux
        )

    def _register(
        self,
        name: str,
        version: str,
        dest: Path,
        vmlinuz: Path,
        initrd: Path,
        source: str,
        vmlinux: Path | None = None,
    ) -> Kernel:
        kernel = Kernel(
            name=name,
            version=version,
            dir=str(dest),
            vmlinuz=str(vmlinuz),
            initrd=str(initrd),
            source=source,
            created_at=now_iso(),
            vmlinux=str(vmlinux or ""),
        )
        try:
            self.store.add_kernel(kernel)
        except Exception:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        return kernel

    def delete(self, name: str) -> Kernel:
        kernel = self.store.get_kernel(name)
        users = self.store.images_using_kernel(name)
        if users:
            raise Conflict(
                f"kernel {name!r} is used by image(s) {', '.join(users)}",
                hint="delete those images first",
            )
        self.store.delete_kernel(name)
        shutil.rmtree(kernel.dir, ignore_errors=True)
        return kernel


def derive_vmlinux(vmlinuz: Path, progress: Progress) -> Path | None:
    """The kernel as an ELF vmlinux beside ``vmlinuz`` (Firecracker boots only that)."""
    from banger.kernel.vmlinux import extract_vmlinux

    try:
        out = extract_vmlinux(vmlinuz, vmlinuz.with_name("vmlinux"))
    except BangerError as exc:
        # QEMU still boots the bzImage; only Firecracker VMs need the ELF.
        progress.info(f"note: no vmlinux for Firecracker: {exc.message}")
        return None
    progress.info(f"derived {out.name} ({out.stat().st_size >> 20} MiB) for Firecracker")
    return out
