"""A restored guest's own identity: hostname, address and gateway, MAC, clock, entropy.

A restored guest wakes up as the VM it was snapshotted from: that VM's
hostname, address and MAC, its clock at the moment of the snapshot, and its
random state (two forks would draw the same "random" bytes). ``reidentify``
is the one step that fixes all of that before the VM is reported ready,
through the guest's own agent channel: no other VM can answer it, whatever
address the guest still has. The guest gets a new SSH host key too (banger
pins the new one). Snapshots of VMs without the agent are refused before
they are made (``snapshots.SnapshotService.check_create``).
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import os
import time
from pathlib import Path
from typing import Any

from banger.api.models import Snapshot, Vm
from banger.daemon.agents import CONNECT_TIMEOUT
from banger.daemon.operations import Progress
from banger.daemon.plan import host_key_alias, vm_paths
from banger.daemon.vms import VmService
from banger.errors import BangerError
from banger.guest import ssh
from banger.net import plan as netplan

log = logging.getLogger("banger.daemon")

# The static busybox of banger's agent bundle, in every image that has the agent.
GUEST_BUSYBOX = "/.banger/bin/busybox"
# Seconds for clock, entropy and identity together (a host key reload included).
IDENTITY_TIMEOUT = 30.0


def reidentify(vms: VmService, vm: Vm, snap: Snapshot, progress: Progress) -> None:
    """Give the restored ``vm`` its own identity; it answers at its own address after."""
    _over_agent(vms, vm)
    progress.info(f"{vm.name} has its own name, address, MAC, host key, clock and entropy")
    log.info("%s: identity set through the agent (%s -> %s)", vm.name, snap.ip, vm.ip)


def _over_agent(vms: VmService, vm: Vm) -> None:
    network = vms.settings.network
    paths = vm_paths(vm)
    # Its own host key from here on; banger pins the new one.
    private, public = ssh.make_host_key(paths.host_key, f"root@{vm.name}")
    ssh.write_known_hosts(paths.known_hosts, host_key_alias(vm), public)
    agents = vms.agents
    identity = {
        "hostname": vm.name,
        "ip": str(ipaddress.IPv4Interface(f"{vm.ip}/{network.prefixlen}")),
        "gateway": str(netplan.gateway(network)),
        "mac": vm.mac,
        "host_key": {"private": private.decode(), "public": public},
    }

    linked = 0.0

    async def all_three() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        nonlocal linked
        await agents.link(vm)  # the calls would wait for it all the same; timed apart
        linked = time.monotonic() - began
        # One link, its requests multiplexed: the three run side by side in the
        # agent, and the restore waits for the slowest, not for their sum.
        return await asyncio.gather(
            agents.call(vm, "clock", {"unix_ns": time.time_ns()}),
            agents.call(vm, "entropy", {"data": base64.b64encode(os.urandom(256)).decode()}),
            agents.call(vm, "identity", identity, timeout=IDENTITY_TIMEOUT),
        )

    began = time.monotonic()
    _clock, seeded, changed = agents.run_sync(all_three(), IDENTITY_TIMEOUT + CONNECT_TIMEOUT)
    log.info(
        "%s: the agent's link in %.2fs, then clock, entropy and identity in %.2fs (agent: %s ms)",
        vm.name,
        linked,
        time.monotonic() - began - linked,
        changed.get("took_ms", "?"),
    )
    if not seeded.get("reseeded"):
        # An agent from before the reseed, or a kernel before 4.17: the entropy
        # is in the pool, but the CRNG takes it only at its next timed reseed.
        log.warning("%s: the guest's CRNG was not reseeded (RNDRESEEDCRNG)", vm.name)
    if not changed.get("announced"):
        _arping(vms, vm)
    vms.runtime.vmm(vm).resume(Path(vm.dir))  # and QEMU announces the new MAC


def _arping(vms: VmService, vm: Vm) -> None:
    """The unsolicited ARP an agent older than its own sends (``announced`` in its answer).

    The host may still map the address to the MAC of the VM that held it
    before (a deleted VM, or this snapshot's guest): a stale entry costs the
    first connection seconds of ARP retries.
    """
    try:
        arping = [GUEST_BUSYBOX, "arping", "-U", "-c", "1", "-I", "eth0", vm.ip]
        vms.agents.output_sync(vm, arping, timeout=10)
    except BangerError as exc:
        log.info("%s: no unsolicited ARP: %s", vm.name, exc.message)
