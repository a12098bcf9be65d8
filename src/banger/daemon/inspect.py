"""Looking into a VM: console log, resource use, listening ports, health.

Host-side numbers come from /proc and /sys. Guest-side ones come from
banger's agent over its channel where the image has one (ops ``load`` and
``ports``, and ``df`` run through it), else from one short SSH command each,
parsed here so the guest needs nothing beyond a shell.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any

from banger.api.models import (
    GuestDisk,
    GuestStats,
    HealthCheck,
    HostStats,
    Port,
    Vm,
    VmHealth,
    VmPing,
    VmStats,
)
from banger.daemon.agents import Agents
from banger.daemon.runtime import host_public_key
from banger.daemon.vms import VmService
from banger.errors import BangerError, UserError
from banger.guest import ssh

_TICKS = os.sysconf("SC_CLK_TCK")

# One round trip for everything `stats` wants from the guest.
_GUEST_STATS = (
    "cat /proc/meminfo; echo @@; cat /proc/loadavg; echo @@; df -P -B1 / /root 2>/dev/null"
)
# The disks, where the agent gives the rest; banger's busybox has df in every image.
_GUEST_DF = ["/.banger/bin/busybox", "df", "-P", "-B1", "/", "/root"]
# ss where the image has it (process names too); /proc/net otherwise.
_GUEST_PORTS = (
    "if command -v ss >/dev/null 2>&1; then ss -H -ltunp; else echo @@proc;"
    " for f in tcp tcp6 udp udp6; do echo @$f; cat /proc/net/$f 2>/dev/null; done; fi"
)


class Inspector:
    def __init__(self, vms: VmService, agents: Agents) -> None:
        self.vms = vms
        self.agents = agents

    def _guest(self, vm: Vm, command: str, timeout: float = 15) -> str:
        result = ssh.run_in_guest(
            vm.ip, self.vms.user_key, host_public_key(vm), command, timeout=timeout
        )
        return result.stdout

    def console_log(self, name: str) -> Path:
        vm = self.vms.show(name)
        return Path(vm.dir) / "console.log"

    def stats(self, name: str) -> VmStats:
        vm = self.vms.running(name)
        if vm.pid is None:  # it stopped between the two looks
            raise UserError(f"VM {vm.name!r} stopped", hint=f"`banger vm start {vm.name}`")
        host = host_process_stats(vm.pid, vm.tap)
        if self.agents.has_channel(vm):
            load = self.agents.call_sync(vm, "load")
            df = self.agents.output_sync(vm, _GUEST_DF)
            guest = guest_stats_from_agent(load, df)
        else:
            guest = parse_guest_stats(self._guest(vm, _GUEST_STATS))
        return VmStats(name=vm.name, host=host, guest=guest, vmm=self.vms.vmm_metrics(vm))

    def ports(self, name: str) -> list[Port]:
        vm = self.vms.running(name)
        if self.agents.has_channel(vm):
            found = ports_from_agent(self.agents.call_sync(vm, "ports"))
        else:
            text = self._guest(vm, _GUEST_PORTS)
            found = parse_proc_net(text) if text.startswith("@@proc") else parse_ss(text)
        host = reachable_host(vm, names_resolve=self.vms.net.names_resolve_on_host)
        forwarded = {f.guest_port: f for f in reversed(vm.forwards) if not f.error}
        rows = []
        for p in found:
            forward = forwarded.get(p.port) if p.proto == "tcp" else None
            update = {"endpoint": f"{host}:{p.port}"}
            if forward is not None:
                update |= {
                    "forwarded": f"{forward.host_ip}:{forward.host_port}",
                    "via": forward.via,
                }
            rows.append(p.model_copy(update=update))
        return rows

    def ping(self, name: str) -> VmPing:
        """Round trip to the guest's SSH port: proves the network path, needs no privilege."""
        vm = self.vms.running(name)
        start = time.perf_counter()
        try:
            with socket.create_connection((vm.ip, 22), timeout=5):
                pass
        except OSError as exc:
            return VmPing(name=vm.name, ip=vm.ip, reachable=False, error=str(exc))
        rtt = (time.perf_counter() - start) * 1000
        return VmPing(name=vm.name, ip=vm.ip, reachable=True, rtt_ms=round(rtt, 3))

    def health(self, name: str) -> VmHealth:
        vm = self.vms.show(name)
        checks = {"vmm": HealthCheck(ok=vm.pid is not None, pid=vm.pid)}
        if vm.pid is None:
            return VmHealth(name=vm.name, state=vm.state, healthy=False, checks=checks)
        if self.agents.has_channel(vm):
            checks.update(self._agent_health(vm))
        else:
            checks.update(self._ssh_health(vm))
        healthy = all(c.ok for c in checks.values())
        return VmHealth(name=vm.name, state=vm.state, healthy=healthy, checks=checks)

    def _agent_health(self, vm: Vm) -> dict[str, HealthCheck]:
        """The agent's round trip and what it says of the image's init; SSH's greeting."""
        checks: dict[str, HealthCheck] = {}
        start = time.perf_counter()
        try:
            boot = self.agents.call_sync(vm, "boot", {}, timeout=10)
            ms = round((time.perf_counter() - start) * 1000, 1)
            checks["agent"] = HealthCheck(ok=True, ms=ms)
            state = str(boot.get("state", "unknown"))
            checks["init"] = HealthCheck(ok=state in ("running", "degraded"), state=state)
        except BangerError as exc:
            checks["agent"] = HealthCheck(ok=False, error=exc.message)
        ssh_up = ssh.ssh_banner(vm.ip)
        checks["ssh"] = HealthCheck(ok=ssh_up, error=None if ssh_up else "no SSH greeting")
        return checks

    def _ssh_health(self, vm: Vm) -> dict[str, HealthCheck]:
        checks: dict[str, HealthCheck] = {}
        start = time.perf_counter()
        try:
            state = self._guest(
                vm, "systemctl is-system-running 2>/dev/null || echo no-systemd", timeout=10
            ).strip()
            ms = round((time.perf_counter() - start) * 1000, 1)
            checks["ssh"] = HealthCheck(ok=True, ms=ms)
            checks["init"] = HealthCheck(ok=state in ("running", "no-systemd"), state=state)
        except Exception as exc:
            checks["ssh"] = HealthCheck(ok=False, error=str(exc))
        return checks


def reachable_host(vm: Vm, *, names_resolve: bool) -> str:
    """What reaches the VM from this host: NAME.vm only where the host resolves it."""
    return f"{vm.name}.vm" if names_resolve else vm.ip


def host_process_stats(pid: int, tap: str, proc_root: Path = Path("/proc")) -> HostStats:
    """CPU time, memory and IO of the VMM process, and traffic on its tap."""
    stat = (proc_root / str(pid) / "stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu_seconds = (int(fields[11]) + int(fields[12])) / _TICKS
    rss = 0
    for line in (proc_root / str(pid) / "status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) * 1024
    io: dict[str, int] = {}
    try:
        for line in (proc_root / str(pid) / "io").read_text().splitlines():
            key, _, value = line.partition(":")
            io[key] = int(value)
    except OSError:
        pass
    net = Path("/sys/class/net") / tap / "statistics"

    def counter(name: str) -> int | None:
        try:
            return int((net / name).read_text())
        except OSError:
            return None

    return HostStats(
        pid=pid,
        cpu_seconds=round(cpu_seconds, 2),
        rss_bytes=rss,
        read_bytes=io.get("read_bytes"),
        write_bytes=io.get("write_bytes"),
        # The tap's rx is what the guest sent.
        net_tx_bytes=counter("rx_bytes"),
        net_rx_bytes=counter("tx_bytes"),
    )


def guest_stats_from_agent(load: dict[str, Any], df: str) -> GuestStats:
    """The agent's ``load`` answer and ``df -P -B1`` output as the guest's numbers."""
    loadavg = load.get("loadavg")
    total, available = load.get("mem_total_kib"), load.get("mem_available_kib")
    return GuestStats(
        mem_total_bytes=int(total) * 1024 if isinstance(total, int) else None,
        mem_available_bytes=int(available) * 1024 if isinstance(available, int) else None,
        load=[float(x) for x in loadavg[:3]]
        if isinstance(loadavg, list) and len(loadavg) >= 3
        else None,
        disks=parse_df(df),
    )


def parse_df(text: str) -> list[GuestDisk]:
    disks = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 6 and cols[1].isdigit():
            disks.append(GuestDisk(mount=cols[5], size_bytes=int(cols[1]), used_bytes=int(cols[2])))
    return disks


def ports_from_agent(answer: dict[str, Any]) -> list[Port]:
    """The agent's ``ports`` answer: ``{ports: [{proto, addr, port, pid?, process?}]}``."""
    ports = []
    for row in answer.get("ports") or []:
        if not isinstance(row, dict) or not isinstance(row.get("port"), int):
            continue
        address = str(row.get("addr") or "*").strip("[]")
        process = row.get("process")
        ports.append(
            Port(
                # The address already says the family; "tcp6" is one more "tcp" row.
                proto=str(row.get("proto") or "tcp").removesuffix("6"),
                address="*" if address in _ANY else address,
                port=row["port"],
                process=str(process) if process else None,
            )
        )
    return unique_listeners(ports)


def parse_guest_stats(text: str) -> GuestStats:
    parts = text.split("@@")
    meminfo: dict[str, int] = {}
    for line in parts[0].splitlines():
        key, _, rest = line.partition(":")
        if rest.strip():
            meminfo[key] = int(rest.split()[0]) * 1024
    load = parts[1].split() if len(parts) > 1 else []
    disks = parse_df(parts[2] if len(parts) > 2 else "")
    return GuestStats(
        mem_total_bytes=meminfo.get("MemTotal"),
        mem_available_bytes=meminfo.get("MemAvailable"),
        load=[float(x) for x in load[:3]] if len(load) >= 3 else None,
        disks=disks,
    )


# What ss and /proc print for "every address": one listener, whichever family.
_ANY = frozenset({"*", "0.0.0.0", "::", "[::]"})  # noqa: S104 (parsed, never bound)


def _split_addr(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "*"
    return "*" if host in _ANY else host, int(port) if port.isdigit() else 0


def unique_listeners(ports: list[Port]) -> list[Port]:
    """One row per listener: a dual-stack socket shows up as 0.0.0.0 and as * (or ::)."""
    seen: dict[tuple[str, str, int], Port] = {}
    for port in ports:
        key = (port.proto, port.address, port.port)
        known = seen.get(key)
        if known is None or (known.process is None and port.process is not None):
            seen[key] = port
    return sorted(seen.values(), key=lambda p: (p.port, p.proto, p.address))


def parse_ss(text: str) -> list[Port]:
    """Rows of `ss -H -ltunp`: proto, state, recv-q, send-q, local, peer, [process]."""
    ports = []
    for line in text.splitlines():
        cols = line.split()
        if len(cols) < 5:
            continue
        address, port = _split_addr(cols[4])
        process = None
        if len(cols) > 6 and '"' in cols[6]:
            process = cols[6].split('"')[1]
        ports.append(Port(proto=cols[0], address=address, port=port, process=process))
    return unique_listeners(ports)


def parse_proc_net(text: str) -> list[Port]:
    """/proc/net/{tcp,udp}[6] where ss is missing: listening TCP (state 0A) and bound UDP."""
    ports: list[Port] = []
    proto = ""
    for line in text.splitlines():
        if line.startswith("@") and not line.startswith("@@"):
            proto = line[1:]
            continue
        cols = line.split()
        if len(cols) < 4 or cols[0] == "sl" or ":" not in cols[1]:
            continue
        state = cols[3]
        if proto.startswith("tcp") and state != "0A":
            continue
        hex_addr, hex_port = cols[1].split(":")
        port = int(hex_port, 16)
        if proto.startswith("udp") and port == 0:
            continue
        address = _hex_address(hex_addr)
        ports.append(Port(proto=proto[:3], address="*" if address in _ANY else address, port=port))
    return unique_listeners(ports)


def _hex_address(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw[::-1])
    # /proc stores IPv6 as four little-endian 32-bit words.
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)
