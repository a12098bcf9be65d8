"""What Firecracker is told about a VM: its API request sequence and its jail identity.

Pure functions of the VM's configuration, so a test checks every request
against Firecracker's API spec without starting anything.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from banger.vmm import fc_api
from banger.vmm.base import VmmConfig
from banger.vmm.fc_snapshot import telemetry_requests

# One uid (and gid) per VM from the helper's jail range (helper/validate.py).
JAIL_UID_BASE = 900_000
JAIL_UID_COUNT = 65_536
# Firecracker's vsock device's host end; the guest agent listens on AGENT_VSOCK_PORT.
VSOCK_FILE = "vsock.sock"


def jail_uid(vm_id: str) -> int:
    """The VM's own uid for its jail, derived from its id (stable across restarts)."""
    digits = int.from_bytes(vm_id.encode(), "big")
    return JAIL_UID_BASE + digits % JAIL_UID_COUNT


def guest_cid(vm_id: str) -> int:
    # vsock CIDs 0-2 are reserved; the id makes it unique per VM on this host.
    return 3 + int.from_bytes(vm_id.encode(), "big") % (1 << 30)


def requests(config: VmmConfig, path: Callable[[Path], str], vsock: str) -> list[fc_api.Request]:
    """The whole configuration of a VM, in order, ending with InstanceStart; pure.

    ``path`` maps a host file to the name Firecracker sees (in its jail, or as is).
    """
    run = config.run_dir
    reqs = [
        *telemetry_requests(run, path),
        fc_api.Request(
            "machine-config",
            fc_api.MACHINE_CONFIG,
            {"vcpu_count": config.vcpus, "mem_size_mib": config.memory_mib, "smt": False},
        ),
        fc_api.Request(
            "boot-source",
            fc_api.BOOT_SOURCE,
            {
                "kernel_image_path": path(config.kernel),
                "initrd_path": path(config.initrd),
                "boot_args": config.cmdline,
            },
        ),
    ]
    for disk in config.disks:
        body = {
            "drive_id": disk.serial,
            "path_on_host": path(disk.path),
            "is_root_device": False,
            "is_read_only": disk.read_only,
        }
        reqs.append(fc_api.Request(f"drive {disk.serial}", fc_api.DRIVES, body, disk.serial))
    if config.net is not None:
        body = {"iface_id": "eth0", "host_dev_name": config.net.tap, "guest_mac": config.net.mac}
        reqs.append(fc_api.Request("network", fc_api.NETWORK_INTERFACES, body, "eth0"))
    vsock_body = {"guest_cid": guest_cid(run.name), "uds_path": vsock}
    reqs.append(fc_api.Request("vsock", fc_api.VSOCK, vsock_body))
    reqs.append(fc_api.action("InstanceStart"))
    return reqs
