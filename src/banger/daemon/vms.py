"""VM lifecycle: create, start, stop, restart, kill, set, delete, prune.

Every operation on one VM holds that VM's lock, so operations on one VM run
one after another while different VMs proceed in parallel.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from banger.api.models import SshTarget, Vm, VmCreate, VmSet, VmState
from banger.daemon.context import Context
from banger.daemon.operations import Progress, now_iso
from banger.daemon.plan import (
    VmPlan,
    check_name,
    default_memory_mib,
    default_vcpus,
    host_key_alias,
    random_name,
)
from banger.daemon.runtime import VmRuntime, parse_signal
from banger.disk.overlay import create_overlay_disk
from banger.disk.work import create_work_disk
from banger.errors import UserError
from banger.guest import boot, ssh
from banger.net import plan as netplan
from banger.store.repo import name_taken
from banger.units import format_size, parse_size

log = logging.getLogger("banger.daemon")

DEFAULT_OVERLAY = "4G"
DEFAULT_WORK_DISK = "8G"


class VmService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.runtime = VmRuntime(ctx)
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # The fallback to software emulation is said once per daemon, not per VM.
        self._told_tcg = False

    @contextmanager
    def locked(self, name: str) -> Iterator[None]:
        with self._locks_guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            yield

    # queries

    def refresh(self, vm: Vm) -> Vm:
        """The stored VM with what actually runs: a VMM that died means stopped."""
        pid = self.ctx.vmm.pid(Path(vm.dir))
        state = vm.state
        if state == VmState.RUNNING and pid is None:
            state = VmState.STOPPED
            self.ctx.store.set_vm_state(vm.id, state)
        return vm.model_copy(update={"pid": pid, "state": state})

    def list_all(self) -> list[Vm]:
        return [self.refresh(vm) for vm in self.ctx.store.list_vms()]

    def show(self, name: str) -> Vm:
        return self.refresh(self.ctx.store.get_vm(name))

    def running(self, name: str) -> Vm:
        vm = self.show(name)
        if vm.state != VmState.RUNNING:
            raise UserError(
                f"VM {vm.name!r} is {vm.state}, not running",
                hint=f"start it with `banger vm start {vm.name}`",
            )
        return vm

    def ssh_target(self, name: str) -> SshTarget:
        vm = self.running(name)
        return SshTarget(
            host=vm.ip,
            identity_file=str(self.ctx.user_key()),
            known_hosts_file=str(Path(vm.dir) / "known_hosts"),
            host_key_alias=host_key_alias(vm),
        )

    # create

    def validate(self, req: VmCreate) -> VmCreate:
        """Check a request before an operation starts, so bad input fails fast."""
        store = self.ctx.store
        self.ctx.vmm.check_host()
        taken = {vm.name for vm in store.list_vms()}
        name = check_name(req.name) if req.name else random_name(taken)
        if name in taken:
            raise name_taken(name)
        image = store.get_image(req.image or self.ctx.default_image)
        store.get_kernel(image.kernel)
        parse_size(req.system_overlay_size or DEFAULT_OVERLAY, what="--system-overlay-size")
        parse_size(req.work_disk_size or DEFAULT_WORK_DISK, what="--work-disk-size")
        return req.model_copy(update={"image": image.name, "name": name})

    def _draft(self, req: VmCreate) -> Vm:
        ctx = self.ctx
        vm_id = uuid.uuid4().hex[:12]
        return Vm(
            id=vm_id,
            name=req.name or random_name({v.name for v in ctx.store.list_vms()}),
            image=req.image or ctx.default_image,
            state=VmState.CREATING,
            vcpus=req.vcpus or ctx.settings.default_vcpus or default_vcpus(),
            memory_mib=req.memory_mib or ctx.settings.default_memory_mib or default_memory_mib(),
            overlay_bytes=parse_size(req.system_overlay_size or DEFAULT_OVERLAY),
            work_disk_bytes=parse_size(req.work_disk_size or DEFAULT_WORK_DISK),
            nat=req.nat,
            ip="",
            tap=netplan.tap_name(vm_id),
            mac=netplan.mac_address(vm_id),
            vmm=ctx.vmm.name,
            dir=str(ctx.settings.vms_dir / vm_id),
            created_at=now_iso(),
        )

    def create(self, req: VmCreate, progress: Progress) -> Vm:
        ctx = self.ctx
        draft = self._draft(req)
        with self.locked(draft.name):
            progress.stage("lease", "reserving a name and an address")
            network = ctx.settings.network
            vm = ctx.store.create_vm(draft, network, reserved=[netplan.gateway(network)])
            if ctx.accel.kind == "tcg" and not self._told_tcg:
                self._told_tcg = True
                progress.info(f"note: {ctx.accel.reason}")
            progress.info(spec_line(vm, ctx))
            with ExitStack() as undo:
                undo.callback(ctx.store.delete_vm, vm.id)
                plan = self.runtime.plan(vm)
                self._make_disks(plan, progress, undo)
                if req.no_start:
                    ctx.store.set_vm_state(vm.id, VmState.STOPPED)
                else:
                    self.runtime.boot(plan, progress, undo)
                    ctx.store.set_vm_state(vm.id, VmState.RUNNING)
                undo.pop_all()
            return self.show(vm.id)

    def _make_disks(self, plan: VmPlan, progress: Progress, undo: ExitStack) -> None:
        vm = plan.vm
        progress.stage("disks", "creating the overlay and work disk (the image is shared)")
        plan.dir.mkdir(parents=True, exist_ok=False)
        undo.callback(shutil.rmtree, plan.dir, True)
        private, public = ssh.make_host_key(plan.dir, f"root@{vm.name}")
        ssh.write_known_hosts(plan.known_hosts, plan.host_key_alias, public)
        seed = boot.seed_files(
            authorized_keys=Path(f"{self.ctx.user_key()}.pub").read_text(),
            host_key_private=private,
            host_key_public=public,
        )
        create_overlay_disk(plan.overlay, vm.overlay_bytes, seed)
        if plan.work_disk is not None:
            image = self.ctx.store.get_image(vm.image)
            seed_dir = Path(image.work_seed) if image.work_seed else None
            create_work_disk(plan.work_disk, vm.work_disk_bytes, seed_dir)

    # start, stop, restart, kill

    def start(self, name: str, progress: Progress) -> Vm:
        vm = self.show(name)
        with self.locked(vm.name):
            vm = self.show(vm.id)
            if vm.state == VmState.RUNNING:
                progress.info(f"{vm.name} is already running")
                return vm
            self.ctx.store.set_vm_state(vm.id, VmState.STARTING)
            with ExitStack() as undo:
                undo.callback(self.ctx.store.set_vm_state, vm.id, VmState.STOPPED)
                self.runtime.boot(self.runtime.plan(vm), progress, undo)
                undo.pop_all()
            self.ctx.store.set_vm_state(vm.id, VmState.RUNNING)
            return self.show(vm.id)

    def stop(self, name: str, timeout: float, progress: Progress) -> Vm:
        vm = self.show(name)
        with self.locked(vm.name):
            vm = self.show(vm.id)
            self.ctx.store.set_vm_state(vm.id, VmState.STOPPING)
            try:
                self.runtime.halt(vm, progress, graceful_timeout=timeout)
            finally:
                self.ctx.store.set_vm_state(vm.id, VmState.STOPPED)
            return self.show(vm.id)

    def restart(self, name: str, timeout: float, progress: Progress) -> Vm:
        self.stop(name, timeout, progress)
        return self.start(name, progress)

    def kill(self, name: str, signal_name: str, progress: Progress) -> Vm:
        sig = parse_signal(signal_name)
        vm = self.show(name)
        with self.locked(vm.name):
            vm = self.show(vm.id)
            try:
                self.runtime.halt(vm, progress, graceful_timeout=None, sig=sig)
            finally:
                self.ctx.store.set_vm_state(vm.id, VmState.STOPPED)
            return self.show(vm.id)

    # set

    def check_set(self, name: str, req: VmSet) -> Vm:
        vm = self.ctx.store.get_vm(name)
        if req.work_disk_size is not None:
            size = parse_size(req.work_disk_size, what="--work-disk-size")
            if size < vm.work_disk_bytes:
                raise UserError(
                    f"the work disk of {vm.name} is {format_size(vm.work_disk_bytes)}; it cannot"
                    f" shrink to {format_size(size)}",
                    hint="pass a larger --work-disk-size",
                )
        return vm

    def set(self, name: str, req: VmSet, progress: Progress) -> Vm:
        vm = self.check_set(name, req)
        with self.locked(vm.name):
            vm = self.show(vm.id)
            size = parse_size(req.work_disk_size) if req.work_disk_size else None
            self.ctx.store.update_vm(
                vm.id, vcpus=req.vcpus, memory_mib=req.memory_mib, work_disk_bytes=size
            )
            if req.nat is not None and req.nat != vm.nat:
                self.ctx.store.update_vm(vm.id, nat=req.nat)
                if vm.state == VmState.RUNNING:
                    helper = self.ctx.helper()
                    if req.nat:
                        helper.nat_enable(self.ctx.settings.bridge, self.ctx.settings.subnet, vm.ip)
                    else:
                        helper.nat_disable(vm.ip)
                    progress.info(f"NAT {'on' if req.nat else 'off'} for {vm.name} now")
            needs_restart = vm.state == VmState.RUNNING and (
                req.vcpus is not None or req.memory_mib is not None or size is not None
            )
            if needs_restart:
                progress.info(
                    f"vCPUs, memory and work disk apply at the next start:"
                    f" `banger vm restart {vm.name}`"
                )
            return self.show(vm.id)

    # delete, prune

    def delete(self, name: str, progress: Progress) -> Vm:
        vm = self.ctx.store.get_vm(name)
        with self.locked(vm.name):
            self.runtime.halt(vm, progress, graceful_timeout=None)
            progress.stage("disks", "removing the VM's disks")
            shutil.rmtree(vm.dir, ignore_errors=True)
            self.ctx.store.delete_vm(vm.id)
        return vm.model_copy(update={"state": VmState.STOPPED, "pid": None})

    def prune(self, names: list[str], progress: Progress) -> list[str]:
        """Delete the named VMs if they are still stopped; return those deleted."""
        deleted = []
        for name in names:
            vm = self.show(name)
            if vm.state not in (VmState.STOPPED, VmState.ERROR):
                progress.info(f"skipping {vm.name}: it is {vm.state} now")
                continue
            progress.stage("delete", f"deleting {vm.name}")
            self.delete(vm.id, progress)
            deleted.append(vm.name)
        return deleted


def spec_line(vm: Vm, ctx: Context) -> str:
    return (
        f"{vm.name}: image {vm.image}, {vm.vcpus} vCPU, {vm.memory_mib} MiB,"
        f" overlay {format_size(vm.overlay_bytes)}, work disk {format_size(vm.work_disk_bytes)},"
        f" IP {vm.ip}{', NAT' if vm.nat else ''}, {ctx.vmm.name} ({ctx.accel.kind})"
    )
