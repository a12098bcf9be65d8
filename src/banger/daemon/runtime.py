"""Bringing a VM up and down: the steps create, start, stop and delete share.

``boot`` pushes an undo for every resource it makes onto the caller's stack;
``halt`` tears the running parts down in the reverse order and is safe to
call on a VM that is already (partly) down.
"""

from __future__ import annotations

import logging
import signal
import time
from contextlib import ExitStack
from pathlib import Path

from banger.api.models import Vm
from banger.daemon.context import Context
from banger.daemon.operations import Progress
from banger.daemon.plan import VmPlan, plan_vm
from banger.disk.work import grow_work_disk
from banger.errors import UserError
from banger.guest import ssh
from banger.kernel.initramfs import current_initramfs

log = logging.getLogger("banger.daemon")

BOOT_TIMEOUT = 300.0
# Asks the guest to shut down: banger's agent where the image has it (an image
# without systemd may have no poweroff at all), else the image's own init.
POWEROFF = (
    "/.banger/agent poweroff 2>/dev/null || systemctl poweroff 2>/dev/null"
    " || poweroff 2>/dev/null || poweroff -f"
)


def host_public_key(vm: Vm) -> str:
    return (Path(vm.dir) / "ssh_host_ed25519_key.pub").read_text().strip()


class VmRuntime:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def plan(self, vm: Vm) -> VmPlan:
        image = self.ctx.store.get_image(vm.image)
        kernel = self.ctx.store.get_kernel(image.kernel)
        kernel_dir = Path(kernel.dir)
        if (kernel_dir / "busybox").exists() and (kernel_dir / "modules").is_dir():
            # banger builds this initramfs itself: keep its /init current.
            initrd = current_initramfs(kernel_dir, kernel.version)
            kernel = kernel.model_copy(update={"initrd": str(initrd)})
        return plan_vm(
            self.ctx.settings,
            vm,
            image,
            kernel,
            accel=self.ctx.accel.kind,
            tsc_khz=self.ctx.tsc_khz,
        )

    def boot(self, plan: VmPlan, progress: Progress, undo: ExitStack) -> None:
        ctx = self.ctx
        vm = plan.vm
        work = plan.work_disk
        if work is not None and work.exists() and grow_work_disk(work, vm.work_disk_bytes):
            progress.info(f"grew the work disk to {vm.work_disk_bytes >> 20} MiB")

        progress.stage("network", f"tap {vm.tap} on bridge {ctx.settings.bridge}")
        helper = ctx.helper()
        ctx.bridge().ensure(helper)
        helper.create_tap(vm.tap, ctx.settings.bridge, ctx.uid)
        undo.callback(helper.delete_tap, vm.tap)
        if vm.nat:
            helper.nat_enable(ctx.settings.bridge, ctx.settings.subnet, vm.ip)
            undo.callback(helper.nat_disable, vm.ip)

        progress.stage("boot", f"starting {ctx.vmm.name} ({ctx.accel.kind})")
        ctx.vmm.launch(plan.vmm)
        undo.callback(ctx.vmm.kill, plan.dir)

        progress.stage("ssh", "waiting for the guest to accept SSH")
        try:
            took = ssh.wait_for_ssh(
                vm.ip,
                ctx.user_key(),
                host_public_key(vm),
                timeout=BOOT_TIMEOUT,
                alive=lambda: ctx.vmm.pid(plan.dir) is not None,
                what=f"VM {vm.name!r}",
            )
        except Exception:
            self._log_console_tail(plan)
            raise
        progress.info(f"{vm.name} answered SSH after {took:.1f}s")

    def halt(
        self,
        vm: Vm,
        progress: Progress,
        *,
        graceful_timeout: float | None,
        sig: signal.Signals = signal.SIGKILL,
    ) -> None:
        """Stop the VMM (gracefully first when a timeout is given), then free its tap and NAT."""
        ctx = self.ctx
        run_dir = Path(vm.dir)
        pid = ctx.vmm.pid(run_dir)
        if pid is not None and graceful_timeout:
            progress.stage("stop", f"asking {vm.name} to power off")
            if self._poweroff(vm, pid, graceful_timeout):
                progress.info(f"{vm.name} powered off")
            else:
                progress.info(f"{vm.name} did not power off in {graceful_timeout:.0f}s; killing it")
        elif pid is not None and sig != signal.SIGKILL:
            progress.stage("stop", f"sending {sig.name} to {ctx.vmm.name}")
            ctx.vmm.signal(run_dir, sig)
            self._wait_gone(run_dir, 10)
        elif pid is not None:
            progress.stage("stop", f"killing {ctx.vmm.name} (pid {pid})")
        ctx.vmm.kill(run_dir)
        progress.stage("network", f"removing tap {vm.tap}")
        helper = ctx.helper()
        if vm.nat:
            helper.nat_disable(vm.ip)
        helper.delete_tap(vm.tap)
        ctx.bridge().release_if_idle(helper, vm.id)

    def _poweroff(self, vm: Vm, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        try:
            ssh.run_in_guest(
                vm.ip, self.ctx.user_key(), host_public_key(vm), POWEROFF, timeout=min(10, timeout)
            )
        except Exception as exc:  # the connection often drops as the guest goes down
            log.debug("poweroff of %s: %s", vm.name, exc)
        return self._wait_gone(Path(vm.dir), max(0.0, deadline - time.monotonic()))

    def _wait_gone(self, run_dir: Path, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ctx.vmm.pid(run_dir) is None:
                return True
            time.sleep(0.2)
        return self.ctx.vmm.pid(run_dir) is None

    def _log_console_tail(self, plan: VmPlan) -> None:
        try:
            tail = plan.vmm.console_log.read_text(errors="replace").splitlines()[-20:]
        except OSError:
            return
        log.warning("console of %s ends with:\n%s", plan.vm.name, "\n".join(tail))


def parse_signal(name: str) -> signal.Signals:
    text = name.upper().removeprefix("SIG")
    if text.isdigit():
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
