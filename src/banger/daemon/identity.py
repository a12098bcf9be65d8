"""A restored guest's own identity: hostname, address and gateway, MAC, clock, entropy.

A restored guest wakes up as the VM it was snapshotted from: that VM's
hostname, address and MAC, its clock at the moment of the snapshot, and its
random state (two forks would draw the same "random" bytes). ``reidentify``
is the one step that fixes all of that before the VM is reported ready.

Where the image has banger's agent channel, its identity, clock and entropy
ops do it, and the guest gets a new SSH host key too (banger pins the new
one). Without the channel it goes over SSH to the guest at the address it
still has: while that runs every other VM answering at that address (the VM
forked from, still running) is paused, so only the new guest can answer,
and the new guest announces its MAC to the bridge first; such a VM keeps the
host key of its snapshot (and banger pins that one for it).
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from banger.api.models import Snapshot, Vm, VmState
from banger.daemon.operations import Progress
from banger.daemon.plan import host_key_alias, vm_paths
from banger.daemon.runtime import BOOT_TIMEOUT, host_public_key
from banger.daemon.vms import VmService
from banger.errors import BangerError
from banger.guest import ssh
from banger.net import plan as netplan

log = logging.getLogger("banger.daemon")

ENTROPY_BYTES = 64
# RNDRESEEDCRNG is _IO('R', 0x07).
_RESEED = 'open(my $f, "<", "/dev/urandom") or exit 1; ioctl($f, 0x5207, 0) or exit 1'
# Long enough for the SSH command that starts it to return before the address goes.
_SWITCH_DELAY = 0.5


def identity_script(vm: Vm, prefixlen: int, gateway: str, now: float, entropy: bytes) -> str:
    """The shell the guest runs: clock and entropy at once, then name, MAC and address."""
    address = ipaddress.IPv4Interface(f"{vm.ip}/{prefixlen}")
    switch = (
        f"sleep {_SWITCH_DELAY}; ip link set dev eth0 address {vm.mac}; ip addr flush dev eth0;"
        f" ip addr add {address} dev eth0; ip route replace default via {gateway} dev eth0"
    )
    return "\n".join(
        [
            f"date -s @{now:.3f} >/dev/null 2>&1 || date -s @{int(now)} >/dev/null",
            f"printf %s {base64.b64encode(entropy).decode()} | base64 -d >/dev/urandom",
            # Mixed in is not yet used: reseed the kernel's CRNG from it now
            # (RNDRESEEDCRNG), where the image has perl to make the ioctl.
            f"perl -e {shlex.quote(_RESEED)} 2>/dev/null || true",
            f"hostname {shlex.quote(vm.name)}",
            f"echo {shlex.quote(vm.name)} >/etc/hostname",
            f"sh -c {shlex.quote(switch)} </dev/null >/dev/null 2>&1 &",
        ]
    )


def reidentify(vms: VmService, vm: Vm, snap: Snapshot, progress: Progress) -> None:
    """Give the restored ``vm`` its own identity; it answers at its own address after."""
    if vms.agents.has_channel(vm):
        _over_agent(vms, vm)
        progress.info(f"{vm.name} has its own name, address, MAC, host key, clock and entropy")
        log.info("%s: identity set through the agent (%s -> %s)", vm.name, snap.ip, vm.ip)
        return
    took = _over_ssh(vms, vm, snap)
    progress.info(f"{vm.name} answers at {vm.ip} as {vm.name} ({took:.1f}s)")
    log.info("%s: identity set over SSH (%s -> %s)", vm.name, snap.ip, vm.ip)


def _over_agent(vms: VmService, vm: Vm) -> None:
    """Through the VM's own channel: no other VM can answer it, whatever address it has."""
    network = vms.settings.network
    paths = vm_paths(vm)
    # Its own host key from here on; banger pins the new one.
    private, public = ssh.make_host_key(paths.host_key, f"root@{vm.name}")
    ssh.write_known_hosts(paths.known_hosts, host_key_alias(vm), public)
    agents = vms.agents
    agents.call_sync(vm, "clock", {"unix_ns": time.time_ns()})
    agents.call_sync(vm, "entropy", {"data": base64.b64encode(os.urandom(256)).decode()})
    # Credited entropy is not used until the kernel reseeds its CRNG, which it
    # does on a timer: until then two forks read the same "random" bytes.
    # Reseed now (RNDRESEEDCRNG), where the image has perl to make the ioctl.
    try:
        agents.output_sync(vm, ["perl", "-e", _RESEED], timeout=10)
    except BangerError as exc:
        log.warning("%s: the guest's CRNG was not reseeded: %s", vm.name, exc.message)
    agents.call_sync(
        vm,
        "identity",
        {
            "hostname": vm.name,
            "ip": str(ipaddress.IPv4Interface(f"{vm.ip}/{network.prefixlen}")),
            "gateway": str(netplan.gateway(network)),
            "mac": vm.mac,
            "host_key": {"private": private.decode(), "public": public},
        },
        timeout=30,
    )
    # The restored guest's MAC was announced before; now its new one is.
    vms.runtime.vmm(vm).resume(Path(vm.dir))


def _over_ssh(vms: VmService, vm: Vm, snap: Snapshot) -> float:
    """Over SSH at the address the guest still has, with every other VM there paused."""
    run_dir = Path(vm.dir)
    host_key = host_public_key(vm)
    with _others_paused(vms, vm, snap.ip):
        vms.runtime.vmm(vm).resume(run_dir)  # announces the guest's MAC where it now is
        network = vms.settings.network
        script = identity_script(
            vm,
            network.prefixlen,
            str(netplan.gateway(network)),
            time.time() + 0.1,  # about the time SSH takes to deliver it
            os.urandom(ENTROPY_BYTES),
        )
        ssh.run_in_guest(snap.ip, vms.user_key, host_key, script, timeout=60)
        return ssh.wait_for_ssh(
            vm.ip,
            vms.user_key,
            host_key,
            timeout=BOOT_TIMEOUT,
            alive=lambda: vms.runtime.vmm(vm).pid(run_dir) is not None,
            what=f"VM {vm.name!r}",
        )


@contextmanager
def _others_paused(vms: VmService, vm: Vm, address: str) -> Iterator[None]:
    """Pause every other running VM at ``address`` for the duration; resume them after."""
    paused: list[Vm] = []
    try:
        for other in vms.list_all():
            if other.id != vm.id and other.ip == address and other.state == VmState.RUNNING:
                vms.runtime.vmm(other).pause(Path(other.dir))
                paused.append(other)
        yield
    finally:
        for other in paused:
            try:
                vms.runtime.vmm(other).resume(Path(other.dir))
            except Exception as exc:  # the restore's own error matters more
                log.warning("could not resume %s: %s", other.name, exc)
