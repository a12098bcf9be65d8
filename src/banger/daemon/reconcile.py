"""At daemon start: make the store agree with what actually runs.

VMs outlive the daemon (their VMMs are detached), so a restart, or a crash,
finds VMs still running; those are kept. What is fixed, and logged: VMs
whose VMM died are marked stopped (or failed, if they died being created),
and taps, NAT rules and VMM processes that belong to no VM are removed.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from banger.api.models import VmState
from banger.daemon.context import Context
from banger.errors import BangerError

log = logging.getLogger("banger.daemon")

_UNFINISHED = (VmState.CREATING, VmState.STARTING)


def reconcile(ctx: Context) -> list[str]:
    """Fix what a previous daemon left behind; return one line per fix."""
    fixes: list[str] = []
    live_taps: set[str] = set()
    nat_sources: set[str] = set()
    for vm in ctx.store.list_vms():
        pid = ctx.vmm.pid(Path(vm.dir))
        if pid is not None:
            live_taps.add(vm.tap)
            if vm.nat:
                nat_sources.add(vm.ip)
            if vm.state != VmState.RUNNING:
                ctx.store.set_vm_state(vm.id, VmState.RUNNING)
                fixes.append(f"{vm.name}: its VMM runs (pid {pid}); marked running")
            continue
        if vm.state in _UNFINISHED:
            ctx.store.set_vm_state(vm.id, VmState.ERROR)
            fixes.append(f"{vm.name}: was {vm.state} when the daemon stopped; marked error")
        elif vm.state != VmState.STOPPED and vm.state != VmState.ERROR:
            ctx.store.set_vm_state(vm.id, VmState.STOPPED)
            fixes.append(f"{vm.name}: its VMM is gone; marked stopped")
    for ip in ctx.store.release_orphan_leases():
        fixes.append(f"released {ip}, leased to a VM that no longer exists")
    known = {str(Path(vm.dir).resolve()) for vm in ctx.store.list_vms()}
    fixes += _kill_orphan_vmms(ctx, known)
    try:
        fixes += _clean_network(ctx, live_taps, nat_sources)
    except BangerError as exc:
        # A daemon that cannot tidy the network must still start: VMs may need it.
        log.warning("reconcile: network not checked: %s", exc.message)
    for line in fixes:
        log.info("reconcile: %s", line)
    return fixes


def _kill_orphan_vmms(ctx: Context, known_dirs: set[str]) -> list[str]:
    """VMM processes running from a VM directory the store no longer knows."""
    fixes: list[str] = []
    for run_dir, pid in ctx.vmm.running_under(ctx.settings.vms_dir).items():
        if str(run_dir.resolve()) not in known_dirs:
            ctx.vmm.kill(run_dir)
            fixes.append(f"killed VMM pid {pid} of a deleted VM ({run_dir.name})")
    return fixes


def _clean_network(ctx: Context, live_taps: set[str], nat_sources: set[str]) -> list[str]:
    if os.geteuid() != 0 and not ctx.settings.helper_socket_path.exists():
        return []  # no helper to ask; the next VM operation will start or demand one
    try:
        helper = ctx.helper()
        links = helper.list_links()
    except BangerError as exc:
        log.warning("reconcile: cannot reach banger-helper (%s); taps not checked", exc.message)
        return []
    fixes = []
    tap_prefix = "bgt"
    for link in links:
        name = str(link.get("name", ""))
        # Only taps on this daemon's bridge: another banger (another user, another
        # bridge) may run on the same host, and its taps are none of ours.
        ours = link.get("master") == ctx.settings.bridge
        if (
            ours
            and link.get("kind") == "tap"
            and name.startswith(tap_prefix)
            and name not in live_taps
        ):
            helper.delete_tap(name)
            fixes.append(f"removed tap {name}, which no running VM uses")
    has_nat = set()
    for entry in helper.nat_list():
        source = entry.get("source", "")
        if entry.get("bridge") != ctx.settings.bridge:
            continue  # another banger's bridge on this host
        has_nat.add(source)
        if source and source not in nat_sources:
            helper.nat_disable(source)
            fixes.append(f"removed NAT for {source}, which no running VM uses")
    if live_taps:
        # VMs kept running while no daemon did: give them DNS and their rules back.
        ctx.bridge().ensure(helper)
        for source in sorted(nat_sources - has_nat):
            helper.nat_enable(ctx.settings.bridge, ctx.settings.subnet, source)
            fixes.append(f"restored NAT for {source}")
    else:
        ctx.bridge().release_if_idle(helper, leaving="")
    return fixes
