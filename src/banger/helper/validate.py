"""Argument checks for the helper's verbs.

Every value a caller sends passes through exactly one of these before any
command runs. Each check takes the argument's name (for the message), the raw
JSON value and the helper's ``Policy``, and returns the typed value or raises
UserError. Standard library only: this runs as root.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from banger.helper.errors import UserError
from banger.helper.ledger import Ledger

# Every link and table the helper touches carries this prefix (config.NAME_PREFIX too).
NAME_PREFIX = "bg"

# IFNAMSIZ is 16 including the NUL, so an interface name has at most 15 bytes.
LINK_NAME = re.compile(rf"{NAME_PREFIX}[a-z0-9-]{{1,13}}")
_MAC = re.compile(r"[0-9a-f]{2}(?::[0-9a-f]{2}){5}")
_MAX_PATH = 4096


@dataclass(frozen=True)
class Policy:
    """What the helper was started with: whom it serves, where it may write, what it made.

    ``caller_uid`` is set per request (``for_caller``): the verbs act only on
    what the ledger records for that uid.
    """

    owner_uid: int
    allowed_dirs: tuple[Path, ...]
    # The only Firecracker and jailer this helper runs (absolute, given at its start).
    firecracker: Path | None = None
    jailer: Path | None = None
    ledger: Ledger = field(default_factory=Ledger, compare=False)
    caller_uid: int | None = None

    @classmethod
    def create(
        cls,
        owner_uid: int,
        allowed_dirs: Collection[str | os.PathLike[str]],
        ledger: Ledger | None = None,
        *,
        firecracker: Path | None = None,
        jailer: Path | None = None,
    ) -> Policy:
        # Resolved once so a symlinked home compares equal to the paths inside it.
        dirs = tuple(Path(os.path.realpath(d)) for d in allowed_dirs)
        return cls(
            owner_uid=owner_uid,
            allowed_dirs=dirs,
            firecracker=firecracker,
            jailer=jailer,
            ledger=ledger or Ledger(),
        )

    def for_caller(self, uid: int) -> Policy:
        return replace(self, caller_uid=uid)

    @property
    def caller(self) -> int:
        """The uid a request came from; the owner where none was set (direct calls)."""
        return self.owner_uid if self.caller_uid is None else self.caller_uid


Check = Callable[[str, object, Policy], Any]


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _string(arg: str, value: object) -> str:
    if not isinstance(value, str):
        raise UserError(f"argument {arg!r} must be a string, not {_kind(value)}")
    return value


def link_name(arg: str, value: object, policy: Policy) -> str:
    """A network interface banger owns: its prefix, lowercase, fits IFNAMSIZ."""
    name = _string(arg, value)
    if not LINK_NAME.fullmatch(name):
        raise UserError(
            f"argument {arg!r} is {name[:40]!r}, not a banger interface name",
            hint=f"names start with {NAME_PREFIX!r}, then 1 to 13 of a-z, 0-9 or '-'",
        )
    return name


def _check_private(arg: str, net: ipaddress.IPv4Network) -> None:
    special = (
        net.is_loopback
        or net.is_link_local
        or net.is_multicast
        or net.is_unspecified
        or net.is_reserved
    )
    if special or not net.is_private:
        raise UserError(
            f"argument {arg!r} is {net}, not a private range",
            hint="use a private range such as 10.77.0.0/24",
        )
    if net.prefixlen > 30:
        raise UserError(f"argument {arg!r} is {net}, too small for a bridge and a VM")


def ipv4_interface(arg: str, value: object, policy: Policy) -> ipaddress.IPv4Interface:
    """A host address with its prefix, such as ``10.77.0.1/24``, in a private range."""
    text = _string(arg, value)
    try:
        iface = ipaddress.IPv4Interface(text)
    except ValueError as exc:
        raise UserError(
            f"argument {arg!r} is {text[:40]!r}, not an address like 10.77.0.1/24"
        ) from exc
    if "/" not in text:
        raise UserError(f"argument {arg!r} needs a prefix length, as in 10.77.0.1/24")
    _check_private(arg, iface.network)
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        raise UserError(f"argument {arg!r} is {text}, which is not a host address of its range")
    return iface


def ipv4_network(arg: str, value: object, policy: Policy) -> ipaddress.IPv4Network:
    """A private range without host bits, such as ``10.77.0.0/24``."""
    text = _string(arg, value)
    try:
        net = ipaddress.IPv4Network(text, strict=True)
    except ValueError as exc:
        raise UserError(
            f"argument {arg!r} is {text[:40]!r}, not a range like 10.77.0.0/24"
        ) from exc
    _check_private(arg, net)
    return net


def owner_uid(arg: str, value: object, policy: Policy) -> int:
    """A uid that may own a device: the helper's owner, or root."""
    # bool is an int subclass; true must not pass for uid 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"argument {arg!r} must be an integer uid, not {_kind(value)}")
    if value not in (policy.owner_uid, 0):
        raise UserError(
            f"argument {arg!r} is {value}, but this helper serves uid {policy.owner_uid}",
            hint=f"pass {policy.owner_uid} (or 0)",
        )
    return value


def mac_address(arg: str, value: object, policy: Policy) -> str:
    """A unicast MAC address, returned lowercase."""
    text = _string(arg, value).lower()
    if not _MAC.fullmatch(text):
        raise UserError(f"argument {arg!r} is {text[:40]!r}, not a MAC like 02:00:0a:4d:00:02")
    if int(text[:2], 16) & 1 or text == "00:00:00:00:00:00":
        raise UserError(f"argument {arg!r} is {text}, not a unicast address")
    return text


def allowed_path(arg: str, value: object, policy: Policy) -> Path:
    """An absolute path that, symlinks resolved, lies inside an allowed directory."""
    text = _string(arg, value)
    if "\0" in text or len(text) > _MAX_PATH or not text.startswith("/"):
        raise UserError(f"argument {arg!r} must be an absolute path")
    resolved = Path(os.path.realpath(text))
    if not any(resolved.is_relative_to(d) for d in policy.allowed_dirs):
        allowed = ", ".join(str(d) for d in policy.allowed_dirs) or "none"
        raise UserError(
            f"argument {arg!r} resolves to {resolved}, outside banger's directories",
            hint=f"this helper accepts paths under: {allowed}",
        )
    return resolved


def check_args(
    verb: str,
    spec: Mapping[str, Check],
    args: object,
    policy: Policy,
    optional: Collection[str] = (),
) -> dict[str, Any]:
    """Validate a request's ``args`` object against a verb's spec, strictly."""
    if not isinstance(args, dict):
        raise UserError(f"{verb}: args must be an object, not {_kind(args)}")
    extra = sorted(str(k) for k in args if k not in spec)
    if extra:
        raise UserError(
            f"{verb}: unexpected argument(s) {', '.join(extra)}",
            hint=f"{verb} takes: {', '.join(spec) or 'no arguments'}",
        )
    missing = [k for k in spec if k not in args and k not in optional]
    if missing:
        raise UserError(f"{verb}: missing argument(s) {', '.join(missing)}")
    return {k: check(k, args[k], policy) for k, check in spec.items() if k in args}


def ipv4_address(arg: str, value: object, policy: Policy) -> ipaddress.IPv4Address:
    """A single private IPv4 address without a prefix, such as ``10.77.0.5``."""
    text = _string(arg, value)
    try:
        addr = ipaddress.IPv4Address(text)
    except ValueError as exc:
        raise UserError(
            f"argument {arg!r} is {text[:40]!r}, not an address like 10.77.0.5"
        ) from exc
    special = (
        addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_unspecified
        or addr.is_reserved
    )
    if special or not addr.is_private:
        raise UserError(
            f"argument {arg!r} is {addr}, not a private address",
            hint="banger's VMs and bridge use a private range such as 10.77.0.0/24",
        )
    return addr


def unprivileged_port(arg: str, value: object, policy: Policy) -> int:
    """A TCP/UDP port an unprivileged daemon can bind: 1024 to 65535."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"argument {arg!r} must be an integer port, not {_kind(value)}")
    if not 1024 <= value <= 65535:
        raise UserError(
            f"argument {arg!r} is {value}, outside 1024-65535",
            hint="pass the unprivileged port the daemon's DNS responder listens on",
        )
    return value


# Jailed VMMs run as uids of their own, from this range (one per VM), never
# as the owner or root. The daemon's copy is banger.vmm.firecracker.JAIL_UID_BASE.
JAIL_UID_BASE = 900_000
JAIL_UID_COUNT = 65_536
_VM_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")


def vm_id(arg: str, value: object, policy: Policy) -> str:
    """A VM id: lowercase letters, digits and dashes, at most 64 (the jailer's limit)."""
    text = _string(arg, value)
    if not _VM_ID.fullmatch(text):
        raise UserError(f"argument {arg!r} is {text[:40]!r}, not a banger VM id")
    return text


def _integer(arg: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"argument {arg!r} must be an integer, not {_kind(value)}")
    if not low <= value <= high:
        raise UserError(f"argument {arg!r} is {value}, outside {low}-{high}")
    return value


def jail_uid(arg: str, value: object, policy: Policy) -> int:
    """A uid (or gid) from banger's range for jailed VMMs."""
    return _integer(arg, value, JAIL_UID_BASE, JAIL_UID_BASE + JAIL_UID_COUNT - 1)


def vcpu_count(arg: str, value: object, policy: Policy) -> int:
    return _integer(arg, value, 1, 32)


def memory_mib(arg: str, value: object, policy: Policy) -> int:
    return _integer(arg, value, 128, 1 << 20)


def allowed_files(arg: str, value: object, policy: Policy) -> list[Path]:
    """A list of at most 16 existing regular files inside banger's directories."""
    if not isinstance(value, list) or len(value) > 16:
        raise UserError(f"argument {arg!r} must be a list of at most 16 paths")
    paths = [allowed_path(f"{arg}[{i}]", item, policy) for i, item in enumerate(value)]
    for path in paths:
        if not path.is_file():
            raise UserError(f"argument {arg!r}: {path} is not a regular file")
    return paths
