"""Images: built from the catalog, pulled from registries, promoted from a VM, registered.

Each is a source of ``banger.image.pipeline``; this service picks the source,
runs it in the pipeline's staging directory and finishes it there.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from banger.api.models import Image, ImagePromote, ImagePull, ImageRegister
from banger.config import Settings
from banger.daemon.kernels import KernelService
from banger.daemon.operations import Progress, now_iso
from banger.errors import Conflict, UserError
from banger.store import Store
from banger.units import format_size, parse_size
from banger.vmm.base import Vmm

if TYPE_CHECKING:
    from banger.image.flatcache import Flat, FlatCache
    from banger.image.pipeline import Finished, MadeTree, Staging

log = logging.getLogger("banger.daemon")

DEFAULT_KERNEL = "debian-bookworm-cloud"

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


@functools.cache
def _current_agent_build() -> str:
    from banger.guest import agentbin

    return agentbin.source_key()


def with_agent_state(image: Image) -> Image:
    """``image`` with ``agent_outdated`` said: banger made it, with another agent than today's.

    A registered disk (``file:``) never had banger's agent, so it is not
    outdated; an image made before agents were recorded (no ``agent_build``) is.
    """
    if image.source.startswith("file:"):
        return image
    outdated = image.config.get("agent_build") != _current_agent_build()
    return image.model_copy(update={"agent_outdated": outdated}) if outdated else image


class ImageService:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        kernels: KernelService,
        vmm: Vmm,
        user_key: Path,
        default_kernel: str = DEFAULT_KERNEL,
    ) -> None:
        self.settings = settings
        self.store = store
        self.kernels = kernels
        self.vmm = vmm
        self.user_key = user_key
        self.default_kernel = default_kernel
        self._lock = threading.Lock()
        self._in_progress: set[str] = set()

    def _check_free(self, name: str) -> None:
        check_image_name(name)
        if self.store.find_image(name):
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
            self.store.get_kernel(req.kernel)
        return req.model_copy(update={"name": name})

    def _kernel_for(self, requested: str | None, progress: Progress) -> str:
        kernel = requested or self.default_kernel
        if self.store.find_kernel(kernel) is None:
            if requested is not None:
                self.store.get_kernel(kernel)  # raises NotFound with its hint
            progress.stage("kernel", f"the default kernel {kernel} is missing: pulling it")
            self.kernels.pull(kernel, progress)
        return kernel

    def pull(self, req: ImagePull, progress: Progress) -> Image:
        """A catalog name or an OCI reference: pick the source, run it, finish."""
        from banger.image import catalog
        from banger.image.pipeline import staging

        name = req.name or req.ref
        kernel = self._kernel_for(req.kernel, progress)
        with self._making(name), staging(self.settings.images_dir / name) as stage:
            if req.ref in catalog.names():
                made = self._catalog_tree(req.ref, name, stage.tree, progress)
                return self._finish(stage, made, name, kernel, req.size, progress)
            return self._pull_oci(req, stage, name, kernel, progress)

    def _pull_oci(
        self, req: ImagePull, stage: Staging, name: str, kernel: str, progress: Progress
    ) -> Image:
        """An OCI pull; a manifest flattened before with the same options is linked, not redone."""
        from banger.guest.agent import agent_script
        from banger.image.flatcache import FlatCache, flat_key
        from banger.image.oci import resolve_oci_sync

        size = parse_size(req.size) if req.size else None
        bundle = self._bundle(progress)
        cache = FlatCache(self.settings.cache_dir / "flat")

        def key(digest: str) -> str:
            return flat_key(digest, bundle, agent_script(), size)

        progress.stage("pull", f"pulling {req.ref}")
        digest = resolve_oci_sync(
            req.ref, insecure_registries=self.settings.insecure_registries, progress=progress.info
        )
        flat = cache.lookup(key(digest))
        if flat is not None:
            reused = self._reuse(flat, cache, stage, req.ref, digest, name, kernel, progress)
            if reused is not None:
                return reused

        made = self._oci_tree(req.ref, stage.tree, progress)

        def keep(image_dir: Path, done: Finished) -> None:
            pulled = str(made.config.get("digest") or digest)
            cache.keep(key(pulled), image_dir, size_bytes=done.size_bytes, init=done.init,
                       config=done.config)  # fmt: skip

        return self._finish(stage, made, name, kernel, req.size, progress, keep=keep, bundle=bundle)

    def _reuse(
        self,
        flat: Flat,
        cache: FlatCache,
        stage: Staging,
        ref: str,
        digest: str,
        name: str,
        kernel: str,
        progress: Progress,
    ) -> Image | None:
        """The disk flattened before, linked into place and registered; None if it cannot be."""
        from banger.image.blobcache import short
        from banger.image.pipeline import ROOTFS_NAME, Finished, publish
        from banger.image.reference import parse_reference
        from banger.image.tree import WORK_SEED_NAME

        # A stage of its own: linking the cached disk into place is the whole of
        # a re-pull, and the stage is what the CLI names if the daemon dies in it.
        progress.stage(
            "reuse",
            f"{short(digest)} was flattened before with these options:"
            " reusing it (linking its disk into the new image)",
        )
        if not cache.link_into(flat, stage.image):
            progress.stage("pull", "the disk made before cannot be linked here: flattening again")
            return None
        done = Finished(
            rootfs=stage.dest / ROOTFS_NAME,
            work_seed=stage.dest / WORK_SEED_NAME,
            size_bytes=flat.size_bytes,
            source=f"oci:{parse_reference(ref).with_digest(digest).canonical()}",
            init=flat.init,
            config=flat.config,
        )
        return publish(stage, done, lambda d: self._record(name, kernel, d))

    def _bundle(self, progress: Progress) -> Path:
        from banger.guest.bundle import build_agent_bundle

        return build_agent_bundle(self.settings.cache_dir / "agent", progress.info)

    def _catalog_tree(self, ref: str, name: str, tree: Path, progress: Progress) -> MadeTree:
        from banger.image import catalog
        from banger.image.debian import build_debian_tree
        from banger.image.mirror import debian_mirror
        from banger.image.pipeline import MadeTree

        entry = catalog.lookup(ref)
        mirror = debian_mirror(self.settings.debian_mirror)
        progress.stage("build", f"building {name} ({entry.description})")
        build_debian_tree(tree, suite=entry.suite, mirror=mirror, progress=progress.info)
        # The image has systemd and sshd of its own; the agent is there for
        # what banger asks of every guest (a poweroff that always works).
        return MadeTree(source=f"catalog:{ref}")

    def _oci_tree(self, ref: str, tree: Path, progress: Progress) -> MadeTree:
        from banger.image.ocitree import pull_oci_tree

        return pull_oci_tree(
            ref,
            tree,
            cache_dir=self.settings.cache_dir,
            insecure_registries=self.settings.insecure_registries,
            progress=progress.info,
            layer_progress=LayerReporter(progress),
        )

    def _finish(
        self,
        stage: Staging,
        made: MadeTree,
        name: str,
        kernel: str,
        size: str | None,
        progress: Progress,
        *,
        keep: Callable[[Path, Finished], None] | None = None,
        bundle: Path | None = None,
    ) -> Image:
        """The pipeline's finishing stage, registering the image in the store."""
        from banger.image.pipeline import finish

        return finish(
            stage,
            made,
            bundle=lambda: bundle or self._bundle(progress),
            size_bytes=parse_size(size) if size else None,
            progress=progress.info,
            register=lambda done: self._record(name, kernel, done),
            keep=keep,
        )

    def _record(self, name: str, kernel: str, done: Finished) -> Image:
        image = Image(
            name=name,
            kernel=kernel,
            rootfs=str(done.rootfs),
            size_bytes=done.size_bytes,
            source=done.source,
            work_seed=str(done.work_seed) if done.work_seed is not None else "",
            init=done.init or "",
            config=done.config,
            channel=done.channel,
            created_at=now_iso(),
        )
        self.store.add_image(image)
        return image

    @contextlib.contextmanager
    def _making(self, name: str) -> Iterator[None]:
        """Hold ``name`` while an image of that name is made, so two makes never share a dir."""
        with self._lock:
            if name in self._in_progress:
                raise Conflict(
                    f"an image named {name!r} is already being made",
                    hint="wait for that operation (`banger image list` shows it when done),"
                    " or pass another --name",
                )
            self._check_free(name)
            self._in_progress.add(name)
        try:
            yield
        finally:
            with self._lock:
                self._in_progress.discard(name)

    def register(self, req: ImageRegister) -> Image:
        """Adopt an ext4 root filesystem that already exists on the host (not copied)."""
        from banger.image.pipeline import adopt_disk

        self._check_free(req.name)
        disk = adopt_disk(Path(req.rootfs), init=req.init or "")
        kernel = req.kernel or self.default_kernel
        self.store.get_kernel(kernel)
        return self._record(req.name, kernel, disk)

    def check_promote(self, req: ImagePromote) -> Image:
        """The image the VM was made from; the VM must run (its guest makes the copy)."""
        self._check_free(req.name)
        if req.size is not None:
            parse_size(req.size, what="--size")
        vm = self.store.get_vm(req.vm)
        if self.vmm.pid(Path(vm.dir)) is None:
            raise UserError(
                f"VM {vm.name!r} is not running",
                hint=f"start it with `banger vm start {vm.name}`: its guest copies itself out",
            )
        return self.store.get_image(vm.image)

    def promote(self, req: ImagePromote, progress: Progress) -> Image:
        """A running VM's filesystem: the guest tars itself out, then the pipeline finishes."""
        from banger.daemon.runtime import host_public_key
        from banger.guest.ssh import capture_from_guest, wait_for_port
        from banger.image.pipeline import MadeTree, agent_config_of, staging
        from banger.image.promote import promote_tree

        base = self.check_promote(req)
        vm = self.store.get_vm(req.vm)
        key = self.user_key

        def capture(command: str, out: Path) -> int:
            result = capture_from_guest(vm.ip, key, host_public_key(vm), command, out)
            return result.exit_status

        # A VM is ready when its agent answers; the copy goes over SSH, which the
        # image's init may still be starting.
        wait_for_port(vm.ip, 22, timeout=60, what=f"VM {vm.name!r}")
        with self._making(req.name), staging(self.settings.images_dir / req.name) as stage:
            progress.stage("copy", f"copying {vm.name}'s filesystem into image {req.name}")
            archive = stage.scratch("root.tar")
            promote_tree(capture, stage.tree, archive=archive, progress=progress.info)
            made = MadeTree(
                source=f"vm:{vm.name}", agent=agent_config_of(base.config), config=base.config
            )
            return self._finish(stage, made, req.name, base.kernel, req.size, progress)

    def delete(self, name: str) -> Image:
        image = self.store.get_image(name)
        users = self.store.vms_using_image(name)
        if users:
            raise Conflict(
                f"image {name!r} is used by VM(s) {', '.join(users)}",
                hint="delete those VMs first",
            )
        snapshots = self.store.snapshots_of_image(name)
        if snapshots:
            raise Conflict(
                f"image {name!r} is used by snapshot(s) {', '.join(snapshots)}",
                hint=f"delete them first with `banger vm snapshot delete {snapshots[0]}`",
            )
        # Its boot snapshots go with it (they hold its guest, booted).
        for snap in self.store.boot_snapshots(name):
            self.store.delete_snapshot(snap.name)
        boot_dir = self.settings.boot_snapshots_dir(name)
        shutil.rmtree(boot_dir, ignore_errors=True)
        with contextlib.suppress(OSError):  # a registered disk's directory held only them
            boot_dir.parent.rmdir()
        self.store.delete_image(name)
        if not image.source.startswith("file:"):
            shutil.rmtree(self.settings.images_dir / name, ignore_errors=True)
        return image

    def prune_cache(self, dry_run: bool) -> str:
        from banger.image.flatcache import FlatCache
        from banger.image.oci import cache_prune, prune_message

        oci_cache = self.settings.cache_dir / "oci"
        freed, blobs = cache_prune(oci_cache, dry_run)
        flat_freed, flats = FlatCache(self.settings.cache_dir / "flat").prune(dry_run)
        verb = "would free" if dry_run else "freed"
        return (
            prune_message(freed, blobs, oci_cache, dry_run=dry_run)
            + f"; {verb} {format_size(flat_freed)} across {flats} flattened image(s) no image uses"
        )


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
