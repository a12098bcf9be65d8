"""Applying a VM's plan: the steps create, start, stop and delete share.

``make_disks`` and ``boot`` push an undo for every resource they make onto
the caller's stack; ``halt`` tears the running parts down in the reverse
order and is safe to call on a VM that is already (partly) down.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path

from banger.api.models import Vm
from banger.daemon.agents import Agents
from banger.daemon.operations import Progress
from banger.daemon.plan import VmPlan, vm_paths
from banger.disk.overlay import create_overlay_disk
from banger.disk.work import create_work_disk, grow_work_disk
from banger.errors import BangerError, UserError
from banger.guest import boot, ssh
from banger.kernel.initramfs import build_initramfs
from banger.kernel.vmlinux import extract_vmlinux
from banger.net.network import Network
from banger.vmm import Vmms
from banger.vmm.base import Vmm, VmmConfig

log = logging.getLogger("banger.daemon")

BOOT_TIMEOUT = 300.0
# What the agent's `boot` op answers once the image's init has finished booting.
INIT_FINISHED = ("running", "degraded")
# Asks the guest to shut down over SSH, where the image has no agent channel:
# banger's agent script where the image has it (an image without systemd may
# have no poweroff at all), else the image's own init.
POWEROFF = (
    "/.banger/agent poweroff 2>/dev/null || systemctl poweroff 2>/dev/null"
    " || poweroff 2>/dev/null || poweroff -f"
)


def host_public_key(vm: Vm) -> str:
    return vm_paths(vm).host_key_pub.read_text().strip()


class VmRuntime:
    def __init__(
        self, vmms: Vmms, net: Network, user_key: Path, accel: str, agents: Agents
    ) -> None:
        self.vmms = vmms
        self.net = net
        self.user_key = user_key
        self.accel = accel
        self.agents = agents

    def vmm(self, vm: Vm) -> Vmm:
        """The driver of the VMM this VM was created with."""
        return self.vmms.get(vm.vmm)

    def make_disks(self, plan: VmPlan, progress: Progress, undo: ExitStack) -> None:
        """A new VM's directory, host key and disks (the image is shared, never copied)."""
        vm, paths, disks = plan.vm, plan.paths, plan.disks
        progress.stage("disks", "creating the overlay and work disk (the image is shared)")
        paths.dir.mkdir(parents=True, exist_ok=False)
        undo.callback(shutil.rmtree, paths.dir, True)
        private, public = ssh.make_host_key(paths.host_key, f"root@{vm.name}")
        ssh.write_known_hosts(paths.known_hosts, plan.host_key_alias, public)
        seed = boot.seed_files(
            authorized_keys=Path(f"{self.user_key}.pub").read_text(),
            host_key_private=private,
            host_key_public=public,
        )
        create_overlay_disk(disks.overlay, disks.overlay_bytes, seed)
        if disks.work is not None:
            create_work_disk(disks.work, disks.work_bytes, disks.work_seed)

    def boot(
        self, plan: VmPlan, progress: Progress, undo: ExitStack, *, wait_boot: bool = False
    ) -> None:
        """Launch the VM and wait until it takes commands: its agent answers, or SSH does.

        ``wait_boot`` also waits for the image's own init to finish booting.
        """
        vm = plan.vm
        work = plan.disks.work
        if work is not None and work.exists() and grow_work_disk(work, vm.work_disk_bytes):
            progress.info(f"grew the work disk to {vm.work_disk_bytes >> 20} MiB")
        build = plan.initrd_build
        if build is not None and not build.out.exists():
            progress.info("building banger's initramfs for this kernel (once)")
            build_initramfs(build.modules, build.version, build.busybox, build.out)
        elf = plan.vmlinux_build
        if elf is not None and not elf.out.exists():
            progress.info("deriving the kernel's vmlinux for Firecracker (once)")
            extract_vmlinux(elf.bzimage, elf.out)
        vmm = self.vmm(vm)

        progress.stage("network", f"tap {vm.tap} on bridge {self.net.bridge_name}")
        undo.callback(self.net.attach(vm))

        progress.stage("boot", f"starting {vmm.name} ({self.accel})")
        self._launch(vmm.launch, plan, vm)  # a launch that fails cleans up after itself
        undo.callback(vmm.kill, plan.dir)

        undo.callback(self.agents.forget_sync, vm)
        try:
            if self.agents.has_channel(vm):
                self._wait_agent(plan, vmm, progress, wait_boot=wait_boot)
            else:
                self._wait_ssh(plan, vmm, progress)
        except Exception:
            self._log_console_tail(plan)
            raise

    def _wait_agent(self, plan: VmPlan, vmm: Vmm, progress: Progress, *, wait_boot: bool) -> None:
        vm = plan.vm
        progress.stage("agent", "waiting for banger's agent")
        took = self.agents.wait_ready_sync(
            vm, timeout=BOOT_TIMEOUT, alive=lambda: vmm.pid(plan.dir) is not None
        )
        progress.info(f"{vm.name}'s agent answered after {took:.1f}s")
        if wait_boot:
            self.wait_init(vm, progress, timeout=BOOT_TIMEOUT)

    def wait_init(
        self, vm: Vm, progress: Progress, *, timeout: float, why: str = ""
    ) -> tuple[str, str]:
        """Until the image's own init has finished booting or ``timeout`` passed: (init, state).

        The agent's `boot` op answers with the state once init is done
        (``INIT_FINISHED``) or its wait is up; the call allows it a little
        longer, so the answer at the deadline says which instead of timing out.
        """
        progress.stage("init", f"waiting for the image's own init to finish booting{why}")
        start = time.monotonic()
        result = self.agents.call_sync(vm, "boot", {"wait": timeout}, timeout=timeout + 10)
        init, state = str(result.get("init", "?")), str(result.get("state", "?"))
        progress.info(f"{vm.name}'s init ({init}) is {state} after {time.monotonic() - start:.1f}s")
        return init, state

    def _wait_ssh(self, plan: VmPlan, vmm: Vmm, progress: Progress) -> None:
        vm = plan.vm
        progress.stage("ssh", "waiting for the guest to accept SSH")
        took = ssh.wait_for_ssh(
            vm.ip,
            self.user_key,
            host_public_key(vm),
            timeout=BOOT_TIMEOUT,
            alive=lambda: vmm.pid(plan.dir) is not None,
            what=f"VM {vm.name!r}",
        )
        progress.info(f"{vm.name} answered SSH after {took:.1f}s")

    def restore(self, plan: VmPlan, snapshot: Path, progress: Progress, undo: ExitStack) -> None:
        """Network, then the VMM from ``snapshot`` instead of a boot; running when it returns."""
        vm, vmm = plan.vm, self.vmm(plan.vm)
        progress.stage("network", f"tap {vm.tap} on bridge {self.net.bridge_name}")
        undo.callback(self.net.attach(vm))
        progress.stage("restore", f"starting {vmm.name} from the snapshot's memory")
        started = time.monotonic()
        self._launch(lambda config: vmm.restore(config, snapshot), plan, vm)
        undo.callback(vmm.kill, plan.dir)
        undo.callback(self.agents.forget_sync, vm)
        progress.info(f"{vm.name} restored in {time.monotonic() - started:.2f}s")

    def halt(
        self,
        vm: Vm,
        progress: Progress,
        *,
        graceful_timeout: float | None,
        sig: signal.Signals = signal.SIGKILL,
    ) -> None:
        """Stop the VMM (gracefully first when a timeout is given), then free its network."""
        run_dir = Path(vm.dir)
        vmm = self.vmm(vm)
        pid = vmm.pid(run_dir)
        if pid is not None and graceful_timeout:
            progress.stage("stop", f"asking {vm.name} to power off")
            if self._poweroff(vm, vmm, graceful_timeout, progress):
                progress.info(f"{vm.name} powered off")
            else:
                progress.info(f"{vm.name} did not power off in {graceful_timeout:.0f}s; killing it")
        elif pid is not None and sig != signal.SIGKILL:
            progress.stage("stop", f"sending {sig.name} to {vmm.name}")
            vmm.signal(run_dir, sig)
            self._wait_gone(vmm, run_dir, 10)
        elif pid is not None:
            progress.stage("stop", f"killing {vmm.name} (pid {pid})")
        vmm.kill(run_dir)
        self.agents.forget_sync(vm)
        progress.stage("network", f"removing tap {vm.tap}")
        self.net.detach(vm)

    def _poweroff(self, vm: Vm, vmm: Vmm, timeout: float, progress: Progress) -> bool:
        deadline = time.monotonic() + timeout
        if self.agents.has_channel(vm):
            # banger's agent powers off whatever init runs; it answers first, then goes.
            try:
                self.agents.call_sync(vm, "poweroff", timeout=min(10, timeout))
                progress.info(f"{vm.name}'s agent is powering it off")
            except BangerError as exc:
                progress.info(f"{exc.message}; trying the VMM and SSH")
            else:
                if self._wait_gone(vmm, Path(vm.dir), max(0.0, deadline - time.monotonic())):
                    return True
        # Firecracker's way (Ctrl-Alt-Del to the guest) next, where the VMM has one;
        # banger's agent script or the image's poweroff over SSH when that does not do it.
        remaining = max(0.0, deadline - time.monotonic())
        if vmm.shutdown(Path(vm.dir)) and self._wait_gone(vmm, Path(vm.dir), remaining / 2):
            return True
        try:
            ssh.run_in_guest(
                vm.ip, self.user_key, host_public_key(vm), POWEROFF, timeout=min(10, timeout)
            )
        except Exception as exc:  # the connection often drops as the guest goes down
            log.debug("poweroff of %s: %s", vm.name, exc)
        return self._wait_gone(vmm, Path(vm.dir), max(0.0, deadline - time.monotonic()))

    def _wait_gone(self, vmm: Vmm, run_dir: Path, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if vmm.pid(run_dir) is None:
                return True
            time.sleep(0.2)
        return vmm.pid(run_dir) is None

    def _launch(self, start: Callable[[VmmConfig], int], plan: VmPlan, vm: Vm) -> None:
        """Start the VMM; with the tap's descriptor when the helper had to open it."""
        vmm = self.vmm(vm)
        takes_fd = getattr(vmm, "takes_tap_fd", False) and plan.vmm.net is not None
        fd = self.net.tap_fd(vm) if takes_fd else None
        if fd is None or plan.vmm.net is None:
            start(plan.vmm)
            return
        try:
            net = replace(plan.vmm.net, tap_fd=fd)
            start(replace(plan.vmm, net=net))
        finally:
            os.close(fd)  # the VMM holds its own copy now

    def _log_console_tail(self, plan: VmPlan) -> None:
        try:
            tail = plan.vmm.console_log.read_text(errors="replace").splitlines()[-20:]
        except OSError:
            return
        log.warning("console of %s ends with:\n%s", plan.vm.name, "\n".join(tail))


def parse_signal(name: str) -> signal.Signals:
    text = name.upper().removeprefix("SIG")
    if text.isascii() and text.isdigit():
        try:
            return signal.Signals(int(text))
        except ValueError:
            pass
    else:
        try:
            return signal.Signals[f"SIG{text}"]
        except KeyError:
            pass
    raise UserError(
        f"{name!r} is not a signal", hint="use a name like KILL, TERM, INT or a number like 9"
    )
