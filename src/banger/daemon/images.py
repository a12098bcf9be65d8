"""Images: built from the catalog, pulled from registries, registered from a file."""

from __future__ import annotations

import logging
import re
import shutil
import time
from pathlib import Path

from banger.api.models import Image, ImagePromote, ImagePull, ImageRegister
from banger.daemon.context import Context
from banger.daemon.kernels import KernelService
from banger.daemon.operations import Progress, now_iso
from banger.errors import Conflict, UserError
from banger.units import format_size, parse_size

log = logging.getLogger("banger.daemon")

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")


def check_image_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UserError(
            f"{name!r} is not a valid image name",
            hint="use up to 63 lowercase letters, digits, '.', '_' and '-'; or pass --name",
        )
    return name


def name_from_ref(ref: str) -> str:
    """A readable image name from an OCI reference: repo's last part and tag."""
    from banger.image.reference import parse_reference

    parsed = parse_reference(ref)
    base = parsed.repository.rsplit("/", 1)[-1]
    tag = parsed.tag or (parsed.digest or "")[7:19]
    return re.sub(r"[^a-z0-9._-]", "-", f"{base}-{tag}".lower())[:63]


class ImageService:
    def __init__(self, ctx: Context, kernels: KernelService) -> None:
        self.ctx = ctx
        self.kernels = kernels

    def _check_free(self, name: str) -> None:
        check_image_name(name)
        if self.ctx.store.find_image(name):
            raise Conflict(
                f"an image named {name!r} already exists",
                hint=f"see it with `banger image show {name}`, or pass another --name",
            )

    def check_pull(self, req: ImagePull) -> ImagePull:
        """Resolve the request's name and check it before an operation starts."""
        from banger.image import catalog

        if req.ref in catalog.names():
            name = req.name or req.ref
        else:
            name = req.name or name_from_ref(req.ref)  # also validates the reference
        self._check_free(name)
        if req.size is not None:
            parse_size(req.size, what="--size")
        if req.kernel is not None:
            self.ctx.store.get_kernel(req.kernel)
        return req.model_copy(update={"name": name})

    def _kernel_for(self, requested: str | None, progress: Progress) -> str:
        kernel = requested or self.ctx.default_kernel
        if self.ctx.store.find_kernel(kernel) is None:
            if requested is not None:
                self.ctx.store.get_kernel(kernel)  # raises NotFound with its hint
            progress.stage("kernel", f"the default kernel {kernel} is missing: pulling it")
            self.kernels.pull(kernel, progress)
        return kernel

    def pull(self, req: ImagePull, progress: Progress) -> Image:
        from banger.image import catalog

        name = req.name or req.ref
        kernel = self._kernel_for(req.kernel, progress)
        dest = self.ctx.settings.images_dir / name
        if dest.exists():
            shutil.rmtree(dest)  # left by a daemon that died mid-pull; never registered
        if req.ref in catalog.names():
            image = self._build_catalog(req.ref, name, kernel, dest, progress)
        else:
            image = self._pull_oci(req, name, kernel, dest, progress)
        return self._register_built(image, dest)

    def _build_catalog(
        self, ref: str, name: str, kernel: str, dest: Path, progress: Progress
    ) -> Image:
        from banger.image import catalog
        from banger.image.debian import build_debian_image
        from banger.image.mirror import debian_mirror

        entry = catalog.lookup(ref)
        mirror = debian_mirror(self.ctx.settings.debian_mirror)
        from banger.guest.agent import AgentConfig, inject_agent
        from banger.guest.bundle import build_agent_bundle

        def add_agent(tree: Path) -> None:
            # The image has systemd and sshd of its own; the agent is there for
            # what banger asks of every guest (a poweroff that always works).
            bundle = build_agent_bundle(self.ctx.settings.cache_dir / "agent", progress.info)
            inject_agent(tree, bundle, AgentConfig())

        progress.stage("build", f"building {name} ({entry.description})")
        info = build_debian_image(
            dest, suite=entry.suite, mirror=mirror, progress=progress.info, prepare=add_agent
        )
        return Image(
            name=name,
            kernel=kernel,
            rootfs=str(info.rootfs),
            size_bytes=info.size_bytes,
            source=f"catalog:{ref}",
            work_seed=str(info.work_seed),
            created_at=now_iso(),
        )

    def _pull_oci(
        self, req: ImagePull, name: str, kernel: str, dest: Path, progress: Progress
    ) -> Image:
        from banger.image.build import build_oci_image

        progress.stage("pull", f"pulling {req.ref}")
        built = build_oci_image(
            req.ref,
            dest,
            cache_dir=self.ctx.settings.cache_dir,
            size_bytes=parse_size(req.size) if req.size else None,
            insecure_registries=self.ctx.settings.insecure_registries,
            progress=progress.info,
            layer_progress=LayerReporter(progress),
        )
        return Image(
            name=name,
            kernel=kernel,
            rootfs=str(built.rootfs),
            size_bytes=built.size_bytes,
            source=built.source,
            work_seed=str(built.work_seed),
            init=built.init or "",
            config=built.config,
            created_at=now_iso(),
        )

    def register(self, req: ImageRegister) -> Image:
        """Adopt an ext4 root filesystem that already exists on the host (not copied)."""
        self._check_free(req.name)
        rootfs = Path(req.rootfs)
        if not rootfs.is_absolute() or not rootfs.is_file():
            raise UserError(
                f"{req.rootfs!r} is not a file", hint="pass the absolute path of an ext4 image"
            )
        with rootfs.open("rb") as disk:
            disk.seek(1024 + 56)
            if disk.read(2) != b"\x53\xef":
                raise UserError(
                    f"{rootfs} is not an ext2/3/4 filesystem",
                    hint="make one with `mkfs.ext4 -d DIR FILE SIZE`",
                )
        kernel = req.kernel or self.ctx.default_kernel
        self.ctx.store.get_kernel(kernel)
        image = Image(
            name=req.name,
            kernel=kernel,
            rootfs=str(rootfs),
            size_bytes=rootfs.stat().st_size,
            source=f"file:{rootfs}",
            init=req.init or "",
            created_at=now_iso(),
        )
        self.ctx.store.add_image(image)
        return image

    def check_promote(self, req: ImagePromote) -> Image:
        """The image the VM was made from; the VM must run (its guest makes the copy)."""
        self._check_free(req.name)
        if req.size is not None:
            parse_size(req.size, what="--size")
        vm = self.ctx.store.get_vm(req.vm)
        if self.ctx.vmm.pid(Path(vm.dir)) is None:
            raise UserError(
                f"VM {vm.name!r} is not running",
                hint=f"start it with `banger vm start {vm.name}`: its guest copies itself out",
            )
        return self.ctx.store.get_image(vm.image)

    def promote(self, req: ImagePromote, progress: Progress) -> Image:
        from banger.daemon.runtime import host_public_key
        from banger.guest.ssh import capture_from_guest
        from banger.image.promote import promote_from_guest

        base = self.check_promote(req)
        vm = self.ctx.store.get_vm(req.vm)
        key = self.ctx.user_key()

        def capture(command: str, out: Path) -> int:
            result = capture_from_guest(vm.ip, key, host_public_key(vm), command, out)
            return result.exit_status

        progress.stage("copy", f"copying {vm.name}'s filesystem into image {req.name}")
        dest = self.ctx.settings.images_dir / req.name
        if dest.exists():
            shutil.rmtree(dest)
        promoted = promote_from_guest(
            capture,
            dest,
            size_bytes=parse_size(req.size) if req.size else None,
            progress=progress.info,
        )
        image = Image(
            name=req.name,
            kernel=base.kernel,
            rootfs=str(promoted.rootfs),
            size_bytes=promoted.size_bytes,
            source=f"vm:{vm.name}",
            work_seed=str(promoted.work_seed),
            init=base.init,
            config=base.config,
            created_at=now_iso(),
        )
        return self._register_built(image, dest)

    def _register_built(self, image: Image, dest: Path) -> Image:
        """Record an image banger just made in ``dest``; remove ``dest`` if that fails."""
        try:
            self.ctx.store.add_image(image)
        except Exception:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        return image

    def delete(self, name: str) -> Image:
        image = self.ctx.store.get_image(name)
        users = self.ctx.store.vms_using_image(name)
        if users:
            raise Conflict(
                f"image {name!r} is used by VM(s) {', '.join(users)}",
                hint="delete those VMs first",
            )
        self.ctx.store.delete_image(name)
        if not image.source.startswith("file:"):
            shutil.rmtree(self.ctx.settings.images_dir / name, ignore_errors=True)
        return image

    def prune_cache(self, dry_run: bool) -> str:
        from banger.image.oci import cache_prune, prune_message

        oci_cache = self.ctx.settings.cache_dir / "oci"
        freed, blobs = cache_prune(oci_cache, dry_run)
        return prune_message(freed, blobs, oci_cache, dry_run=dry_run)


class LayerReporter:
    """Per-layer download progress as info events, at most one per layer a second."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._last: dict[str, float] = {}

    def __call__(self, digest: str, done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        if not finished and now - self._last.get(digest, 0.0) < 1.0:
            return
        self._last[digest] = now
        short = digest.split(":")[-1][:12]
        state = "done" if finished else f"{100 * done // max(total, 1)}%"
        self.progress.info(f"layer {short}: {format_size(done)} of {format_size(total)} {state}")
