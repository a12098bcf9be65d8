"""Settings, resolved once from defaults, the config file and the environment.

The result is a frozen ``Settings`` passed down explicitly; nothing else in
banger reads the environment for configuration.

Precedence, lowest first: built-in defaults, ``$XDG_CONFIG_HOME/banger/config.toml``
(or the file named by ``BANGER_CONFIG``), then ``BANGER_*`` environment variables.
"""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from banger import sockpath
from banger.errors import UserError

# Every host resource banger creates carries this prefix; the helper refuses
# names without it (helper/validate.py holds the root side's own copy, since
# it imports nothing of banger; a unit test keeps the two equal).
NAME_PREFIX = "bg"

# Where bangerd forwards the DNS queries of VMs allowed out (see net/upstream.py).
DNS_PORT = 53


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
    text = text.strip()
    host, port = text, str(DNS_PORT)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise _bad(text)
        port = rest[1:] or port
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError as exc:
        raise _bad(text) from exc
    if not 1 <= number <= 65535:
        raise _bad(text)
    return Upstream(str(address), number)


def _bad(text: str) -> UserError:
    return UserError(
        f"DNS upstream {text!r} is not an IP address with an optional port",
        hint="set dns_upstreams (BANGER_DNS_UPSTREAMS) to e.g. 192.0.2.53,192.0.2.54:5353,"
        " or leave it empty to use /etc/resolv.conf",
    )


_ENV = {
    "mode": "BANGER_MODE",
    "home": "BANGER_HOME",
    "runtime_dir": "BANGER_RUNTIME_DIR",
    "helper_socket": "BANGER_HELPER_SOCKET",
    "bridge": "BANGER_BRIDGE",
    "subnet": "BANGER_SUBNET",
    "accel": "BANGER_ACCEL",
    "vmm": "BANGER_VMM",
    "debian_mirror": "BANGER_DEBIAN_MIRROR",
    "insecure_registries": "BANGER_INSECURE_REGISTRIES",
    "dns_port": "BANGER_DNS_PORT",
    "dns_upstreams": "BANGER_DNS_UPSTREAMS",
    "firecracker": "BANGER_FIRECRACKER",
    "jailer": "BANGER_JAILER",
    "forward_ports": "BANGER_FORWARD_PORTS",
    "warm_start": "BANGER_WARM_START",
}


def _default_home() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "banger"


def _default_runtime_dir() -> Path:
    return Path(sockpath.default_runtime_dir(os.environ))


# Where a system-wide install (mode = "system", `banger system install`) keeps
# state, downloads and sockets: the daemon's directory is the owner's alone
# (0700), the helper's is root's (0755, its socket 0600 for the owner).
SYSTEM_HOME = Path("/var/lib/banger")
SYSTEM_CACHE_DIR = Path("/var/cache/banger")
SYSTEM_RUNTIME_DIR = Path("/run/banger/bangerd")
SYSTEM_HELPER_SOCKET = Path("/run/banger/helper/helper.sock")
# Written by `banger system install`; its presence makes system mode the default.
INSTALL_METADATA = Path(sockpath.INSTALL_METADATA)


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
        try:
            net = ipaddress.IPv4Network(self.subnet, strict=True)
        except ValueError as exc:
            raise UserError(
                f"subnet {self.subnet!r} is not an IPv4 network: {exc}",
                hint="set subnet to a private range such as 10.77.0.0/24",
            ) from exc
        if not net.is_private or net.prefixlen > 29:
            raise UserError(
                f"subnet {self.subnet} must be a private range of at least 8 addresses",
                hint="use something like 10.77.0.0/24",
            )
        if not re.fullmatch(rf"{NAME_PREFIX}[a-z0-9-]{{1,11}}", self.bridge):
            raise UserError(
                f"bridge name {self.bridge!r} must start with {NAME_PREFIX!r} and be at most"
                " 13 lowercase letters, digits or dashes",
                hint="the default is bg0",
            )
        if not 1024 <= self.dns_port <= 65535:
            raise UserError(
                f"dns_port {self.dns_port} must be between 1024 and 65535",
                hint="bangerd needs no privilege for it; the default is 10053",
            )
        for upstream in self.dns_upstreams:
            parse_upstream(upstream)
        if self.mode not in ("user", "system"):
            raise UserError(f"mode {self.mode!r} is not one of user, system")
        if self.accel not in ("auto", "kvm", "tcg"):
            raise UserError(f"accel {self.accel!r} is not one of auto, kvm, tcg")
        if self.vmm not in ("auto", "qemu", "firecracker"):
            raise UserError(f"vmm {self.vmm!r} is not one of auto, qemu, firecracker")
        if self.forward_ports not in ("off", "auto"):
            raise UserError(f"forward_ports {self.forward_ports!r} is not one of off, auto")
        return self


def config_file() -> Path:
    return Path(sockpath.config_file(os.environ))


def _coerce(name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    if name in ("insecure_registries", "dns_upstreams"):
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            what = "registry hosts" if name == "insecure_registries" else "DNS servers"
            raise UserError(f"setting {name} must be a list of {what}, not {value!r}")
        return tuple(str(item).strip() for item in items if str(item).strip())
    if name in ("home", "runtime_dir", "helper_socket"):
        return Path(str(value)).expanduser() if value else None
    if kind == "bool":
        return _boolean(name, value)
    if kind == "int":
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise UserError(f"setting {name} must be a whole number, not {value!r}") from exc
    return str(value)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise UserError(
        f"setting {name} must be true or false, not {value!r}",
        hint=f"use one of {', '.join(_TRUE + _FALSE)}",
    )


def load_settings(**overrides: Any) -> Settings:
    """Resolve settings: defaults < config file < environment < ``overrides``."""
    values: dict[str, Any] = {}
    path = config_file()
    if path.is_file():
        import tomllib  # only where a config file exists: every CLI run resolves settings

        try:
            data = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise UserError(
                f"config file {path} is not valid TOML: {exc}", hint="fix or remove the file"
            ) from exc
        known = {f.name for f in fields(Settings)}
        for key, value in data.items():
            if key not in known:
                raise UserError(
                    f"config file {path} has an unknown setting {key!r}",
                    hint="known settings: " + ", ".join(sorted(known)),
                )
            values[key] = _coerce(key, value)
    for name, env in _ENV.items():
        if os.environ.get(env):
            values[name] = _coerce(name, os.environ[env])
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "mode" not in values and INSTALL_METADATA.is_file():
        values["mode"] = "system"
    if values.get("mode") == "system":
        values.setdefault("home", SYSTEM_HOME)
        values.setdefault("runtime_dir", SYSTEM_RUNTIME_DIR)
        values.setdefault("helper_socket", SYSTEM_HELPER_SOCKET)
    settings = replace(Settings(), **{k: v for k, v in values.items() if v is not None})
    return settings.validate()
