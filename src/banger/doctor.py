"""``banger doctor``: every host prerequisite, each with a sentence of remedy.

Checks only look: they read /dev, /sys, /boot and the resolver
configuration, look programs up on PATH and ask them their version (or
systemd-resolved its domains). Nothing is created, loaded or changed. Every
host access goes through ``Host`` so tests can point it at a fake tree.

Statuses: ``ok``; ``info``, a fact worth knowing that needs no action (an
optional backend absent, a fallback in use); ``warn``, something the user
should act on; ``fail``, something that stops banger from working.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from banger import proc
from banger.config import Settings
from banger.errors import BangerError, HostError
from banger.net import plan as netplan
from banger.net.upstream import RESOLV_CONF, HostResolvers, nameservers

log = logging.getLogger("banger.doctor")

GIB = 1 << 30
WARN_FREE_BYTES = 5 * GIB
FAIL_FREE_BYTES = 1 * GIB
# sun_path is 108 bytes, including the terminating NUL.
MAX_SOCKET_PATH = 107
TCG_NOTE = "banger uses QEMU with software emulation (TCG), slower but real"

Status = Literal["ok", "info", "warn", "fail"]
# systemd-resolved's stub listeners, as resolv.conf names them.
RESOLVED_STUBS = ("127.0.0.53", "127.0.0.54")


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    remedy: str = ""


def _version(binary: str) -> str:
    try:
        result = proc.run([binary, "--version"], check=False, timeout=10)
    except HostError:
        return ""
    text = (result.stdout or result.stderr).decode(errors="replace").strip()
    return text.splitlines()[0] if text else ""


def _can_open(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CLOEXEC))
    except OSError:
        return False
    return True


def _free_bytes(path: Path) -> int:
    return shutil.disk_usage(path).free


def _resolved_domains(bridge: str) -> str:
    """What ``resolvectl domain BRIDGE`` prints (``Link 5 (bg0): ~vm``), or ""."""
    tool = proc.which("resolvectl")
    if tool is None:
        return ""
    try:
        result = proc.run([tool, "domain", bridge], check=False, timeout=10)
    except HostError:
        return ""
    return result.stdout.decode(errors="replace") if result.returncode == 0 else ""


@dataclass(frozen=True)
class Host:
    """Where the checks look; every field can be replaced in tests."""

    dev: Path = Path("/dev")
    sys_module: Path = Path("/sys/module")
    boot: Path = Path("/boot")
    release: str = field(default_factory=lambda: os.uname().release)
    which: Callable[[str], str | None] = proc.which
    version: Callable[[str], str] = _version
    can_open: Callable[[Path], bool] = _can_open
    free_bytes: Callable[[Path], int] = _free_bytes
    resolve_dir: Path = Path("/run/systemd/resolve")
    resolv_conf: Path = RESOLV_CONF
    nsswitch: Path = Path("/etc/nsswitch.conf")
    resolved_domains: Callable[[str], str] = _resolved_domains


def run_checks(settings: Settings, host: Host | None = None) -> list[Check]:
    """Run every check, in the order a person would fix them."""
    host = host or Host()
    checks = [
        check_kvm(host),
        check_qemu(host),
        check_tool(host, "qemu-img", "qemu-utils", "warn", "makes copy-on-write disks"),
        *check_firecracker(settings, host),
        check_vmm_choice(settings, host),
        check_tun(host),
        check_bridge(host),
        check_loop(host),
        check_device_mapper(host),
        check_tool(host, "nft", "nftables", "warn", "--nat will not work"),
        check_tool(host, "mkfs.ext4", "e2fsprogs", "fail", "banger cannot make disks"),
        check_tool(host, "debugfs", "e2fsprogs", "warn", "disks made as non-root keep your uid"),
        check_tool(host, "debootstrap", "debootstrap", "warn", "cannot build debian-bookworm"),
        check_busybox(settings),
        check_tool(host, "go", "golang-go", "fail", "banger cannot build its guest agent"),
        check_tool(host, "apt-get", "apt", "warn", "`banger kernel pull` cannot fetch kernels"),
        check_tool(host, "dpkg-deb", "dpkg", "warn", "`banger kernel pull` cannot unpack"),
        check_tool(host, "ssh", "openssh-client", "fail", "`banger vm ssh` cannot connect"),
        check_tool(host, "ssh-keygen", "openssh-client", "fail", "banger cannot make keys"),
        check_disk(settings, host),
        check_sockets(settings),
        check_dns_forwarding(settings, host),
        check_vm_names(settings, host),
    ]
    for check in checks:
        log.debug("doctor %s: %s (%s)", check.name, check.status, check.detail)
    return checks


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


def check_tool(host: Host, binary: str, package: str, severity: Status, without: str) -> Check:
    """A program banger runs: ``severity`` when missing, saying what breaks."""
    found = host.which(binary)
    if found is None:
        return Check(
            binary,
            severity,
            f"{binary} not found: {without}",
            f"Install the Debian package {package}.",
        )
    return Check(binary, "ok", found)


def check_tun(host: Host) -> Check:
    tun = host.dev / "net" / "tun"
    if tun.exists():
        return Check("tun", "ok", f"{tun} present")
    return Check(
        "tun",
        "fail",
        f"{tun} is missing: VMs get no network",
        "Load the tun module (`modprobe tun`), or allow /dev/net/tun in this container.",
    )


def check_bridge(host: Host) -> Check:
    if host.which("ip") is None:
        return Check(
            "bridge",
            "fail",
            "ip not found: banger cannot make its bridge or taps",
            "Install the Debian package iproute2.",
        )
    if (host.sys_module / "bridge").exists():
        return Check("bridge", "ok", "bridge support loaded")
    # Not loaded is normal: the kernel loads it when the helper creates the bridge.
    return Check("bridge", "ok", "bridge module not loaded yet; it loads on first use")


def check_loop(host: Host) -> Check:
    control = host.dev / "loop-control"
    if control.exists():
        return Check("loop", "ok", f"{control} present")
    return Check(
        "loop",
        "info",
        f"{control} is missing: no loop devices",
        "Load the loop module (`modprobe loop`); banger's disks still work without it.",
    )


def check_device_mapper(host: Host) -> Check:
    control = host.dev / "mapper" / "control"
    if control.exists() or (host.sys_module / "dm_mod").exists():
        return Check("device-mapper", "ok", "device-mapper available")
    return Check(
        "device-mapper",
        "info",
        "device-mapper is absent: an in-guest overlay is used instead",
        "Load dm_mod (`modprobe dm_mod`, package dmsetup) to use device-mapper snapshots.",
    )


def is_static_elf(path: Path) -> bool:
    """True for an ELF executable without a program interpreter (statically linked)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(64)
            if len(header) < 64 or header[:4] != b"\x7fELF" or header[4] != 2:
                return False  # not a 64-bit ELF
            order = "<" if header[5] == 1 else ">"
            (phoff,) = struct.unpack_from(order + "Q", header, 0x20)
            phentsize, phnum = struct.unpack_from(order + "HH", header, 0x36)
            handle.seek(phoff)
            table = handle.read(phentsize * phnum)
    except OSError:
        return False
    for i in range(phnum):
        (kind,) = struct.unpack_from(order + "I", table, i * phentsize)
        if kind == 3:  # PT_INTERP
            return False
    return True


def check_busybox(settings: Settings) -> Check:
    """The static busybox in banger's initramfs: each pulled kernel carries its own.

    ``kernel pull`` and ``kernel import`` fetch Debian's busybox-static with
    apt-get and keep it next to the kernel; the host's busybox is never used.
    """
    found = sorted(settings.kernels_dir.glob("*/busybox"))
    broken = [path for path in found if not is_static_elf(path)]
    if broken:
        return Check(
            "busybox",
            "warn",
            f"{broken[0]} is not a static binary: that kernel's initramfs cannot boot",
            f"Delete the kernel {broken[0].parent.name} and pull it again (`banger kernel pull`).",
        )
    if found:
        return Check("busybox", "ok", f"static busybox of {len(found)} pulled kernel(s)")
    if any(settings.kernels_dir.glob("*/vmlinuz")):
        return Check("busybox", "ok", "the kernels here bring their own initramfs")
    return Check(
        "busybox",
        "info",
        "no kernel pulled yet: `banger kernel pull` fetches busybox-static with it",
        "Nothing to install; `banger image pull debian-bookworm` pulls its kernel too.",
    )


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def check_disk(settings: Settings, host: Host) -> Check:
    where = _existing_ancestor(settings.home)
    try:
        free = host.free_bytes(where)
    except OSError as exc:
        return Check(
            "disk",
            "fail",
            f"cannot measure free space at {where}: {exc}",
            "Set home (BANGER_HOME) to a writable directory.",
        )
    detail = f"{free / GIB:.1f} GiB free at {where} (banger home {settings.home})"
    remedy = "Free some space there, or set home (BANGER_HOME) to a larger filesystem."
    if free < FAIL_FREE_BYTES:
        return Check("disk", "fail", detail, remedy)
    if free < WARN_FREE_BYTES:
        return Check("disk", "warn", detail, remedy)
    return Check("disk", "ok", detail)


def check_sockets(settings: Settings) -> Check:
    runtime = settings.runtime_dir
    remedy = "Set runtime_dir (BANGER_RUNTIME_DIR) to a short directory you can write."
    longest = max(len(os.fsencode(settings.socket)), len(os.fsencode(settings.helper_socket_path)))
    if longest > MAX_SOCKET_PATH:
        return Check(
            "sockets",
            "fail",
            f"socket paths under {runtime} are too long for unix sockets",
            remedy,
        )
    where = _existing_ancestor(runtime)
    if not where.is_dir():
        return Check("sockets", "fail", f"{where} is not a directory", remedy)
    if not os.access(where, os.W_OK | os.X_OK):
        return Check("sockets", "fail", f"{where} is not writable", remedy)
    if where == runtime:
        from banger import rundir
        from banger.errors import UserError

        try:
            rundir.check_private_dir(runtime, rundir.trusted_owners(settings))
        except UserError as exc:
            return Check("sockets", "fail", exc.message, exc.hint or remedy)
        return Check("sockets", "ok", f"{runtime} is writable and private (0700)")
    return Check("sockets", "ok", f"{runtime} will be created under {where}")


def check_dns_forwarding(settings: Settings, host: Host) -> Check:
    """Where names outside .vm asked by ``--nat`` VMs are resolved."""
    source = "dns_upstreams" if settings.dns_upstreams else str(host.resolv_conf)
    upstreams = HostResolvers(settings.dns_upstreams, host.resolv_conf).current()
    if not upstreams:
        return Check(
            "dns-forward",
            "warn",
            f"no nameserver in {source}: --nat VMs cannot resolve names outside .vm",
            "Add a nameserver line to /etc/resolv.conf, or set dns_upstreams"
            " (BANGER_DNS_UPSTREAMS) to the resolvers VMs should use.",
        )
    listed = ", ".join(map(str, upstreams))
    return Check("dns-forward", "ok", f"--nat VMs resolve other names through {listed} ({source})")


def _host_uses_resolved(host: Host) -> bool:
    try:
        conf = host.resolv_conf.read_text(errors="replace")
    except OSError:
        conf = ""
    if any(u.address in RESOLVED_STUBS for u in nameservers(conf)):
        return True
    try:
        lines = host.nsswitch.read_text(errors="replace").splitlines()
    except OSError:
        return False
    return any(line.split()[:1] == ["hosts:"] and "resolve" in line.split()[1:] for line in lines)


def check_vm_names(settings: Settings, host: Host) -> Check:
    """Whether programs on this host resolve ``NAME.vm``; information where they do not."""
    bridge, address = settings.bridge, netplan.gateway(settings.network)
    without = "use the address `banger vm show NAME` prints; `banger vm ssh NAME` needs no name"
    if not host.resolve_dir.is_dir() or host.which("resolvectl") is None:
        return Check(
            "vm-names",
            "info",
            f"NAME.vm does not resolve on this host (no systemd-resolved): {without}",
            "To resolve NAME.vm here, run systemd-resolved (Debian package systemd-resolved),"
            f" or have a local forwarder send the vm domain to {address}"
            f" (dnsmasq: server=/vm/{address}).",
        )
    if not _host_uses_resolved(host):
        return Check(
            "vm-names",
            "info",
            "systemd-resolved runs but this host's lookups do not go through it"
            f" ({host.resolv_conf} does not name its stub): {without}",
            "Link /etc/resolv.conf to /run/systemd/resolve/stub-resolv.conf, or add"
            " `resolve` to the hosts line of /etc/nsswitch.conf.",
        )
    if "~vm" in host.resolved_domains(bridge).split():
        return Check("vm-names", "ok", f"NAME.vm resolves through systemd-resolved ({bridge})")
    return Check(
        "vm-names",
        "ok",
        f"NAME.vm resolves through systemd-resolved while VMs run (banger links {bridge})",
    )
