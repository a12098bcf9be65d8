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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from banger.api.models import SshTarget, Vm, VmCreate, VmSet, VmState
from banger.config import Settings
from banger.daemon.agents import Agents
from banger.daemon.forwards import ForwardService
from banger.daemon.images import with_agent_state
from banger.daemon.mounts import check_mounts, kernel_has_9p
from banger.daemon.operations import Progress, now_iso
from banger.daemon.plan import (
    HostFacts,
    Sources,
    VmPlan,
    check_name,
    decide_vm,
    host_key_alias,
    plan_vm,
    random_name,
    vm_paths,
)
from banger.daemon.runtime import VmRuntime, parse_signal
from banger.errors import BangerError, NotFound, UserError
from banger.guest.ssh import wait_for_port
from banger.kernel.initramfs import owns_initramfs
from banger.net.network import Network
from banger.net.portspec import parse_publishes
from banger.store import Store
from banger.store.repo import name_taken
from banger.units import format_size, parse_size
from banger.vmm import Vmms

log = logging.getLogger("banger.daemon")

DEFAULT_IMAGE = "debian-bookworm"
# How long `vm ssh` waits for the image's SSH server once the agent answered.
SSH_PORT_TIMEOUT = 45.0


@dataclass(frozen=True)
class CreateRequest:
    """A create request checked before its operation starts, with what it was checked against."""

    vm: Vm
    sources: Sources
    no_start: bool
    # Done only when the image's own init has finished booting too.
    wait_boot: bool = False
    # Boot even where the image has a boot snapshot that fits (``warm.py``).
    cold: bool = False


class VmService:
    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        vmm: Vmms,
        net: Network,
        host: HostFacts,
        user_key: Path,
        forwards: ForwardService,
        agents: Agents,
        default_image: str = DEFAULT_IMAGE,
    ) -> None:
        self.settings = settings
        self.forwards = forwards
        self.store = store
        self.vmm = vmm
        self.net = net
        self.host = host
        self.user_key = user_key
        self.default_image = default_image
        self.agents = agents
        self.runtime = VmRuntime(vmm, net, user_key, host.accel, agents)
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
        pid = self.runtime.vmm(vm).pid(Path(vm.dir))
        state = vm.state
        if state in (VmState.RUNNING, VmState.PAUSED) and pid is None:
            state = VmState.STOPPED
            self._gone(vm)
        forwards = self.forwards.view(vm)
        return vm.model_copy(update={"pid": pid, "state": state, "forwards": forwards})

    def _gone(self, vm: Vm) -> None:
        """A VMM that died by itself (killed, crashed): free what the running VM held.

        Its tap, NAT entry and agent link would otherwise stay until the next
        daemon start. Callers may hold the VM's lock, so this takes none; the
        state is read again first, so a start that began since is left alone.
        """
        try:
            if self.store.get_vm(vm.id).state not in (VmState.RUNNING, VmState.PAUSED):
                return
        except NotFound:  # deleted meanwhile
            return
        log.warning("%s: its VMM exited without banger stopping it", vm.name)
        self.store.set_vm_state(vm.id, VmState.STOPPED)
        self.runtime.vmm(vm).kill(Path(vm.dir))  # its stale pidfile and sockets
        self.agents.forget_soon(vm)
        try:
            self.net.detach(vm)
        except BangerError as exc:  # the next daemon start's reconcile tries again
            log.warning("%s: network not freed: %s", vm.name, exc.message)

    def list_all(self) -> list[Vm]:
        return [self.refresh(vm) for vm in self.store.list_vms()]

    def show(self, name: str) -> Vm:
        return self.refresh(self.store.get_vm(name))

    def running(self, name: str) -> Vm:
        vm = self.show(name)
        if vm.state == VmState.PAUSED:
            raise UserError(
                f"VM {vm.name!r} is paused", hint=f"resume it with `banger vm resume {vm.name}`"
            )
        if vm.state != VmState.RUNNING:
            raise UserError(
                f"VM {vm.name!r} is {vm.state}, not running",
                hint=f"start it with `banger vm start {vm.name}`",
            )
        return vm

    def vmm_metrics(self, vm: Vm) -> dict[str, Any] | None:
        """The VMM's own counters (Firecracker's metrics), where it keeps any."""
        return self.runtime.vmm(vm).metrics(Path(vm.dir))

    def ssh_target(self, name: str) -> SshTarget:
        vm = self.running(name)
        if self.agents.has_channel(vm):
            # The VM was ready when its agent answered; the image's own SSH server
            # may still be starting, and the caller is about to use it.
            wait_for_port(vm.ip, 22, timeout=SSH_PORT_TIMEOUT, what=f"VM {vm.name!r}")
        return SshTarget(
            host=vm.ip,
            identity_file=str(self.user_key),
            known_hosts_file=str(vm_paths(vm).known_hosts),
            host_key_alias=host_key_alias(vm),
        )

    # planning

    def sources(self, image_name: str) -> Sources:
        image = self.store.get_image(image_name)
        kernel = self.store.get_kernel(image.kernel)
        return Sources(image=image, kernel=kernel, own_initrd=owns_initramfs(Path(kernel.dir)))

    def plan(self, vm: Vm, sources: Sources | None = None) -> VmPlan:
        return plan_vm(self.settings, vm, sources or self.sources(vm.image), self.host)

    # create

    def validate(self, req: VmCreate) -> CreateRequest:
        """Check a request before an operation starts, so bad input fails fast."""
        self.vmm.get(req.vmm or "auto").check_host()
        taken = {vm.name for vm in self.store.list_vms()}
        name = check_name(req.name) if req.name else random_name(taken)
        if name in taken:
            raise name_taken(name)
        sources = self.sources(req.image or self.default_image)
        vm = decide_vm(
            req,
            vm_id=uuid.uuid4().hex[:12],
            name=name,
            image=sources.image,
            settings=self.settings,
            host=self.host,
            now=now_iso(),
        )
        forwards = parse_publishes(req.ports)
        mounts = check_mounts(req.mounts, self.settings, vmm=vm.vmm)
        if mounts:
            self._check_kernel_shares(sources)
        self.forwards.check_free(forwards)
        vm = vm.model_copy(update={"forwards": forwards, "mounts": mounts})
        return CreateRequest(
            vm=vm, sources=sources, no_start=req.no_start, wait_boot=req.wait_boot, cold=req.cold
        )

    def _check_kernel_shares(self, sources: Sources) -> None:
        kernel = sources.kernel
        if sources.own_initrd and kernel_has_9p(Path(kernel.dir), kernel.version):
            return
        why = "has no 9p modules" if sources.own_initrd else "boots an initramfs not banger's"
        raise UserError(
            f"--mount needs virtio-9p in the guest, and kernel {kernel.name!r} of image"
            f" {sources.image.name!r} {why}",
            hint="boot an image whose kernel has it: `banger kernel pull debian-bookworm-generic`"
            " and `banger image pull debian-bookworm --kernel-ref debian-bookworm-generic"
            " --name debian-9p`; or copy files in with `banger vm cp`",
        )

    def create(self, req: CreateRequest, progress: Progress) -> Vm:
        with self.locked(req.vm.name):
            progress.stage("lease", "reserving a name and an address")
            vm = self.net.lease(req.vm, self.store)
            if self.host.accel == "tcg" and not self._told_tcg:
                self._told_tcg = True
                progress.info(f"note: {self.host.accel_reason}")
            progress.info(spec_line(vm, self.host))
            if with_agent_state(req.sources.image).agent_outdated:
                progress.info(
                    f"note: image {vm.image} has another version of banger's guest agent;"
                    f" `banger image show {vm.image}` says how to make it again"
                )
            with ExitStack() as undo:
                undo.callback(self.store.delete_vm, vm.id)
                self.forwards.open_all(vm)
                undo.callback(self.forwards.close_vm, vm)
                for forward in vm.forwards:
                    progress.info(
                        f"forwarding {forward.host_ip}:{forward.host_port} to port"
                        f" {forward.guest_port} of {vm.name}"
                    )
                plan = self.plan(vm, req.sources)
                self.runtime.make_disks(plan, progress, undo)
                if req.no_start:
                    self.store.set_vm_state(vm.id, VmState.STOPPED)
                else:
                    self.runtime.boot(plan, progress, undo, wait_boot=req.wait_boot)
                    self.store.set_vm_state(vm.id, VmState.RUNNING)
                undo.pop_all()
            return self.show(vm.id)

    # start, stop, restart, kill

    def start(self, name: str, progress: Progress) -> Vm:
        vm = self.show(name)
        with self.locked(vm.name):
            vm = self.show(vm.id)
            if vm.state == VmState.RUNNING:
                progress.info(f"{vm.name} is already running")
                return vm
            if vm.state == VmState.PAUSED:
                return self._resume(vm, progress)
            self.store.set_vm_state(vm.id, VmState.STARTING)
            with ExitStack() as undo:
                undo.callback(self.store.set_vm_state, vm.id, VmState.STOPPED)
                self.runtime.boot(self.plan(vm), progress, undo)
                undo.pop_all()
            self.store.set_vm_state(vm.id, VmState.RUNNING)
            return self.show(vm.id)

    def stop(self, name: str, timeout: float, progress: Progress) -> Vm:
        vm = self.show(name)
        with self.locked(vm.name):
            vm = self.show(vm.id)
            if vm.state == VmState.PAUSED:
                # A paused guest cannot power itself off.
                self.runtime.vmm(vm).resume(Path(vm.dir))
            self.store.set_vm_state(vm.id, VmState.STOPPING)
            try:
                self.runtime.halt(vm, progress, graceful_timeout=timeout)
            finally:
                self.store.set_vm_state(vm.id, VmState.STOPPED)
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
                self.store.set_vm_state(vm.id, VmState.STOPPED)
            return self.show(vm.id)

    # pause, resume

    def pause(self, name: str, progress: Progress) -> Vm:
        vm = self.show(name)
        with self.locked(vm.name):
            vm = self.show(vm.id)
            if vm.state == VmState.PAUSED:
                progress.info(f"{vm.name} is already paused")
                return vm
            vm = self.running(vm.id)
            progress.stage("pause", f"stopping the vCPUs of {vm.name} (its memory stays)")
            self.runtime.vmm(vm).pause(Path(vm.dir))
            self.store.set_vm_state(vm.id, VmState.PAUSED)
            return self.show(vm.id)

    def resume(self, name: str, progress: Progress) -> Vm:
        vm = self.show(name)
        with self.locked(vm.name):
            vm = self.show(vm.id)
            if vm.state == VmState.RUNNING:
                progress.info(f"{vm.name} is already running")
                return vm
            if vm.state != VmState.PAUSED:
                raise UserError(
                    f"VM {vm.name!r} is {vm.state}, not paused",
                    hint=f"start it with `banger vm start {vm.name}`",
                )
            return self._resume(vm, progress)

    def _resume(self, vm: Vm, progress: Progress) -> Vm:
        progress.stage("resume", f"letting {vm.name} run again")
        self.runtime.vmm(vm).resume(Path(vm.dir))
        self.store.set_vm_state(vm.id, VmState.RUNNING)
        return self.show(vm.id)

    # set

    def check_set(self, name: str, req: VmSet) -> Vm:
        vm = self.store.get_vm(name)
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
            self.store.update_vm(
                vm.id, vcpus=req.vcpus, memory_mib=req.memory_mib, work_disk_bytes=size
            )
            if req.nat is not None and req.nat != vm.nat:
                self.store.update_vm(vm.id, nat=req.nat)
                if vm.state == VmState.RUNNING:
                    self.net.set_nat(vm, req.nat)
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
        vm = self.store.get_vm(name)
        with self.locked(vm.name):
            self.runtime.halt(vm, progress, graceful_timeout=None)
            self.forwards.close_vm(vm)
            progress.stage("disks", "removing the VM's disks")
            shutil.rmtree(vm.dir, ignore_errors=True)
            self.store.delete_vm(vm.id)
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


def spec_line(vm: Vm, host: HostFacts) -> str:
    return (
        f"{vm.name}: image {vm.image}, {vm.vcpus} vCPU, {vm.memory_mib} MiB,"
        f" overlay {format_size(vm.overlay_bytes)}, work disk {format_size(vm.work_disk_bytes)},"
        f" IP {vm.ip}{', NAT' if vm.nat else ''}, {vm.vmm} ({host.accel})"
    )
