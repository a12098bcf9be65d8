"""Checks of names: where `--nat` VMs resolve the world; whether the host resolves NAME.vm."""

from __future__ import annotations

from banger.config import Settings
from banger.doctor.host import Check, Host
from banger.net import plan as netplan
from banger.net.upstream import HostResolvers, nameservers

# systemd-resolved's stub listeners, as resolv.conf names them.
RESOLVED_STUBS = ("127.0.0.53", "127.0.0.54")


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
