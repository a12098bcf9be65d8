"""The small interface every VMM driver implements.

Nothing outside ``banger.vmm`` knows which VMM runs a VM: the daemon builds a
``VmmConfig`` and hands it to whichever driver ``select_vmm`` picked.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class DiskSpec:
    path: Path
    # The disk's name: its virtio serial under QEMU, its drive_id under
    # Firecracker (whose serial is not settable; see guest/boot.py).
    serial: str
    read_only: bool = False


@dataclass(frozen=True)
class NetSpec:
    tap: str
    mac: str
    # An open descriptor of the tap for the VMM to inherit, where the daemon's
    # user cannot open /dev/net/tun (banger-helper opened it); else None.
    tap_fd: int | None = None


# The host end of the guest agent's channel, in the VM's run directory.
AGENT_SOCKET = "agent.sock"


@dataclass(frozen=True)
class AgentEndpoint:
    """Where the host reaches the guest agent: a unix socket, and for vsock the port.

    QEMU listens on ``path`` itself (the virtio-serial port's chardev); under
    Firecracker ``path`` is its vsock socket and the host must first write
    ``CONNECT <vsock_port>``.
    """

    path: Path
    vsock_port: int | None = None


@dataclass(frozen=True)
class VmmConfig:
    name: str
    vcpus: int
    memory_mib: int
    kernel: Path
    initrd: Path
    cmdline: str
    disks: tuple[DiskSpec, ...]
    net: NetSpec | None
    # Per-VM directory for the VMM's pidfile, control socket and console log.
    run_dir: Path
    accel: str = "tcg"  # "kvm" or "tcg"
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "vmm.pid"

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "vmm.sock"

    @property
    def agent_socket(self) -> Path:
        return self.run_dir / AGENT_SOCKET


class Vmm(Protocol):
    """A VMM driver. Implementations must make ``kill`` idempotent."""

    name: str
    # A driver whose ``launch`` honours ``NetSpec.tap_fd`` (an inherited tap,
    # where the daemon's user cannot open /dev/net/tun) says so with a class
    # attribute ``takes_tap_fd = True``; jailed VMMs open their own tap.

    def check_host(self) -> None:
        """Raise HostError, with a remedy, when this VMM cannot run on this host."""
        ...

    def argv(self, config: VmmConfig) -> list[str]:
        """The command line that would launch this VM; pure, touches nothing."""
        ...

    def launch(self, config: VmmConfig) -> int:
        """Start the VM detached from the caller (it outlives the daemon); return its pid."""
        ...

    def pid(self, run_dir: Path) -> int | None:
        """The pid of the VMM running from ``run_dir``, or None when none runs."""
        ...

    def signal(self, run_dir: Path, sig: signal.Signals) -> bool:
        """Send ``sig`` to the VMM running from ``run_dir``; False when none runs."""
        ...

    def running_under(self, root: Path) -> dict[Path, int]:
        """Run directory -> pid of every VMM of this kind running from under ``root``."""
        ...

    def kill(self, run_dir: Path, *, timeout: float = 10.0) -> None:
        """Stop the VMM at once and wait for it to go; safe when already gone."""
        ...

    def shutdown(self, run_dir: Path) -> bool:
        """Ask the guest to shut down through the VMM; False when this VMM cannot."""
        ...

    def metrics(self, run_dir: Path) -> dict[str, Any] | None:
        """The VMM's own counters for the VM, where it keeps any."""
        ...

    def agent_endpoint(self, run_dir: Path) -> AgentEndpoint:
        """Where the host connects to the guest agent of the VM running from ``run_dir``."""
        ...

    def version(self) -> str:
        """The VMM's own version line; a snapshot restores only under the same."""
        ...

    def pause(self, run_dir: Path) -> None:
        """Stop the guest's vCPUs (its memory and devices stay); idempotent."""
        ...

    def resume(self, run_dir: Path) -> None:
        """Let a paused guest run again; idempotent."""
        ...

    def paused(self, run_dir: Path) -> bool:
        """True when the VMM runs but its guest is paused."""
        ...

    def save(self, run_dir: Path, into: Path) -> None:
        """Write the paused guest's memory and device state into directory ``into``.

        The guest stays paused; the caller copies the disks, then resumes it.
        """
        ...

    def restore(self, config: VmmConfig, snapshot: Path) -> int:
        """Launch ``config`` from the state saved in ``snapshot``, running; return its pid."""
        ...
