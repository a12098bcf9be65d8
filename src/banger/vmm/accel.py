"""Choose how guests run: KVM when it can run a stock kernel, else TCG emulation."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from banger.errors import HostError

log = logging.getLogger("banger.vmm")

_PVM_WHY = (
    "the host's KVM is PVM (para-virtualized nested KVM), which cannot run stock guest"
    " kernels; guests run under TCG software emulation instead, slower but working"
)


@dataclass(frozen=True)
class AccelChoice:
    kind: str  # "kvm" or "tcg"
    reason: str  # a sentence for `doctor` and the daemon's log


def _kvm_opens(dev_kvm: Path) -> str | None:
    """None when ``dev_kvm`` opens read-write, else why not."""
    try:
        fd = os.open(dev_kvm, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return f"{dev_kvm} does not exist (no KVM on this host)"
    except PermissionError:
        return f"{dev_kvm} is not readable and writable by this user (add it to the kvm group)"
    except OSError as exc:
        return f"{dev_kvm} cannot be opened: {exc.strerror}"
    os.close(fd)
    return None


def kvm_is_pvm(sys_module: Path = Path("/sys/module"), boot_dir: Path = Path("/boot")) -> bool:
    """Whether the host's KVM is PVM: its module is loaded, or the kernel config has it."""
    if (sys_module / "kvm_pvm").exists():
        return True
    config = boot_dir / f"config-{os.uname().release}"
    try:
        text = config.read_text(errors="replace")
    except OSError:
        return False
    return any(
        line.startswith(("CONFIG_KVM_PVM=y", "CONFIG_KVM_PVM=m")) for line in text.splitlines()
    )


def detect_accel(
    requested: str = "auto",
    *,
    dev_kvm: Path = Path("/dev/kvm"),
    sys_module: Path = Path("/sys/module"),
    boot_dir: Path = Path("/boot"),
) -> AccelChoice:
    """Pick "kvm" or "tcg" for ``requested`` ("auto", "kvm" or "tcg").

    Asking for "kvm" where it cannot work raises HostError rather than
    quietly running 10x slower.
    """
    if requested == "tcg":
        return AccelChoice("tcg", "TCG software emulation was asked for (accel = tcg)")
    problem = _kvm_opens(dev_kvm)
    if problem is None and kvm_is_pvm(sys_module, boot_dir):
        problem = _PVM_WHY
    if problem is None:
        return AccelChoice("kvm", f"{dev_kvm} is usable")
    if requested == "kvm":
        raise HostError(
            f"KVM was asked for but cannot be used: {problem}",
            hint="set accel = auto (or tcg) in banger's config, or fix KVM on this host",
        )
    if problem is _PVM_WHY:
        return AccelChoice("tcg", _PVM_WHY)
    return AccelChoice("tcg", f"{problem}; guests run under TCG software emulation (slower)")


def host_tsc_khz(cpuinfo: Path = Path("/proc/cpuinfo")) -> int | None:
    """The host CPU's clock in kHz from /proc/cpuinfo, or None when it says nothing.

    Passed to the guest as ``tsc_early_khz`` under TCG, where microvm's TSC
    calibration otherwise hangs now and then.
    """
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "cpu MHz":
            try:
                khz = round(float(value.strip()) * 1000)
            except ValueError:
                return None
            return khz if khz > 0 else None
    return None
