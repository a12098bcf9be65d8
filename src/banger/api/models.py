"""Wire models: what the daemon's HTTP API accepts and returns.

The store persists these same shapes, so a field is defined once.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str
    message: str
    hint: str | None = None


class Kernel(BaseModel):
    name: str
    version: str
    dir: str
    vmlinuz: str
    initrd: str
    source: str
    created_at: str
    # The same kernel as an uncompressed ELF, for Firecracker ("" = not derived yet).
    vmlinux: str = ""


class Image(BaseModel):
    name: str
    kernel: str
    rootfs: str
    size_bytes: int
    source: str
    created_at: str
    # A directory whose contents seed each VM's work disk (the image's /root).
    work_seed: str = ""
    # The init the guest runs instead of the image's /sbin/init ("" = the image's own).
    init: str = ""
    # The image's OCI config: entrypoint, cmd, env, working_dir, user.
    config: dict[str, Any] = Field(default_factory=dict)


class VmState(StrEnum):
    CREATING = "creating"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"

    @property
    def holds_network(self) -> bool:
        """The VM runs, or is about to: its tap, NAT and the bridge's rules must stay."""
        return self in (VmState.CREATING, VmState.STARTING, VmState.RUNNING, VmState.STOPPING)


class Vm(BaseModel):
    id: str
    name: str
    image: str
    state: VmState
    vcpus: int
    memory_mib: int
    overlay_bytes: int
    work_disk_bytes: int = 0
    nat: bool = False
    ip: str
    tap: str
    mac: str
    vmm: str
    dir: str
    created_at: str
    pid: int | None = None


class SshTarget(BaseModel):
    """Everything a client needs to hand the terminal to OpenSSH."""

    host: str
    user: str = "root"
    identity_file: str
    known_hosts_file: str
    host_key_alias: str


class OpState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Operation(BaseModel):
    id: str
    kind: str
    target: str
    state: OpState
    stage: str = ""
    error: ErrorBody | None = None
    result: dict[str, Any] | None = None
    created_at: str
    finished_at: str | None = None


class EventType(StrEnum):
    STAGE = "stage"
    INFO = "info"
    DONE = "done"
    FAILED = "failed"


class Event(BaseModel):
    """One line of an operation's progress stream."""

    seq: int
    type: EventType
    stage: str = ""
    message: str = ""
    time: float
    operation: Operation | None = None


class VmCreate(BaseModel):
    name: str | None = None
    image: str | None = None
    vcpus: int | None = Field(default=None, ge=1, le=64)
    memory_mib: int | None = Field(default=None, ge=128, le=1 << 20)
    system_overlay_size: str | None = None
    work_disk_size: str | None = None
    nat: bool = False
    no_start: bool = False
    # None or "auto": the host's choice (see `banger doctor`).
    vmm: Literal["auto", "firecracker", "qemu"] | None = None


class VmSet(BaseModel):
    vcpus: int | None = Field(default=None, ge=1, le=64)
    memory_mib: int | None = Field(default=None, ge=128, le=1 << 20)
    work_disk_size: str | None = None
    nat: bool | None = None


class VmStop(BaseModel):
    timeout: float = Field(default=30.0, ge=0, le=3600)


class VmPrune(BaseModel):
    names: list[str]


class VmKill(BaseModel):
    signal: str = "KILL"


class KernelPull(BaseModel):
    name: str


class ImagePull(BaseModel):
    # A catalog name (see `image catalog`) or an OCI reference.
    ref: str
    # What to call the image; derived from the reference when absent.
    name: str | None = None
    kernel: str | None = None
    size: str | None = None


class ImageRegister(BaseModel):
    name: str
    rootfs: str
    kernel: str | None = None
    init: str | None = None


class ImagePromote(BaseModel):
    # A running VM whose filesystem becomes the image.
    vm: str
    name: str
    size: str | None = None


class KernelImport(BaseModel):
    name: str
    # Either a directory laid out like a kernel package...
    dir: str | None = None
    # ...or the pieces by path.
    kernel: str | None = None
    initrd: str | None = None
    modules: str | None = None


class DaemonStatus(BaseModel):
    version: str
    pid: int
    socket: str
    home: str
    uid: int
    vmm: str
    # Why `auto` picks that VMM on this host.
    vmm_reason: str = ""
    accel: str
    accel_reason: str
