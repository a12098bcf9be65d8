"""VMM drivers behind one small interface (``banger.vmm.base.Vmm``).

The daemon holds one driver of each kind (``Vmms``) and each VM names its own
in its record, so Firecracker and QEMU VMs run side by side. ``choose`` is
what ``auto`` means on this host, with the sentence ``doctor`` and
``daemon status`` show.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from banger.config import Settings
from banger.errors import UserError, VmmError
from banger.vmm.accel import AccelChoice
from banger.vmm.base import AgentEndpoint, Vmm, VmmConfig

VMM_NAMES = ("firecracker", "qemu")


@dataclass(frozen=True)
class VmmChoice:
    name: str  # "firecracker" or "qemu"
    reason: str


def choose(requested: str, firecracker_installed: bool, accel: AccelChoice) -> VmmChoice:
    """What ``requested`` ("auto", "firecracker" or "qemu") means on this host."""
    if requested in VMM_NAMES:
        return VmmChoice(requested, f"vmm = {requested} is configured")
    if firecracker_installed and accel.kind == "kvm":
        return VmmChoice("firecracker", "Firecracker is installed and KVM can run guests")
    if firecracker_installed:
        return VmmChoice("qemu", f"Firecracker is installed but needs KVM: {accel.reason}")
    return VmmChoice(
        "qemu", f"Firecracker is not installed; QEMU runs guests ({accel.kind}: {accel.reason})"
    )


class Vmms:
    """One driver per kind; also answers for "whichever kind runs from this directory"."""

    def __init__(self, drivers: Mapping[str, Vmm], default: VmmChoice) -> None:
        self.drivers = dict(drivers)
        self.default = default
        self.name = default.name

    def get(self, name: str) -> Vmm:
        chosen = self.default.name if name in ("", "auto") else name
        try:
            return self.drivers[chosen]
        except KeyError:
            raise UserError(
                f"{name!r} is not a VMM banger knows", hint="use auto, firecracker or qemu"
            ) from None

    # The Vmm protocol over every kind, for callers that know only a run directory.

    def check_host(self) -> None:
        self.get(self.default.name).check_host()

    def argv(self, config: VmmConfig) -> list[str]:
        return self.get(self.default.name).argv(config)

    def launch(self, config: VmmConfig) -> int:
        return self.get(self.default.name).launch(config)

    def pid(self, run_dir: Path) -> int | None:
        for driver in self.drivers.values():
            pid = driver.pid(run_dir)
            if pid is not None:
                return pid
        return None

    def signal(self, run_dir: Path, sig: signal.Signals) -> bool:
        return any(driver.signal(run_dir, sig) for driver in self.drivers.values())

    def shutdown(self, run_dir: Path) -> bool:
        return any(driver.shutdown(run_dir) for driver in self.drivers.values())

    def metrics(self, run_dir: Path) -> dict[str, Any] | None:
        for driver in self.drivers.values():
            found = driver.metrics(run_dir)
            if found is not None:
                return found
        return None

    def agent_endpoint(self, run_dir: Path) -> AgentEndpoint:
        for driver in self.drivers.values():
            if driver.pid(run_dir) is not None:
                return driver.agent_endpoint(run_dir)
        return self.get(self.default.name).agent_endpoint(run_dir)

    def running_under(self, root: Path) -> dict[Path, int]:
        found: dict[Path, int] = {}
        for driver in self.drivers.values():
            found.update(driver.running_under(root))
        return found

    def kill(self, run_dir: Path, *, timeout: float = 10.0) -> None:
        for driver in self.drivers.values():
            driver.kill(run_dir, timeout=timeout)

    def _running(self, run_dir: Path) -> Vmm:
        for driver in self.drivers.values():
            if driver.pid(run_dir) is not None:
                return driver
        raise VmmError(
            f"no VMM runs for the VM in {run_dir}", hint="start it with `banger vm start NAME`"
        )

    def version(self) -> str:
        return self.get(self.default.name).version()

    def pause(self, run_dir: Path) -> None:
        self._running(run_dir).pause(run_dir)

    def resume(self, run_dir: Path) -> None:
        self._running(run_dir).resume(run_dir)

    def paused(self, run_dir: Path) -> bool:
        return any(driver.paused(run_dir) for driver in self.drivers.values())

    def save(self, run_dir: Path, into: Path) -> None:
        self._running(run_dir).save(run_dir, into)

    def restore(self, config: VmmConfig, snapshot: Path) -> int:
        return self.get(self.default.name).restore(config, snapshot)


def build_vmms(settings: Settings, accel: AccelChoice, helper: Any) -> Vmms:
    """Both drivers for this host; ``helper`` runs the jailer (None: never jail)."""
    from banger.vmm.firecracker import FirecrackerVmm
    from banger.vmm.qemu import QemuVmm

    firecracker, jailer = settings.firecracker_binaries()
    drivers: dict[str, Vmm] = {
        "firecracker": FirecrackerVmm(firecracker, jailer, helper, settings.home / "jail"),
        "qemu": QemuVmm(),
    }
    return Vmms(drivers, choose(settings.vmm, firecracker is not None, accel))
