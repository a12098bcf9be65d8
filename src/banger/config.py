"""Settings, resolved once from defaults, the config file and the environment.

The result is a frozen ``Settings`` passed down explicitly; nothing else in
banger reads the environment for configuration.

Precedence, lowest first: built-in defaults, ``$XDG_CONFIG_HOME/banger/config.toml``
(or the file named by ``BANGER_CONFIG``), then ``BANGER_*`` environment variables.
Reading and checking the values is ``banger.configvalues``'s (a tab shares it
without paying for this module's imports); this one makes them ``Settings``.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from banger import configvalues, sockpath

# Every host resource banger creates carries this prefix (see configvalues).
NAME_PREFIX = configvalues.NAME_PREFIX
DNS_PORT = configvalues.DNS_PORT


@dataclass(frozen=True)
class Upstream:
    address: str
    port: int = DNS_PORT

    def __str__(self) -> str:
        if self.port == DNS_PORT:
            return self.address
        if ":" in self.address:
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"


def parse_upstream(text: str) -> Upstream:
    """``1.1.1.1``, ``127.0.0.1:5353``, ``2001:db8::1`` or ``[2001:db8::1]:5353``."""
    return Upstream(*configvalues.upstream_parts(text))


def _default_home() -> Path:
    return Path(configvalues.default_home(os.environ))


def _default_runtime_dir() -> Path:
    return Path(configvalues.default_runtime_dir(os.environ))


# Where a system-wide install (mode = "system", `banger system install`) keeps
# state, downloads and sockets: the daemon's directory is the owner's alone
# (0700), the helper's is root's (0755, its socket 0600 for the owner).
SYSTEM_HOME = Path(configvalues.SYSTEM_HOME)
SYSTEM_CACHE_DIR = Path(configvalues.SYSTEM_CACHE_DIR)
SYSTEM_RUNTIME_DIR = Path(configvalues.SYSTEM_RUNTIME_DIR)
SYSTEM_HELPER_SOCKET = Path(configvalues.SYSTEM_HELPER_SOCKET)


@dataclass(frozen=True)
class Settings:
    # "user": state under the user's XDG dirs, sockets under $XDG_RUNTIME_DIR.
    # "system": one daemon for the host, under /var/lib/banger and /run/banger.
    mode: str = "user"
    home: Path = field(default_factory=_default_home)
    runtime_dir: Path = field(default_factory=_default_runtime_dir)
    # Empty means "next to the daemon socket" (user mode, where the daemon
    # starts the helper itself when it runs as root).
    helper_socket: Path | None = None
    bridge: str = "bg0"
    subnet: str = "10.77.0.0/24"
    vmm: str = "auto"
    accel: str = "auto"
    # Empty means "the first Debian mirror in the host's apt sources".
    debian_mirror: str = ""
    # Registries reached over plain HTTP besides loopback ones (as Docker's option).
    insecure_registries: tuple[str, ...] = ()
    # The unprivileged port bangerd answers DNS on; banger's nftables rules
    # send the bridge address's port 53 there.
    dns_port: int = 10053
    # Where VMs allowed out (NAT) get names outside .vm resolved: IP or IP:PORT
    # entries. Empty means the nameservers of the host's /etc/resolv.conf.
    dns_upstreams: tuple[str, ...] = ()
    default_vcpus: int = 0
    default_memory_mib: int = 0
    # Firecracker's binary; empty means the one on PATH.
    firecracker: str = ""
    # Its jailer; empty means the one on PATH, "none" runs Firecracker unjailed.
    jailer: str = ""
    # "auto": every VM forwards what listens in its guest to the host's
    # 127.0.0.1 unless created with --forward-ports off.
    forward_ports: str = "off"
    # A create of an image with banger's agent saves a boot snapshot of it, and
    # later creates like it restore that instead of booting (`--cold` boots).
    warm_start: bool = True

    def firecracker_binaries(self) -> tuple[Path | None, Path | None]:
        """(firecracker, jailer) as absolute paths, None where not installed or not wanted."""
        import shutil

        def find(value: str, name: str) -> Path | None:
            found = shutil.which(value or name)
            return Path(found).absolute() if found else None

        firecracker = find(self.firecracker, "firecracker")
        jailer = None if self.jailer == "none" else find(self.jailer, "jailer")
        return firecracker, jailer

    # Derived locations; one definition so every layer agrees.
    @property
    def socket(self) -> Path:
        return self.runtime_dir / sockpath.SOCKET_NAME

    @property
    def helper_socket_path(self) -> Path:
        return self.helper_socket or self.runtime_dir / "helper.sock"

    @property
    def db_path(self) -> Path:
        return self.home / "banger.db"

    @property
    def kernels_dir(self) -> Path:
        return self.home / "kernels"

    @property
    def images_dir(self) -> Path:
        return self.home / "images"

    def boot_snapshots_dir(self, image: str) -> Path:
        """An image's boot snapshots (warm start): under its own state, gone with it."""
        return self.images_dir / image / "boot-snapshots"

    @property
    def vms_dir(self) -> Path:
        return self.home / "vms"

    @property
    def snapshots_dir(self) -> Path:
        return self.home / "snapshots"

    @property
    def cache_dir(self) -> Path:
        if self.mode == "system" and self.home == SYSTEM_HOME:
            return SYSTEM_CACHE_DIR
        return self.home / "cache"

    @property
    def ssh_dir(self) -> Path:
        return self.home / "ssh"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(self.subnet, strict=False)

    def validate(self) -> Settings:
        configvalues.check({f.name: getattr(self, f.name) for f in fields(self)})
        return self


def config_file() -> Path:
    return Path(configvalues.config_file(os.environ))


def load_settings(**overrides: Any) -> Settings:
    """Resolve settings: defaults < config file < environment < ``overrides``."""
    values = configvalues.read(os.environ)
    values.update({k: v for k, v in overrides.items() if v is not None})
    configvalues.settle_mode(values)
    for name, kind in configvalues.KINDS.items():
        if kind == "path" and values.get(name) is not None:
            values[name] = Path(values[name])
    settings = replace(Settings(), **{k: v for k, v in values.items() if v is not None})
    return settings.validate()
