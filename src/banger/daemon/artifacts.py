"""Kernels and images: pulled from catalogs, registered in the store."""

from __future__ import annotations

import logging
import shutil

from banger.api.models import Image, Kernel
from banger.daemon.context import Context
from banger.daemon.operations import Progress, now_iso
from banger.errors import Conflict

log = logging.getLogger("banger.daemon")


class ArtifactService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # kernels

    def check_kernel_pull(self, name: str) -> None:
        from banger.kernel import catalog

        catalog.lookup(name)
        if self.ctx.store.find_kernel(name):
            raise Conflict(
                f"kernel {name!r} is already pulled",
                hint=f"see it with `banger kernel show {name}`",
            )

    def pull_kernel(self, name: str, progress: Progress) -> Kernel:
        from banger.kernel import catalog
        from banger.kernel.debian import fetch_debian_kernel

        entry = catalog.lookup(name)
        dest = self.ctx.settings.kernels_dir / name
        if dest.exists():
            # Left by a pull that died with its daemon; the store never saw it.
            shutil.rmtree(dest)
        progress.stage("fetch", f"fetching {entry.package} with apt")
        info = fetch_debian_kernel(dest, package=entry.package, progress=progress.info)
        kernel = Kernel(
            name=name,
            version=info.version,
            dir=str(dest),
            vmlinuz=str(info.vmlinuz),
            initrd=str(info.initrd),
            source=f"debian:{entry.package}",
            created_at=now_iso(),
        )
        try:
            self.ctx.store.add_kernel(kernel)
        except Exception:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        return kernel

    # images

    def check_image_pull(self, name: str, kernel: str | None) -> None:
        from banger.image import catalog

        catalog.lookup(name)
        if self.ctx.store.find_image(name):
            raise Conflict(
                f"image {name!r} is already pulled",
                hint=f"see it with `banger image show {name}`",
            )
        if kernel is not None:
            self.ctx.store.get_kernel(kernel)

    def pull_image(self, name: str, kernel_name: str | None, progress: Progress) -> Image:
        from banger.image import catalog
        from banger.image.debian import build_debian_image
        from banger.image.mirror import debian_mirror

        entry = catalog.lookup(name)
        kernel = kernel_name or self.ctx.default_kernel
        if self.ctx.store.find_kernel(kernel) is None:
            if kernel_name is not None:
                self.ctx.store.get_kernel(kernel)  # raises NotFound with its hint
            progress.stage("kernel", f"the default kernel {kernel} is missing: pulling it")
            self.pull_kernel(kernel, progress)
        mirror = debian_mirror(self.ctx.settings.debian_mirror)
        dest = self.ctx.settings.images_dir / name
        if dest.exists():
            shutil.rmtree(dest)
        progress.stage("build", f"building {name} ({entry.description})")
        info = build_debian_image(dest, suite=entry.suite, mirror=mirror, progress=progress.info)
        image = Image(
            name=name,
            kernel=kernel,
            rootfs=str(info.rootfs),
            size_bytes=info.size_bytes,
            source=f"catalog:{name}",
            work_seed=str(info.work_seed),
            created_at=now_iso(),
        )
        try:
            self.ctx.store.add_image(image)
        except Exception:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        return image
