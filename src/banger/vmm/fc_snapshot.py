"""Firecracker snapshots: the files and the pure request sequence of a restore.

A snapshot is two files Firecracker writes on ``PUT /snapshot/create`` (its
``docs/snapshotting/``): the VM state and the guest memory. A restore is a
fresh Firecracker that loads them paused, is pointed at the new VM's own tap,
vsock and disks, and is resumed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from banger.vmm import fc_api
from banger.vmm.base import VmmConfig

VMSTATE_FILE = "vmstate"
MEMORY_FILE = "memory"
# Firecracker's own log and metrics, in the VM's run directory.
LOG_FILE = "vmm.log"
METRICS_FILE = "metrics.json"


def telemetry_requests(run: Path, path: Callable[[Path], str]) -> list[fc_api.Request]:
    """Firecracker's log and metrics into the VM's run directory: the first requests of
    a boot and of a restore alike (Firecracker takes them only before the VM exists)."""
    return [
        fc_api.Request(
            "logger",
            fc_api.LOGGER,
            {"log_path": path(run / LOG_FILE), "level": "Warning", "show_level": True},
        ),
        fc_api.Request("metrics", fc_api.METRICS, {"metrics_path": path(run / METRICS_FILE)}),
    ]


def restore_requests(
    config: VmmConfig, snapshot: Path, path: Callable[[Path], str], vsock: str
) -> list[fc_api.Request]:
    """Load ``snapshot`` paused, point it at this VM's own tap, vsock and disks, resume; pure.

    The snapshot names the disks of the VM it was taken from: each writable
    one is switched to this VM's copy before the guest runs a single vCPU.
    """
    run = config.run_dir
    load: dict[str, Any] = {
        "snapshot_path": path(snapshot / VMSTATE_FILE),
        "mem_backend": {"backend_type": "File", "backend_path": path(snapshot / MEMORY_FILE)},
        "vsock_override": {"uds_path": vsock},
        "resume_vm": False,
    }
    if config.net is not None:
        load["network_overrides"] = [{"iface_id": "eth0", "host_dev_name": config.net.tap}]
    reqs = [
        *telemetry_requests(run, path),
        fc_api.Request("snapshot load", fc_api.SNAPSHOT_LOAD, load),
    ]
    for disk in config.disks:
        if not disk.read_only:
            body = {"drive_id": disk.serial, "path_on_host": path(disk.path)}
            reqs.append(
                fc_api.Request(f"drive {disk.serial}", fc_api.DRIVE_UPDATE, body, disk.serial)
            )
    reqs.append(fc_api.Request("resume", fc_api.VM_STATE, {"state": "Resumed"}))
    return reqs
