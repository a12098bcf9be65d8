"""Firecracker's HTTP API over its unix socket, as a table of endpoint resources.

Each resource says its path, the body fields Firecracker's spec
(``src/firecracker/swagger/firecracker.yaml``) requires and allows, and
whether it may only be configured before ``InstanceStart``. Every request
banger sends is checked against that table first, so a typo is banger's
error here rather than a 400 from a VMM half configured; a unit test
checks the table itself against the spec. Errors Firecracker returns become
one ``VmmError`` naming the step and quoting its ``fault_message``.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from banger.errors import VmmError

log = logging.getLogger("banger.vmm")

# sun_path is 108 bytes with its terminating NUL.
MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class Resource:
    path: str  # with ``{id}`` where the resource is one of many (drives, interfaces)
    required: frozenset[str]
    allowed: frozenset[str]
    # Body field that must repeat the path's id (Firecracker rejects a mismatch).
    id_field: str | None = None
    pre_boot: bool = True
    method: str = "PUT"

    def url(self, ident: str | None) -> str:
        if (ident is None) != ("{id}" not in self.path):
            raise VmmError(f"{self.path} needs {'an' if ident is None else 'no'} id")
        return self.path if ident is None else self.path.replace("{id}", ident)

    def check(self, body: dict[str, Any], ident: str | None) -> None:
        missing = sorted(self.required - body.keys())
        unknown = sorted(body.keys() - self.allowed)
        if missing or unknown:
            raise VmmError(
                f"banger built a bad Firecracker request for {self.path}:"
                f" missing {missing or 'nothing'}, unknown {unknown or 'nothing'}",
                hint="this is a bug in banger; please report it",
            )
        if self.id_field is not None and body.get(self.id_field) != ident:
            raise VmmError(f"{self.path}: {self.id_field} must equal the path's id {ident!r}")


def _res(path: str, required: str, optional: str = "", **kw: Any) -> Resource:
    req = frozenset(required.split())
    return Resource(path, req, req | frozenset(optional.split()), **kw)


# The resources banger uses, with the fields of their definitions in the spec.
MACHINE_CONFIG = _res(
    "/machine-config",
    "vcpu_count mem_size_mib",
    "smt track_dirty_pages huge_pages cpu_template",
)
BOOT_SOURCE = _res("/boot-source", "kernel_image_path", "boot_args initrd_path")
DRIVES = _res(
    "/drives/{id}",
    "drive_id is_root_device",
    "partuuid cache_type is_read_only path_on_host rate_limiter io_engine socket",
    id_field="drive_id",
)
NETWORK_INTERFACES = _res(
    "/network-interfaces/{id}",
    "iface_id host_dev_name",
    "guest_mac mtu rx_rate_limiter tx_rate_limiter",
    id_field="iface_id",
)
LOGGER = _res("/logger", "", "level log_path show_level show_log_origin module")
METRICS = _res("/metrics", "metrics_path", "emit_id properties")
SERIAL = _res("/serial", "", "serial_out_path rate_limiter")
VSOCK = _res("/vsock", "guest_cid uds_path", "vsock_id")
ACTIONS = _res("/actions", "action_type", pre_boot=False)
# Pausing, snapshotting and restoring (Firecracker's docs/snapshotting/).
VM_STATE = _res("/vm", "state", pre_boot=False, method="PATCH")
DRIVE_UPDATE = _res(
    "/drives/{id}",
    "drive_id",
    "path_on_host rate_limiter",
    id_field="drive_id",
    pre_boot=False,
    method="PATCH",
)
SNAPSHOT_CREATE = _res(
    "/snapshot/create", "mem_file_path snapshot_path", "snapshot_type", pre_boot=False
)
SNAPSHOT_LOAD = _res(
    "/snapshot/load",
    "snapshot_path",
    "enable_diff_snapshots track_dirty_pages mem_file_path mem_backend resume_vm"
    " network_overrides vsock_override clock_realtime huge_pages",
)

RESOURCES = (
    MACHINE_CONFIG,
    BOOT_SOURCE,
    DRIVES,
    NETWORK_INTERFACES,
    LOGGER,
    METRICS,
    SERIAL,
    VSOCK,
    ACTIONS,
    VM_STATE,
    DRIVE_UPDATE,
    SNAPSHOT_CREATE,
    SNAPSHOT_LOAD,
)
ACTION_TYPES = ("FlushMetrics", "InstanceStart", "SendCtrlAltDel")


@dataclass(frozen=True)
class Request:
    """One API call: a step name for messages, the resource, its id and body."""

    step: str
    resource: Resource
    body: dict[str, Any]
    ident: str | None = None

    @property
    def url(self) -> str:
        return self.resource.url(self.ident)


def action(kind: str) -> Request:
    if kind not in ACTION_TYPES:
        raise VmmError(f"{kind!r} is not a Firecracker action")
    return Request(kind, ACTIONS, {"action_type": kind})


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        dir_fd = None
        try:
            address = str(self._path)
            if len(address.encode()) > MAX_SOCKET_PATH:
                # A jail's socket can lie deeper than sun_path reaches: go
                # through a descriptor of its directory instead.
                dir_fd = os.open(self._path.parent, os.O_PATH | os.O_CLOEXEC)
                address = f"/proc/self/fd/{dir_fd}/{self._path.name}"
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
        self.sock = sock


class ApiClient:
    """Sends checked requests to one Firecracker's API socket."""

    def __init__(self, socket_path: Path, *, vm: str, timeout: float = 10.0) -> None:
        self.socket_path = socket_path
        self.vm = vm
        self.timeout = timeout

    def wait_ready(self, timeout: float, alive: Any = None) -> None:
        """Wait for the socket to answer ``GET /``; ``alive()`` False means give up."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._call("GET", "/", None)
                return
            except OSError:
                pass
            if alive is not None and not alive():
                raise VmmError(
                    f"Firecracker for VM {self.vm!r} exited before its API socket answered",
                    hint="see vmm.log in the VM's directory and `banger doctor`",
                )
            if time.monotonic() >= deadline:
                raise VmmError(
                    f"Firecracker's API socket {self.socket_path} did not answer"
                    f" within {timeout:.0f}s",
                    hint="see vmm.log in the VM's directory",
                )
            time.sleep(0.02)

    def send(self, request: Request) -> None:
        request.resource.check(request.body, request.ident)
        try:
            status, text = self._call(request.resource.method, request.url, request.body)
        except OSError as exc:
            raise VmmError(
                f"VM {self.vm!r}: Firecracker step {request.step} failed: {exc}",
                hint="see vmm.log in the VM's directory",
            ) from exc
        if status >= 300:
            raise VmmError(
                f"VM {self.vm!r}: Firecracker refused {request.step} ({status}):"
                f" {fault_message(text)}",
                hint="see vmm.log in the VM's directory and `banger doctor`",
            )
        log.debug("firecracker %s: %s", request.step, status)

    def info(self) -> dict[str, Any]:
        """``GET /``: the instance's id and state ("Not started", "Running", "Paused")."""
        try:
            status, text = self._call("GET", "/", None)
        except OSError as exc:
            raise VmmError(f"VM {self.vm!r}: Firecracker's API does not answer: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            data = None
        if status >= 300 or not isinstance(data, dict):
            raise VmmError(f"VM {self.vm!r}: Firecracker's GET / answered {status}")
        return data

    def _call(self, method: str, url: str, body: dict[str, Any] | None) -> tuple[int, str]:
        conn = _UnixConnection(self.socket_path, self.timeout)
        try:
            payload = None if body is None else json.dumps(body)
            headers = {"Accept": "application/json"}
            if payload is not None:
                headers["Content-Type"] = "application/json"
            conn.request(method, url, body=payload, headers=headers)
            reply = conn.getresponse()
            return reply.status, reply.read().decode(errors="replace")
        finally:
            conn.close()


def fault_message(text: str) -> str:
    """Firecracker's ``fault_message`` from an error body, one line."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    message = data.get("fault_message") if isinstance(data, dict) else None
    said = str(message) if message else text.strip() or "no reason given"
    return " ".join(said.split())
