"""Settings as plain values: read from the config file and the environment, coerced, checked.

``banger.config`` turns these values into its frozen ``Settings`` (with pathlib
and dataclasses, which a tab cannot afford to import); ``banger.sockpath``
finds bangerd's socket from the very same values. One reading, one set of
checks, so the CLI and a tab never disagree on where bangerd is or on
whether the settings are valid at all. Paths are str here; ``banger.config``
makes them ``Path``. Imports past ``os`` happen only where a value needs them
(tomllib for a config file, ipaddress for a subnet).
"""

from __future__ import annotations

import os

from banger.errors import UserError

# Not typing.TYPE_CHECKING: a tab reads its settings here, and pays for every import.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

# Every host resource banger creates carries this prefix; the helper refuses
# names without it (helper/validate.py holds the root side's own copy, since
# it imports nothing of banger; a unit test keeps the two equal).
NAME_PREFIX = "bg"

# Where bangerd forwards the DNS queries of VMs allowed out (see net/upstream.py).
DNS_PORT = 53

# Written by `banger system install`; its presence makes system mode the default.
INSTALL_METADATA = "/etc/banger/install.json"
# Where a system-wide install keeps state, downloads and sockets (see banger.config).
SYSTEM_HOME = "/var/lib/banger"
SYSTEM_CACHE_DIR = "/var/cache/banger"
SYSTEM_RUNTIME_DIR = "/run/banger/bangerd"
SYSTEM_HELPER_SOCKET = "/run/banger/helper/helper.sock"

# How each setting is read from text or TOML: one entry per field of
# banger.config.Settings (a unit test holds the two equal).
KINDS = {
    "mode": "str",
    "home": "path",
    "runtime_dir": "path",
    "helper_socket": "path",
    "bridge": "str",
    "subnet": "str",
    "vmm": "str",
    "accel": "str",
    "debian_mirror": "str",
    "insecure_registries": "list",
    "dns_port": "int",
    "dns_upstreams": "list",
    "default_vcpus": "int",
    "default_memory_mib": "int",
    "firecracker": "str",
    "jailer": "str",
    "forward_ports": "str",
    "warm_start": "bool",
}

ENV = {
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


def config_file(environ: Mapping[str, str]) -> str:
    explicit = environ.get("BANGER_CONFIG")
    if explicit:
        return explicit
    base = environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "banger", "config.toml")


def default_home(environ: Mapping[str, str]) -> str:
    base = environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "banger")


def default_runtime_dir(environ: Mapping[str, str]) -> str:
    xdg = environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        return os.path.join(xdg, "banger")
    return f"/tmp/banger-{os.getuid()}"


def read(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings the config file and then the environment set, coerced to their kinds.

    A path set empty in the file is there as None: it stands for the default,
    and keeps system mode from filling that path in (``settle_mode``).
    """
    values = _from_file(config_file(environ))
    for name, env in ENV.items():
        if environ.get(env):
            values[name] = coerce(name, environ[env])
    return values


def _from_file(path: str) -> dict[str, Any]:
    if not os.path.isfile(path):
        return {}
    import tomllib  # only where a config file exists: every CLI run reads settings

    try:
        with open(path, encoding="utf-8") as reader:
            data = tomllib.loads(reader.read())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UserError(
            f"config file {path} is not valid TOML: {exc}", hint="fix or remove the file"
        ) from exc
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in KINDS:
            raise UserError(
                f"config file {path} has an unknown setting {key!r}",
                hint="known settings: " + ", ".join(sorted(KINDS)),
            )
        values[key] = coerce(key, value)
    return values


def settle_mode(values: dict[str, Any]) -> None:
    """System mode where an install says so, and its places for what nothing else set."""
    if "mode" not in values and os.path.isfile(INSTALL_METADATA):
        values["mode"] = "system"
    if values.get("mode") == "system":
        values.setdefault("home", SYSTEM_HOME)
        values.setdefault("runtime_dir", SYSTEM_RUNTIME_DIR)
        values.setdefault("helper_socket", SYSTEM_HELPER_SOCKET)


def coerce(name: str, value: Any) -> Any:
    kind = KINDS[name]
    if kind == "list":
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            what = "registry hosts" if name == "insecure_registries" else "DNS servers"
            raise UserError(f"setting {name} must be a list of {what}, not {value!r}")
        return tuple(str(item).strip() for item in items if str(item).strip())
    if kind == "path":
        return os.path.expanduser(str(value)) if value else None
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


_CHOICES = {
    "mode": ("user", "system"),
    "accel": ("auto", "kvm", "tcg"),
    "vmm": ("auto", "qemu", "firecracker"),
    "forward_ports": ("off", "auto"),
}


def check(values: Mapping[str, Any]) -> None:
    """Raise the UserError the first bad value among ``values`` earns; unset ones are defaults."""
    if "subnet" in values:
        _check_subnet(values["subnet"])
    if "bridge" in values:
        _check_bridge(values["bridge"])
    if "dns_port" in values and not 1024 <= values["dns_port"] <= 65535:
        raise UserError(
            f"dns_port {values['dns_port']} must be between 1024 and 65535",
            hint="bangerd needs no privilege for it; the default is 10053",
        )
    for upstream in values.get("dns_upstreams", ()):
        upstream_parts(upstream)
    for name, allowed in _CHOICES.items():
        if name in values and values[name] not in allowed:
            raise UserError(f"{name} {values[name]!r} is not one of {', '.join(allowed)}")


def _check_subnet(subnet: str) -> None:
    import ipaddress

    try:
        net = ipaddress.IPv4Network(subnet, strict=True)
    except ValueError as exc:
        raise UserError(
            f"subnet {subnet!r} is not an IPv4 network: {exc}",
            hint="set subnet to a private range such as 10.77.0.0/24",
        ) from exc
    if not net.is_private or net.prefixlen > 29:
        raise UserError(
            f"subnet {subnet} must be a private range of at least 8 addresses",
            hint="use something like 10.77.0.0/24",
        )


def _check_bridge(bridge: str) -> None:
    import re

    if not re.fullmatch(rf"{NAME_PREFIX}[a-z0-9-]{{1,11}}", bridge):
        raise UserError(
            f"bridge name {bridge!r} must start with {NAME_PREFIX!r} and be at most"
            " 13 lowercase letters, digits or dashes",
            hint="the default is bg0",
        )


def upstream_parts(text: str) -> tuple[str, int]:
    """``1.1.1.1``, ``127.0.0.1:5353``, ``2001:db8::1`` or ``[2001:db8::1]:5353``."""
    import ipaddress

    text = text.strip()
    host, port = text, str(DNS_PORT)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise _bad_upstream(text)
        port = rest[1:] or port
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ipaddress.ip_address(host)
        number = int(port)
    except ValueError as exc:
        raise _bad_upstream(text) from exc
    if not 1 <= number <= 65535:
        raise _bad_upstream(text)
    return str(address), number


def _bad_upstream(text: str) -> UserError:
    return UserError(
        f"DNS upstream {text!r} is not an IP address with an optional port",
        hint="set dns_upstreams (BANGER_DNS_UPSTREAMS) to e.g. 192.0.2.53,192.0.2.54:5353,"
        " or leave it empty to use /etc/resolv.conf",
    )
