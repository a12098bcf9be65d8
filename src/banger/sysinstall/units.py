"""The system layout and the two systemd units of an installed banger, as pure values.

``banger system install`` runs ``bangerd`` as the owner, unprivileged, and
``banger-helper`` as root, each confined as far as its job allows::

    /etc/systemd/system/banger-helper.service   root, CAP_NET_ADMIN (+ the jailer's)
    /etc/systemd/system/bangerd.service         the owner, no capabilities at all
    /etc/banger/install.json                    who owns it, which banger, which paths
    /var/lib/banger                             state (owner, 0700)
    /var/cache/banger                           downloads (owner, 0700)
    /run/banger/bangerd/bangerd.sock            the API: directory owner-only (0700)
    /run/banger/helper/helper.sock              root binds it (directory root, 0755);
                                                only the owner may connect (socket 0600)
    /run/banger/helper/state                    what the helper made, for whom (root, 0700)

Rendering is separate from writing (``install.py``), so tests compare text and
run ``systemd-analyze verify`` on it without touching the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from banger.config import (
    SYSTEM_CACHE_DIR,
    SYSTEM_HELPER_SOCKET,
    SYSTEM_HOME,
    SYSTEM_RUNTIME_DIR,
)

HELPER_UNIT = "banger-helper.service"
DAEMON_UNIT = "bangerd.service"
UNIT_DIR = Path("/etc/systemd/system")
ETC_DIR = Path("/etc/banger")
METADATA = ETC_DIR / "install.json"
HELPER_STATE = SYSTEM_HELPER_SOCKET.parent / "state"

# The helper changes links, addresses, nftables and net.ipv4.ip_forward: all
# CAP_NET_ADMIN. CAP_CHOWN hands its socket to the owner.
HELPER_CAPS: tuple[str, ...] = ("CAP_NET_ADMIN", "CAP_CHOWN")
# Launching Firecracker under its jailer needs more (chroot, mount namespace,
# dropping to the VM's uid, device nodes, rlimits, killing the VMM it made);
# the jailer verbs add them here, and only where Firecracker is installed.
JAILER_CAPS: tuple[str, ...] = (
    "CAP_SYS_ADMIN",
    "CAP_SYS_CHROOT",
    "CAP_SETUID",
    "CAP_SETGID",
    "CAP_MKNOD",
    "CAP_DAC_OVERRIDE",
    "CAP_SYS_RESOURCE",
    "CAP_KILL",
)

# Settings common to both services: nothing either needs, both go without.
_COMMON = [
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "PrivateTmp=yes",
    "ProtectKernelModules=yes",
    "ProtectKernelLogs=yes",
    "ProtectClock=yes",
    "ProtectHostname=yes",
    "RestrictRealtime=yes",
    "RestrictSUIDSGID=yes",
    "LockPersonality=yes",
    "SystemCallArchitectures=native",
    "UMask=0077",
    "Restart=on-failure",
    "RestartSec=1",
]


@dataclass(frozen=True)
class Layout:
    """Everything an install writes, under ``root`` (``/`` on a real host; a temp dir in tests)."""

    owner: str
    uid: int
    gid: int
    helper_exe: Path
    daemon_exe: Path
    root: Path = Path("/")
    helper_caps: tuple[str, ...] = HELPER_CAPS
    extra_allowed_dirs: tuple[Path, ...] = field(default_factory=tuple)
    # Where Firecracker and its jailer are installed, the helper jails VMs.
    firecracker: Path | None = None
    jailer: Path | None = None

    @property
    def jails(self) -> bool:
        return self.firecracker is not None and self.jailer is not None

    def at(self, path: Path) -> Path:
        """``path`` of the installed system, inside ``root``."""
        return self.root / path.relative_to("/")

    @property
    def unit_paths(self) -> dict[str, Path]:
        return {name: self.at(UNIT_DIR / name) for name in (HELPER_UNIT, DAEMON_UNIT)}


def _section(name: str, lines: Sequence[str]) -> str:
    return f"[{name}]\n" + "".join(f"{line}\n" for line in lines)


def helper_unit(layout: Layout) -> str:
    allowed = (SYSTEM_HOME, SYSTEM_CACHE_DIR, *layout.extra_allowed_dirs)
    argv = [
        str(layout.helper_exe),
        "--socket",
        str(SYSTEM_HELPER_SOCKET),
        "--owner-uid",
        str(layout.uid),
        *[arg for d in allowed for arg in ("--allowed-dir", str(d))],
        "--state-dir",
        str(HELPER_STATE),
    ]
    caps = layout.helper_caps
    if layout.jails:
        argv += ["--firecracker", str(layout.firecracker), "--jailer", str(layout.jailer)]
        caps = (*caps, *JAILER_CAPS)
    unit = _section(
        "Unit",
        [
            f"Description=banger's root helper: bridge, taps and NAT for {layout.owner}",
            f"Before={DAEMON_UNIT}",
        ],
    )
    service = _section(
        "Service",
        [
            "Type=simple",
            "ExecStart=" + " ".join(argv),
            # /run/banger/helper: only root creates files there; kept across a
            # restart because the record of what the helper made lives in it.
            "RuntimeDirectory=banger/helper",
            "RuntimeDirectoryMode=0755",
            "RuntimeDirectoryPreserve=yes",
            *_COMMON,
            "ProtectHome=yes",
            # It writes /proc/sys/net/ipv4/ip_forward for NAT, so kernel
            # tunables stay writable.
            "ProtectKernelTunables=no",
            "MemoryDenyWriteExecute=yes",
            *_jail_settings(layout),
            # netlink for ip and nft, unix for its socket and resolvectl;
            # iproute2 still uses an inet socket for a few ioctls.
            "RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6",
            "DevicePolicy=closed",
            "DeviceAllow=/dev/net/tun rw",
            "CapabilityBoundingSet=" + " ".join(caps),
        ],
    )
    return unit + "\n" + service + "\n" + _section("Install", ["WantedBy=multi-user.target"])


def _jail_settings(layout: Layout) -> list[str]:
    if not layout.jails:
        return [
            "ProtectControlGroups=yes",
            "RestrictNamespaces=yes",
            "SystemCallFilter=@system-service",
        ]
    # The jailer makes a chroot under the state directory (hard links, owned
    # by the VM's uid), a cgroup for the VM and new mount and PID namespaces.
    return [
        f"ReadWritePaths={SYSTEM_HOME}",
        "ProtectControlGroups=no",
        "RestrictNamespaces=no",
        "SystemCallFilter=@system-service @mount",
    ]


def daemon_unit(layout: Layout) -> str:
    unit = _section(
        "Unit",
        [
            f"Description=banger daemon for {layout.owner}: VMs, images, kernels",
            f"Requires={HELPER_UNIT}",
            f"After={HELPER_UNIT} network.target",
        ],
    )
    service = _section(
        "Service",
        [
            "Type=simple",
            f"User={layout.owner}",
            f"Group={layout.gid}",
            "Environment=BANGER_MODE=system",
            f"ExecStart={layout.daemon_exe}",
            f"RuntimeDirectory={SYSTEM_RUNTIME_DIR.relative_to('/run')}",
            "RuntimeDirectoryMode=0700",
            f"StateDirectory={SYSTEM_HOME.relative_to('/var/lib')}",
            "StateDirectoryMode=0700",
            f"CacheDirectory={SYSTEM_CACHE_DIR.relative_to('/var/cache')}",
            "CacheDirectoryMode=0700",
            # Stopping or restarting the daemon leaves VMs running; the next
            # daemon adopts them (as in user mode).
            "KillMode=process",
            *_COMMON,
            # Read-only: `banger image register` and workspaces read the
            # owner's files; nothing of the daemon's lives in a home.
            "ProtectHome=read-only",
            "ProtectKernelTunables=yes",
            "ProtectControlGroups=yes",
            "RestrictNamespaces=yes",
            # QEMU's software emulation (TCG) writes the code it translates.
            "MemoryDenyWriteExecute=no",
            "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK AF_VSOCK",
            "DevicePolicy=closed",
            "DeviceAllow=/dev/kvm rw",
            "DeviceAllow=/dev/net/tun rw",
            "DeviceAllow=/dev/vhost-vsock rw",
            "DeviceAllow=/dev/vhost-net rw",
            # No capability at all: every privileged step is a helper verb.
            "CapabilityBoundingSet=",
            "AmbientCapabilities=",
        ],
    )
    return unit + "\n" + service + "\n" + _section("Install", ["WantedBy=multi-user.target"])


def render(layout: Layout) -> dict[Path, str]:
    """Each unit file's path (under ``layout.root``) and text."""
    paths = layout.unit_paths
    return {paths[HELPER_UNIT]: helper_unit(layout), paths[DAEMON_UNIT]: daemon_unit(layout)}
