"""The daemon's object graph, built whole before it serves.

Each service receives what it uses in its constructor; this is the one
place that decides which concrete helper, network, VMM and store they get.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from banger.config import Settings
from banger.daemon.agents import Agents
from banger.daemon.forwards import ForwardService, GuestListeners
from banger.daemon.images import ImageService
from banger.daemon.inspect import Inspector
from banger.daemon.kernels import KernelService
from banger.daemon.listeners import AgentDialer, AgentListeners
from banger.daemon.operations import Operations
from banger.daemon.plan import HostFacts, host_memory_mib
from banger.daemon.reconcile import reconcile
from banger.daemon.snapshots import SnapshotService
from banger.daemon.sshconfig import SshConfigFiles
from banger.daemon.sweep import sweep
from banger.daemon.vms import VmService
from banger.daemon.warm import WarmStart
from banger.guest.ssh import ensure_user_key
from banger.helper_client.launch import connect_helper
from banger.net.bridge import BridgeNetwork
from banger.net.forward import Forwarder
from banger.net.helper import NetHelper
from banger.net.network import VmNetwork
from banger.store import Database, Store
from banger.vmm import VmmChoice, Vmms, build_vmms
from banger.vmm.accel import AccelChoice, detect_accel, host_tsc_khz
from banger.vmm.base import Vmm

log = logging.getLogger("banger.daemon")


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: Store
    # Both drivers; as a Vmm it answers for whichever kind runs from a directory.
    vmm: Vmms
    accel: AccelChoice
    net: VmNetwork
    forwards: ForwardService
    agents: Agents
    vms: VmService
    snapshots: SnapshotService
    warm: WarmStart
    inspector: Inspector
    kernels: KernelService
    images: ImageService
    ops: Operations
    ssh_config: SshConfigFiles
    uid: int

    async def close(self) -> None:
        """At daemon stop: forwards, agent links, the bridge if unused, a helper we started."""
        await self.forwards.stop()
        await self.agents.close()
        await self.net.bridge.close()
        await asyncio.to_thread(self.net.close)
        await asyncio.to_thread(self.helper_stop)
        self.store.db.close()

    def helper_stop(self) -> None:
        from banger.helper_client.launch import stop_started_helper

        stop_started_helper(self.settings)


def host_facts(vmm: Vmms, accel: AccelChoice) -> HostFacts:
    return HostFacts(
        vmm=vmm.name,
        vmm_reason=vmm.default.reason,
        accel=accel.kind,
        accel_reason=accel.reason,
        tsc_khz=host_tsc_khz(),
        cpu_count=os.cpu_count() or 1,
        memory_mib=host_memory_mib(),
        root=os.geteuid() == 0,
    )


def wire(
    settings: Settings,
    *,
    store: Store,
    vmm: Vmm | Vmms,
    accel: AccelChoice,
    helper: NetHelper,
    user_key: Path,
    loop: asyncio.AbstractEventLoop,
    host: HostFacts | None = None,
    listeners: GuestListeners | None = None,
) -> Services:
    """Every service, given its dependencies; tests pass fakes for the helper and the VMM."""
    if not isinstance(vmm, Vmms):
        vmm = Vmms({vmm.name: vmm}, VmmChoice(vmm.name, "the only VMM given"))
    uid = os.getuid()
    bridge = BridgeNetwork(settings, helper, store, loop)
    net = VmNetwork(settings, helper, bridge, owner_uid=uid)
    agents = Agents(vmm, store, loop)
    # Automatic forwarding asks each guest's agent what listens (tests pass their own).
    forwards = ForwardService(
        store,
        Forwarder(loop),
        listeners or AgentListeners(agents),
        dialer=AgentDialer(agents),
    )
    vms = VmService(
        settings=settings,
        store=store,
        vmm=vmm,
        net=net,
        host=host or host_facts(vmm, accel),
        user_key=user_key,
        forwards=forwards,
        agents=agents,
    )
    kernels = KernelService(settings, store)
    snapshots = SnapshotService(settings, store, vms)
    return Services(
        settings=settings,
        store=store,
        vmm=vmm,
        accel=accel,
        net=net,
        forwards=forwards,
        agents=agents,
        vms=vms,
        snapshots=snapshots,
        warm=WarmStart(settings, store, vms, snapshots),
        inspector=Inspector(vms, agents),
        kernels=kernels,
        images=ImageService(
            settings=settings, store=store, kernels=kernels, vmm=vmm, user_key=user_key
        ),
        ops=Operations(store, home=settings.home),
        ssh_config=SshConfigFiles(store, settings.vms_dir, user_key),
        uid=uid,
    )


def build(settings: Settings, loop: asyncio.AbstractEventLoop) -> Services:
    """Open the store, reach the helper, wire every service; then reconcile."""
    store = Store(Database(settings.db_path))
    interrupted = store.fail_interrupted_operations()
    if interrupted:
        log.warning("marked %d operation(s) of a previous daemon as interrupted", interrupted)
    accel = detect_accel(settings.accel)
    if accel.kind == "tcg":
        log.warning("guests run under software emulation (TCG): %s", accel.reason)
    helper = connect_helper(settings)
    vmm = build_vmms(settings, accel, helper)
    log.info("vmm auto = %s: %s", vmm.default.name, vmm.default.reason)
    services = wire(
        settings,
        store=store,
        vmm=vmm,
        accel=accel,
        helper=helper,
        user_key=ensure_user_key(settings.ssh_dir),
        loop=loop,
    )
    reconcile(store, vmm, services.net, settings.vms_dir)
    sweep(
        settings,
        [Path(vm.dir) for vm in store.list_vms()],
        image_names=[image.name for image in store.list_images()],
    )
    for problem in services.forwards.restore(store.list_vms()):
        log.warning("reconcile: forward not restored: %s", problem)
    loop.call_soon_threadsafe(services.forwards.start)
    return services
