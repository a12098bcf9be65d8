"""VM lifecycle: create (plan, then execute with an undo stack) and delete."""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from contextlib import ExitStack
from pathlib import Path

from banger.api.models import SshTarget, Vm, VmCreate, VmState
from banger.daemon.context import Context
from banger.daemon.operations import Progress, now_iso
from banger.daemon.plan import (
    VmPlan,
    check_name,
    default_memory_mib,
    default_vcpus,
    host_key_alias,
    plan_vm,
    random_name,
)
from banger.disk.overlay import create_overlay_disk
from banger.errors import UserError
from banger.guest import boot, ssh
from banger.net import plan as netplan
from banger.store.repo import name_taken
from banger.units import format_size, parse_size

log = logging.getLogger("banger.daemon")

DEFAULT_OVERLAY = "4G"
BOOT_TIMEOUT = 300.0


class VmService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        # The fallback to software emulation is said once per daemon, not per VM.
        self._told_tcg = False

    def _lock(self, name: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(name, threading.Lock())

    # queries

    def refresh(self, vm: Vm) -> Vm:
        """The stored VM with what actually runs: a VMM that died means stopped."""
        pid = self.ctx.vmm.pid(Path(vm.dir))
        state = vm.state
        if state == VmState.RUNNING and pid is None:
            state = VmState.STOPPED
            self.ctx.store.set_vm_state(vm.id, state)
        return vm.model_copy(update={"pid": pid, "state": state})

    def list(self) -> list[Vm]:
        return [self.refresh(vm) for vm in self.ctx.store.list_vms()]

    def show(self, name: str) -> Vm:
        return self.refresh(self.ctx.store.get_vm(name))

    def ssh_target(self, name: str) -> SshTarget:
        vm = self.show(name)
        if vm.state != VmState.RUNNING:
            raise UserError(
                f"VM {vm.name!r} is {vm.state}, not running",
                hint="start a new one with `banger vm run`, or delete it with"
                f" `banger vm delete {vm.name}`",
            )
        return SshTarget(
            host=vm.ip,
            identity_file=str(ssh.ensure_user_key(self.ctx.settings.ssh_dir)),
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
        if req.nat:
            raise UserError("--nat is not available yet", hint="NAT arrives with the network issue")
        if req.no_start:
            raise UserError("--no-start is not available yet", hint="create without it")
        return req.model_copy(update={"image": image.name, "name": name})

    def create(self, req: VmCreate, progress: Progress) -> Vm:
        ctx = self.ctx
        name = req.name or random_name({v.name for v in ctx.store.list_vms()})
        with self._lock(name):
            image = ctx.store.get_image(req.image or ctx.default_image)
            kernel = ctx.store.get_kernel(image.kernel)
            vm_id = uuid.uuid4().hex[:12]
            draft = Vm(
                id=vm_id,
                name=name,
                image=image.name,
                state=VmState.CREATING,
                vcpus=req.vcpus or ctx.settings.default_vcpus or default_vcpus(),
                memory_mib=req.memory_mib
                or ctx.settings.default_memory_mib
                or default_memory_mib(),
                overlay_bytes=parse_size(req.system_overlay_size or DEFAULT_OVERLAY),
                ip="",
                tap=netplan.tap_name(vm_id),
                mac=netplan.mac_address(vm_id),
                vmm=ctx.vmm.name,
                dir=str(ctx.settings.vms_dir / vm_id),
                created_at=now_iso(),
            )
            progress.stage("lease", "reserving a name and an address")
            vm = ctx.store.create_vm(
                draft, ctx.settings.network, reserved=[netplan.gateway(ctx.settings.network)]
            )
            plan = plan_vm(
                ctx.settings, vm, image, kernel, accel=ctx.accel.kind, tsc_khz=ctx.tsc_khz
            )
            if ctx.accel.kind == "tcg" and not self._told_tcg:
                self._told_tcg = True
                progress.info(f"note: {ctx.accel.reason}")
            progress.info(
                f"{vm.name}: image {image.name}, {vm.vcpus} vCPU, {vm.memory_mib} MiB,"
                f" overlay {format_size(vm.overlay_bytes)}, IP {vm.ip}, {ctx.vmm.name}"
                f" ({ctx.accel.kind})"
            )
            with ExitStack() as undo:
                undo.callback(ctx.store.delete_vm, vm.id)
                self._execute(plan, progress, undo)
                undo.pop_all()
            ctx.store.set_vm_state(vm.id, VmState.RUNNING)
            return self.show(vm.id)

    def _execute(self, plan: VmPlan, progress: Progress, undo: ExitStack) -> None:
        ctx = self.ctx
        vm = plan.vm
        progress.stage("disks", "creating the system overlay (the image is shared, not copied)")
        plan.dir.mkdir(parents=True, exist_ok=False)
        undo.callback(shutil.rmtree, plan.dir, True)
        user_key = ssh.ensure_user_key(ctx.settings.ssh_dir)
        private, public = ssh.make_host_key(plan.dir, f"root@{vm.name}")
        ssh.write_known_hosts(plan.known_hosts, plan.host_key_alias, public)
        seed = boot.seed_files(
            authorized_keys=Path(f"{user_key}.pub").read_text(),
            host_key_private=private,
            host_key_public=public,
        )
        create_overlay_disk(plan.overlay, vm.overlay_bytes, seed)

        progress.stage("network", f"tap {vm.tap} on bridge {ctx.settings.bridge}")
        helper = ctx.helper()
        helper.ensure_bridge(ctx.settings.bridge, netplan.bridge_address(ctx.settings.network))
        helper.create_tap(vm.tap, ctx.settings.bridge, ctx.uid)
        undo.callback(helper.delete_tap, vm.tap)

        progress.stage("boot", f"starting {ctx.vmm.name} ({ctx.accel.kind})")
        ctx.vmm.launch(plan.vmm)
        undo.callback(ctx.vmm.kill, plan.dir)

        progress.stage("ssh", "waiting for the guest to accept SSH")
        try:
            took = ssh.wait_for_ssh(
                vm.ip,
                user_key,
                public,
                timeout=BOOT_TIMEOUT,
                alive=lambda: ctx.vmm.pid(plan.dir) is not None,
                what=f"VM {vm.name!r}",
            )
        except Exception:
            self._log_console_tail(plan)
            raise
        progress.info(f"{vm.name} answered SSH after {took:.1f}s")

    def _log_console_tail(self, plan: VmPlan) -> None:
        try:
            tail = plan.vmm.console_log.read_text(errors="replace").splitlines()[-20:]
        except OSError:
            return
        log.warning("console of %s ends with:\n%s", plan.vm.name, "\n".join(tail))

    # delete

    def delete(self, name: str, progress: Progress) -> Vm:
        vm = self.ctx.store.get_vm(name)
        with self._lock(vm.name):
            progress.stage("stop", f"stopping {vm.name}")
            self.ctx.vmm.kill(Path(vm.dir))
            progress.stage("network", f"removing tap {vm.tap}")
            self.ctx.helper().delete_tap(vm.tap)
            progress.stage("disks", "removing the VM's disks")
            shutil.rmtree(vm.dir, ignore_errors=True)
            self.ctx.store.delete_vm(vm.id)
        return vm.model_copy(update={"state": VmState.STOPPED, "pid": None})
