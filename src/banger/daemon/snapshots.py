"""Snapshots: a VM's memory, device state and writable disks, saved and restored.

A snapshot lives in its own directory under ``snapshots/``: what the VMM
wrote (QEMU's migration stream, or Firecracker's VM state and memory), a
sparse copy of the VM's overlay and work disk, its SSH host key, and
``snapshot.json`` (the record and every file's size, so a truncated file is
refused before anything starts). The image is shared, never copied. A
restore (``vm create --from-snapshot``, ``vm fork``) makes a whole new VM:
its own disks copied from the snapshot's, its own tap, lease and MAC, and a
new identity given to the guest before the VM is reported ready
(``identity.py``); every step pushes its undo, so a restore that fails
leaves nothing.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import uuid
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

import banger
from banger import proc
from banger.api.models import Snapshot, Vm, VmCreate, VmState
from banger.config import Settings
from banger.daemon import identity
from banger.daemon.operations import Progress, now_iso
from banger.daemon.plan import Sources, VmPlan, decide_vm, vm_paths
from banger.daemon.vms import VmService, spec_line
from banger.errors import UserError
from banger.guest import ssh
from banger.store import Store
from banger.store.repo import Taken, name_taken

log = logging.getLogger("banger.daemon")

RECORD = "snapshot.json"
OVERLAY = "overlay.ext4"
WORK = "work.ext4"
HOST_KEY = "ssh_host_ed25519_key"
SNAPSHOT_NAME_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?")


def copy_sparse(src: Path, dst: Path) -> None:
    """A copy that takes only the blocks in use (a reflink where the filesystem can)."""
    proc.run(["cp", "--reflink=auto", "--sparse=always", "--", src, dst], timeout=1800)


def allocated(path: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in path.iterdir() if p.is_file())


@dataclass(frozen=True)
class Restore:
    """A restore checked before its operation starts."""

    snapshot: Snapshot
    vm: Vm
    sources: Sources


class SnapshotService:
    def __init__(self, settings: Settings, store: Store, vms: VmService) -> None:
        self.settings = settings
        self.store = store
        self.vms = vms

    # create, list, delete

    def check_create(self, vm_name: str, snap_name: str | None) -> tuple[Vm, str]:
        vm = self.vms.show(vm_name)
        if not self.vms.agents.has_channel(vm):
            raise UserError(
                f"VM {vm.name!r} has no banger agent: a VM restored from a snapshot is given"
                " its own name, address, host key, clock and entropy through it",
                hint=f"make its image again with this banger (`banger image show {vm.image}`"
                " says how), or copy files out with `banger vm cp`",
            )
        if vm.state not in (VmState.RUNNING, VmState.PAUSED):
            raise UserError(
                f"VM {vm.name!r} is {vm.state}: a snapshot is taken of a running VM",
                hint=f"start it first with `banger vm start {vm.name}`",
            )
        taken = {s.name for s in self.store.list_snapshots()}
        name = check_snapshot_name(snap_name) if snap_name else _free_name(vm.name, taken)
        if name in taken:
            raise Taken("snapshot", name)
        return vm, name

    def create(self, vm_name: str, name: str, progress: Progress) -> Snapshot:
        vm = self.vms.show(vm_name)
        with self.vms.locked(vm.name):
            vm, name = self.check_create(vm.id, name)
            snap_dir = self.settings.snapshots_dir / uuid.uuid4().hex[:12]
            with ExitStack() as undo:
                snap_dir.mkdir(parents=True)
                undo.callback(shutil.rmtree, snap_dir, True)
                snap = self.save_into(vm, name, snap_dir, progress)
                self.store.add_snapshot(snap)
                undo.pop_all()
        progress.info(f"{snap.name}: {snap.size_bytes >> 20} MiB in {snap_dir}")
        return snap

    def save_into(
        self,
        vm: Vm,
        name: str,
        snap_dir: Path,
        progress: Progress,
        *,
        record_dir: Path | None = None,
    ) -> Snapshot:
        """Pause ``vm``, save its memory and disks into ``snap_dir``, let it run on.

        The caller holds the VM's lock and owns ``snap_dir``; the record names
        ``record_dir`` where the files are renamed to after (a boot snapshot's).
        """
        sources = self.vms.sources(vm.image)
        plan = self.vms.plan(vm, sources)
        vmm = self.vms.runtime.vmm(vm)
        was_paused = vm.state == VmState.PAUSED
        progress.stage("memory", f"pausing {vm.name} and saving its memory")
        try:
            vmm.save(plan.dir, snap_dir)
            progress.stage("disks", "copying its writable disks (sparse; the image is shared)")
            _copy_disks(plan, snap_dir)
        finally:
            if not was_paused:
                vmm.resume(plan.dir)
        snap = _record(vm, name, plan, sources, snap_dir, vmm.version())
        snap = snap.model_copy(update={"dir": str(record_dir or snap_dir)})
        _write_record(snap, snap_dir)
        return snap.model_copy(update={"size_bytes": allocated(snap_dir)})

    def list_all(self) -> list[Snapshot]:
        return self.store.list_snapshots()

    def show(self, name: str) -> Snapshot:
        return self.store.get_snapshot(name)

    def delete(self, name: str) -> Snapshot:
        snap = self.store.get_snapshot(name)
        # VMs restored from it have their own copies of its disks: they keep running.
        self.store.delete_snapshot(snap.name)
        shutil.rmtree(snap.dir, ignore_errors=True)
        return snap

    # restore

    def check_restore(self, req: VmCreate) -> Restore:
        """Everything that can be refused before anything is made."""
        snap = self.store.get_snapshot(req.from_snapshot or "")
        fixed: dict[str, object] = {
            "--vcpus": req.vcpus,
            "--memory": req.memory_mib,
            "--vmm": req.vmm,
            "--system-overlay-size": req.system_overlay_size,
            "--work-disk-size": req.work_disk_size,
            "--image": req.image,
        }
        given = [flag for flag, value in fixed.items() if value not in (None, "auto")]
        if given:
            raise UserError(
                f"{', '.join(given)} cannot be combined with --from-snapshot: a restored VM"
                " has the snapshot's machine and disks",
                hint="leave them out, or boot a new VM with `banger vm create`",
            )
        check_compatible(snap, self.vms)
        taken = {vm.name for vm in self.store.list_vms()}
        name = req.name or _free_name(f"{snap.vm}-fork", taken)
        if name in taken:
            raise name_taken(name)
        sources = self.vms.sources(snap.image)
        draft = VmCreate(
            name=name,
            image=snap.image,
            vcpus=snap.vcpus,
            memory_mib=snap.memory_mib,
            system_overlay_size=str(snap.overlay_bytes),
            work_disk_size=str(snap.work_disk_bytes) if snap.work_disk_bytes else None,
            nat=req.nat or snap.nat,
        )
        vm = decide_vm(
            draft,
            vm_id=uuid.uuid4().hex[:12],
            name=name,
            image=sources.image,
            settings=self.settings,
            host=self.vms.host,
            now=now_iso(),
        )
        fixed_by_snapshot = {"vmm": snap.vmm, "work_disk_bytes": snap.work_disk_bytes}
        vm = vm.model_copy(update={"snapshot": snap.name, **fixed_by_snapshot})
        return Restore(snapshot=snap, vm=vm, sources=sources)

    def restore(self, req: Restore, progress: Progress) -> Vm:
        vms, snap = self.vms, req.snapshot
        with vms.locked(req.vm.name):
            progress.stage("lease", "reserving a name and an address")
            vm = vms.net.lease(req.vm, self.store)
            origin = (
                f"from image {snap.image}'s boot snapshot"
                if vm.boot_snapshot
                else f"from snapshot {snap.name}"
            )
            progress.info(f"{spec_line(vm, vms.host)}, {origin}")
            with ExitStack() as undo:
                undo.callback(self.store.delete_vm, vm.id)
                plan = _restore_plan(vms.plan(vm, req.sources), snap)
                progress.stage("disks", f"copying the disks of snapshot {snap.name}")
                _copy_in(plan, snap, undo)
                vms.runtime.restore(plan, Path(snap.dir), progress, undo)
                progress.stage("identity", "giving the guest its own name, address and clock")
                identity.reidentify(vms, vm, snap, progress)
                self.store.set_vm_state(vm.id, VmState.RUNNING)
                undo.pop_all()
            return vms.show(vm.id)

    def fork(self, vm_name: str, names: list[str], progress: Progress) -> list[Vm]:
        """Snapshot ``vm_name`` once, restore it as each of ``names``, drop the snapshot.

        The copies are restored side by side, each with its own lease, tap and
        disks under its own name's lock. All or nothing: when one fails, the
        others are deleted again and the first failure is raised.
        """
        vm, snap_name = self.check_create(vm_name, None)
        snap = self.create(vm.id, snap_name, progress)
        try:
            checked = [
                self.check_restore(VmCreate(name=name, from_snapshot=snap.name)) for name in names
            ]
            return self._restore_all(checked, progress)
        finally:
            self.delete(snap.name)

    def _restore_all(self, checked: list[Restore], progress: Progress) -> list[Vm]:
        if len(checked) == 1:
            return [self.restore(checked[0], progress)]
        with ThreadPoolExecutor(len(checked), thread_name_prefix="restore") as pool:
            futures = [
                pool.submit(self.restore, one, NamedProgress(progress, one.vm.name))
                for one in checked
            ]
            wait(futures)
        failed = [e for f in futures if (e := f.exception()) is not None]
        made = [f.result() for f in futures if f.exception() is None]
        if failed:
            for vm in made:
                progress.info(f"deleting {vm.name} again: another copy could not be restored")
                self.vms.delete(vm.id, NamedProgress(progress, vm.name))
            raise failed[0]
        return made


class NamedProgress(Progress):
    """One copy's progress among several running at once: each line names its VM."""

    def __init__(self, progress: Progress, name: str) -> None:
        self._inner, self._name = progress, name

    def stage(self, stage: str, message: str = "") -> None:
        self._inner.stage(stage, f"{self._name}: {message}")

    def info(self, message: str) -> None:
        self._inner.info(message if message.startswith(self._name) else f"{self._name}: {message}")

    def output(self, stream: int, data: bytes) -> None:
        self._inner.output(stream, data)

    def exit(self, message: str) -> None:
        self._inner.exit(message)


def check_snapshot_name(name: str) -> str:
    if not SNAPSHOT_NAME_RE.fullmatch(name):
        raise UserError(
            f"{name!r} is not a valid snapshot name",
            hint="use up to 48 lowercase letters, digits and dashes, like dev-before-upgrade",
        )
    return name


def _free_name(base: str, taken: set[str]) -> str:
    base = base[:40].rstrip("-")
    number = 1
    while f"{base}-{number}" in taken:
        number += 1
    return f"{base}-{number}"


def check_compatible(snap: Snapshot, vms: VmService) -> None:
    """Refuse a snapshot this banger, VMM, image or file set cannot restore."""
    if snap.banger_version != banger.__version__:
        raise UserError(
            f"snapshot {snap.name!r} was made by banger {snap.banger_version}; this is"
            f" banger {banger.__version__}",
            hint=f"boot a new VM with `banger vm create --image {snap.image}`",
        )
    vmm = vms.vmm.get(snap.vmm)
    if vmm.version() != snap.vmm_version:
        raise UserError(
            f"snapshot {snap.name!r} was made under {snap.vmm_version!r}; this host runs"
            f" {vmm.version()!r}",
            hint=f"boot a new VM with `banger vm create --image {snap.image}`",
        )
    image = vms.store.get_image(snap.image)
    if image.rootfs != snap.rootfs or not Path(image.rootfs).is_file():
        raise UserError(
            f"image {snap.image!r} changed since snapshot {snap.name!r} was made",
            hint=f"delete it with `banger vm snapshot delete {snap.name}`",
        )
    if image.channel == 0:
        raise UserError(
            f"snapshot {snap.name!r} is of an image without banger's agent, which a restored"
            " VM needs for its own identity",
            hint=f"boot a new VM with `banger vm create --image {snap.image}`",
        )
    _check_files(snap)


def _check_files(snap: Snapshot) -> None:
    snap_dir = Path(snap.dir)
    try:
        sizes: dict[str, int] = json.loads((snap_dir / RECORD).read_text())["files"]
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(
            f"snapshot {snap.name!r} is damaged: {snap_dir / RECORD} cannot be read",
            hint=f"delete it with `banger vm snapshot delete {snap.name}`",
        ) from exc
    for name, size in sizes.items():
        path = snap_dir / name
        have = path.stat().st_size if path.is_file() else None
        if have != size:
            what = "missing" if have is None else f"{have} bytes, not {size} (truncated?)"
            raise UserError(
                f"snapshot {snap.name!r} is damaged: {path} is {what}",
                hint=f"delete it with `banger vm snapshot delete {snap.name}`",
            )


def _copy_disks(plan: VmPlan, snap_dir: Path) -> None:
    copy_sparse(plan.paths.overlay, snap_dir / OVERLAY)
    if plan.disks.work is not None and plan.disks.work.exists():
        copy_sparse(plan.disks.work, snap_dir / WORK)
    for suffix in ("", ".pub"):
        shutil.copy2(plan.paths.dir / f"{HOST_KEY}{suffix}", snap_dir / f"{HOST_KEY}{suffix}")


def _record(
    vm: Vm, name: str, plan: VmPlan, sources: Sources, snap_dir: Path, vmm_version: str
) -> Snapshot:
    config = plan.vmm
    return Snapshot(
        name=name,
        vm=vm.name,
        image=vm.image,
        kernel=sources.kernel.name,
        vmm=vm.vmm,
        vcpus=vm.vcpus,
        memory_mib=vm.memory_mib,
        overlay_bytes=vm.overlay_bytes,
        work_disk_bytes=vm.work_disk_bytes if (snap_dir / WORK).exists() else 0,
        nat=vm.nat,
        size_bytes=0,
        dir=str(snap_dir),
        created_at=now_iso(),
        kernel_path=str(config.kernel),
        initrd_path=str(config.initrd),
        rootfs=sources.image.rootfs,
        cmdline=config.cmdline,
        mac=vm.mac,
        ip=vm.ip,
        vmm_version=vmm_version,
        banger_version=banger.__version__,
    )


def _write_record(snap: Snapshot, snap_dir: Path) -> None:
    files = {p.name: p.stat().st_size for p in snap_dir.iterdir() if p.is_file()}
    record = {"snapshot": snap.model_dump(), "files": files}
    (snap_dir / RECORD).write_text(json.dumps(record, indent=2) + "\n")


def _restore_plan(plan: VmPlan, snap: Snapshot) -> VmPlan:
    """The new VM's plan with the VMM's command line as the snapshot's guest booted.

    The guest's memory holds the kernel, its command line and the MAC it
    booted with; the identity step gives it the new VM's (``identity.py``).
    """
    net = plan.vmm.net
    config = replace(
        plan.vmm,
        kernel=Path(snap.kernel_path),
        initrd=Path(snap.initrd_path),
        cmdline=snap.cmdline,
        net=replace(net, mac=snap.mac) if net is not None else None,
    )
    # Nothing to build: the kernel and initramfs are the ones the snapshot booted.
    return replace(plan, vmm=config, initrd_build=None, vmlinux_build=None)


def _copy_in(plan: VmPlan, snap: Snapshot, undo: ExitStack) -> None:
    snap_dir, paths = Path(snap.dir), plan.paths
    paths.dir.mkdir(parents=True, exist_ok=False)
    undo.callback(shutil.rmtree, paths.dir, True)
    copy_sparse(snap_dir / OVERLAY, paths.overlay)
    if plan.disks.work is not None:
        copy_sparse(snap_dir / WORK, plan.disks.work)
    for suffix in ("", ".pub"):
        shutil.copy2(snap_dir / f"{HOST_KEY}{suffix}", paths.dir / f"{HOST_KEY}{suffix}")
    public = (paths.dir / f"{HOST_KEY}.pub").read_text().strip()
    ssh.write_known_hosts(vm_paths(plan.vm).known_hosts, plan.host_key_alias, public)
