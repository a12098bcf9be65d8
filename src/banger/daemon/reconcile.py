"""At daemon start: make the store agree with what actually runs.

VMs outlive the daemon (their VMMs are detached), so a restart, or a crash,
finds VMs still running; those are kept. What is fixed, and logged: VMs
whose VMM died are marked stopped (or failed, if they died being created),
VMs whose restore from a snapshot was cut short are removed whole,
and taps, NAT rules and VMM processes that belong to no VM are removed.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from banger.api.models import Vm, VmState
from banger.errors import BangerError
from banger.net.network import Network
from banger.store import Store
from banger.vmm.base import Vmm

log = logging.getLogger("banger.daemon")

_UNFINISHED = (VmState.CREATING, VmState.STARTING)


def reconcile(store: Store, vmm: Vmm, net: Network, vms_dir: Path) -> list[str]:
    """Fix what a previous daemon left behind; return one line per fix."""
    fixes: list[str] = []
    running: list[Vm] = []
    for vm in store.list_vms():
        if vm.state == VmState.CREATING and vm.snapshot:
            # A restore that never reached its identity step: its guest still
            # thinks it is the VM of the snapshot. Nothing of it is kept.
            vmm.kill(Path(vm.dir))
            shutil.rmtree(vm.dir, ignore_errors=True)
            store.delete_vm(vm.id)
            fixes.append(f"{vm.name}: removed its unfinished restore from snapshot {vm.snapshot}")
            continue
        pid = vmm.pid(Path(vm.dir))
        if pid is not None:
            running.append(vm)
            now = VmState.PAUSED if vmm.paused(Path(vm.dir)) else VmState.RUNNING
            if vm.state != now:
                store.set_vm_state(vm.id, now)
                fixes.append(f"{vm.name}: its VMM runs (pid {pid}); marked {now}")
            continue
        if vm.state in _UNFINISHED:
            store.set_vm_state(vm.id, VmState.ERROR)
            fixes.append(f"{vm.name}: was {vm.state} when the daemon stopped; marked error")
        elif vm.state != VmState.STOPPED and vm.state != VmState.ERROR:
            store.set_vm_state(vm.id, VmState.STOPPED)
            fixes.append(f"{vm.name}: its VMM is gone; marked stopped")
    for ip in store.release_orphan_leases():
        fixes.append(f"released {ip}, leased to a VM that no longer exists")
    known = {str(Path(vm.dir).resolve()) for vm in store.list_vms()}
    for run_dir, pid in vmm.running_under(vms_dir).items():
        if str(run_dir.resolve()) not in known:
            vmm.kill(run_dir)
            fixes.append(f"killed VMM pid {pid} of a deleted VM ({run_dir.name})")
    try:
        fixes += net.reconcile(running)
    except BangerError as exc:
        # A daemon that cannot tidy the network must still start: VMs may need it.
        log.warning("reconcile: network not checked: %s", exc.message)
    for line in fixes:
        log.info("reconcile: %s", line)
    return fixes
