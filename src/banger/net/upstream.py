"""Where bangerd forwards the DNS queries of VMs allowed out: the host's own resolvers.

By default those are the nameservers of the host's resolver configuration
(``/etc/resolv.conf``), read again whenever the file changes, so a laptop
that moves between networks keeps resolving. Where systemd-resolved manages
that file it lists its stub, 127.0.0.53; forwarding there is right, because
bangerd runs on the host and the stub applies the host's per-link DNS
settings. The ``dns_upstreams`` setting replaces the file's list (tests point
it at a resolver of their own). Standard library only: settings validation
uses it, and it must stay cheap to import.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from banger.errors import UserError

log = logging.getLogger("banger.net")

RESOLV_CONF = Path("/etc/resolv.conf")
# glibc reads at most three nameserver lines; a fourth would surprise a user
# who compares banger's behaviour with the host's.
MAX_NAMESERVERS = 3
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


def nameservers(text: str) -> list[Upstream]:
    """The usable ``nameserver`` lines of a resolv.conf, in order."""
    found: list[Upstream] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0] != "nameserver":
            continue
        # A scoped IPv6 address (fe80::1%eth0) needs its interface; skip it
        # rather than send queries nowhere.
        try:
            address = ipaddress.ip_address(fields[1])
        except ValueError:
            continue
        if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
            continue
        found.append(Upstream(str(address)))
        if len(found) == MAX_NAMESERVERS:
            break
    return found


class HostResolvers:
    """The upstreams to use now: the configured ones, or resolv.conf's current list."""

    def __init__(self, configured: tuple[str, ...] = (), path: Path = RESOLV_CONF) -> None:
        self._configured = [parse_upstream(item) for item in configured]
        self._path = path
        self._seen: tuple[int, int] | None = None
        self._cached: list[Upstream] = []

    def current(self) -> list[Upstream]:
        if self._configured:
            return self._configured
        try:
            info = os.stat(self._path)
        except OSError as exc:
            if self._seen != (0, 0):
                log.warning("DNS: cannot read %s (%s): VMs cannot resolve names", self._path, exc)
            self._seen, self._cached = (0, 0), []
            return []
        stamp = (info.st_mtime_ns, info.st_ino)
        if stamp != self._seen:
            try:
                self._cached = nameservers(self._path.read_text(errors="replace"))
            except OSError as exc:
                log.warning("DNS: cannot read %s: %s", self._path, exc)
                self._cached = []
            self._seen = stamp
            log.info(
                "DNS: forwarding for VMs allowed out to %s (from %s)",
                ", ".join(map(str, self._cached)) or "nothing",
                self._path,
            )
        return self._cached
