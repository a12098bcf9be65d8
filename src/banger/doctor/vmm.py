"""Checks of what runs guests: KVM, QEMU, Firecracker and its jailer; what `auto` picks."""

from __future__ import annotations

from banger.config import Settings
from banger.doctor.host import Check, Host
from banger.errors import BangerError

TCG_NOTE = "banger uses QEMU with software emulation (TCG), slower but real"


def kvm_is_pvm(host: Host) -> bool:
    """True when /dev/kvm is PVM, para-virtualized nested KVM: stock guest kernels die there."""
    if (host.sys_module / "kvm_pvm").exists():
        return True
    config = host.boot / f"config-{host.release}"
    try:
        text = config.read_text(errors="replace")
    except OSError:
        return False
    return any(
        line.strip() in ("CONFIG_KVM_PVM=y", "CONFIG_KVM_PVM=m") for line in text.splitlines()
    )


def check_kvm(host: Host) -> Check:
    kvm = host.dev / "kvm"
    if not kvm.exists():
        return Check(
            "kvm",
            "warn",
            f"{kvm} is missing; {TCG_NOTE}",
            "Enable virtualization in the firmware and load kvm_intel or kvm_amd (modprobe).",
        )
    if not host.can_open(kvm):
        return Check(
            "kvm",
            "warn",
            f"{kvm} exists but cannot be opened; {TCG_NOTE}",
            "Add your user to the kvm group (`sudo adduser $USER kvm`) and log in again.",
        )
    if kvm_is_pvm(host):
        return Check(
            "kvm",
            "warn",
            f"{kvm} is PVM (para-virtualized nested KVM): stock guest kernels fail under it;"
            f" {TCG_NOTE}",
            "Nothing to fix here; on a host with hardware KVM guests run at full speed.",
        )
    return Check("kvm", "ok", f"{kvm} is usable (hardware virtualization)")


def check_qemu(host: Host) -> Check:
    binary = host.which("qemu-system-x86_64")
    if binary is None:
        has_firecracker = host.which("firecracker") is not None
        return Check(
            "qemu",
            "warn" if has_firecracker else "fail",
            "qemu-system-x86_64 not found"
            + ("; Firecracker is used" if has_firecracker else ": no VMM to run guests with"),
            "Install the Debian package qemu-system-x86.",
        )
    return Check("qemu", "ok", host.version(binary) or binary)


def check_firecracker(settings: Settings, host: Host) -> list[Check]:
    """Firecracker is optional: its absence is information, unless it was asked for."""
    wanted = settings.vmm == "firecracker"
    checks = []
    for name in ("firecracker", "jailer"):
        binary = host.which(name)
        if binary is not None:
            checks.append(Check(name, "ok", host.version(binary) or binary))
        elif wanted:
            checks.append(
                Check(
                    name,
                    "warn" if name == "jailer" else "fail",
                    f'{name} not found, and vmm = "firecracker" is set',
                    "Install Firecracker's release binaries (firecracker, jailer) on PATH,"
                    ' or set vmm = "auto" to use QEMU.',
                )
            )
        else:
            checks.append(
                Check(
                    name,
                    "info",
                    f"{name} not found: QEMU is used instead (Firecracker is optional)",
                    "Install Firecracker's release binaries (firecracker, jailer) on PATH"
                    " if you want Firecracker VMs.",
                )
            )
    return checks


def check_vmm_choice(settings: Settings, host: Host) -> Check:
    """Which VMM `vmm = auto` (and so `vm create` without --vmm) picks here, and why."""
    from banger.vmm import choose
    from banger.vmm.accel import detect_accel

    try:
        accel = detect_accel(settings.accel, dev_kvm=host.dev / "kvm",
                             sys_module=host.sys_module, boot_dir=host.boot)  # fmt: skip
    except BangerError as exc:
        return Check("vmm", "fail", exc.message, exc.hint or "")
    firecracker = host.which(settings.firecracker or "firecracker") is not None
    chosen = choose(settings.vmm, firecracker, accel)
    if chosen.name == "firecracker":
        return Check("vmm", "ok", f"auto picks firecracker: {chosen.reason}")
    # QEMU is a supported VMM, not a fault: information, like Firecracker's absence
    # (a KVM that cannot run guests has its own warning above).
    return Check(
        "vmm",
        "info",
        f"auto picks qemu: {chosen.reason}",
        "Install Firecracker and its jailer on a host whose KVM runs guests for the primary VMM.",
    )
