"""Where bangerd forwards the DNS queries of VMs allowed out: the host's own resolvers.

By default those are the nameservers of the host's resolver configuration
(``/etc/resolv.conf``), read again whenever the file changes, so a laptop
that moves between networks keeps resolving. Where systemd-resolved manages
that file it lists its stub, 127.0.0.53; forwarding there is right, because
bangerd runs on the host and the stub applies the host's per-link DNS
settings. The ``dns_upstreams`` setting replaces the file's list (tests point
it at a resolver of their own); its values are parsed in config.py, with
the other settings.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path

from banger.config import Upstream, parse_upstream

log = logging.getLogger("banger.net")

RESOLV_CONF = Path("/etc/resolv.conf")
# glibc reads at most three nameserver lines; a fourth would surprise a user
# who compares banger's behaviour with the host's.
MAX_NAMESERVERS = 3


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
