"""Wire models: what the daemon's HTTP API accepts and returns.

The store persists these same shapes, so a field is defined once. Every
model defers building its validator until first use: the CLI imports this
module on each run and reads one or two of these shapes, and building all
of them up front cost more than the rest of a `banger vm list` together.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel as _PydanticModel
from pydantic import ConfigDict, Field


class BaseModel(_PydanticModel):
    model_config = ConfigDict(defer_build=True)


class ErrorBody(BaseModel):
    code: str
    message: str
    hint: str | None = None
    # For a rejected request: the field at fault, so a client can name its own
    # spelling of it (the CLI's flag).
    field: str | None = None


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
    # The version of banger's guest channel the image's agent speaks; 0 = none
    # (an older image, or a registered disk): the daemon reaches it over SSH only.
    channel: int = 0
    # Made by a banger whose guest agent differs from this one's: it boots, but
    # lacks what the current agent does until it is made again (see `image show`).
    agent_outdated: bool = False
    # Its boot snapshots (warm start); filled in by `GET /images/{name}` only.
    boot_snapshots: list[BootSnapshot] = Field(default_factory=list)


class VmState(StrEnum):
    CREATING = "creating"
    STARTING = "starting"
    RUNNING = "running"
    # The VMM runs but the guest's vCPUs are stopped (`vm pause`); memory stays.
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"

    @property
    def holds_network(self) -> bool:
        """The VM runs, or is about to: its tap, NAT and the bridge's rules must stay."""
        return self in (
            VmState.CREATING,
            VmState.STARTING,
            VmState.RUNNING,
            VmState.PAUSED,
            VmState.STOPPING,
        )


class ForwardSource(StrEnum):
    """Who asked for a forward."""

    PUBLISHED = "published"  # -p or `vm port add`: recorded, restored after a daemon restart
    AUTO = "auto"  # --forward-ports auto: follows what listens in the guest


class PortForward(BaseModel):
    """A host address bangerd listens on, relaying each connection to a port of the VM."""

    host_ip: str = "127.0.0.1"
    host_port: int
    guest_port: int
    proto: Literal["tcp"] = "tcp"
    source: ForwardSource
    # Why bangerd is not listening on it now ("" while it is), e.g. a port
    # another program took while the daemon was down.
    error: str = ""
    # The path its connections take: "direct" to the VM's address on the
    # bridge, "agent" through the guest agent (a server on the guest's
    # loopback); "" before a published forward's first connection.
    via: str = ""


class Mount(BaseModel):
    """A host directory shared into the guest (virtio-9p under QEMU)."""

    host_dir: str
    guest_dir: str
    read_only: bool = False
    # The virtio-9p mount tag the guest's /init mounts by.
    tag: str


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
    # "auto": bangerd forwards what listens in the guest to the host's 127.0.0.1.
    forward_ports: Literal["off", "auto"] = "off"
    forwards: list[PortForward] = Field(default_factory=list)
    mounts: list[Mount] = Field(default_factory=list)
    # The snapshot this VM was restored from ("" = booted from its image).
    snapshot: str = ""
    # That snapshot is its image's boot snapshot (warm start), not one a user took.
    boot_snapshot: bool = False


class SnapshotKind(StrEnum):
    # Taken by `vm snapshot create` (or for a fork): listed by `vm snapshot list`.
    USER = "user"
    # Saved by a create right after its guest's agent was ready (warm start);
    # listed by `image show`, gone with its image.
    BOOT = "boot"


class Snapshot(BaseModel):
    """A VM's memory, device state and writable disks at one moment (`vm snapshot create`)."""

    name: str
    # The VM it was taken of, as it was called then.
    vm: str
    image: str
    kernel: str
    vmm: str
    vcpus: int
    memory_mib: int
    overlay_bytes: int
    work_disk_bytes: int
    nat: bool = False
    # What it takes on disk (sparse files count their allocated blocks).
    size_bytes: int
    dir: str
    created_at: str
    # What the guest was booted with; a restore must use the same.
    kernel_path: str
    initrd_path: str
    rootfs: str
    cmdline: str
    mac: str
    ip: str
    vmm_version: str
    banger_version: str
    kind: SnapshotKind = SnapshotKind.USER
    # A boot snapshot's key as JSON: what a create must match to restore it.
    boot_key: str = ""


class BootSnapshot(BaseModel):
    """One of an image's boot snapshots, as `image show` lists them."""

    name: str
    # What a create must match to restore it instead of booting: image, kernel,
    # initramfs, agent build, VMM and its version, vCPUs, memory, disk sizes.
    key: dict[str, Any]
    size_bytes: int
    created_at: str
    dir: str


class SnapshotCreate(BaseModel):
    # Default: NAME-N, the first free N.
    name: str | None = None


class VmFork(BaseModel):
    count: int = Field(default=1, ge=1, le=16)
    # The forks' names: NAME-fork-N by default, one per count.
    names: list[str] | None = None


class VmForked(BaseModel):
    """The result of a `vm fork` operation: the new VMs, in order."""

    vms: list[Vm]


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
    # An exec operation's output (``stream`` 1 stdout, 2 stderr; ``data`` base64).
    OUTPUT = "output"
    # An exec operation's process ended; the operation's result says how (ExecResult).
    EXIT = "exit"
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
    stream: int | None = None
    data: str = ""


class VmCreate(BaseModel):
    name: str | None = None
    image: str | None = None
    vcpus: int | None = Field(default=None, ge=1, le=64)
    memory_mib: int | None = Field(default=None, ge=128, le=1 << 20)
    system_overlay_size: str | None = None
    work_disk_size: str | None = None
    nat: bool = False
    no_start: bool = False
    # Done when the image's own init has finished booting, not only when banger's
    # agent answers (the VM takes commands before its services are up).
    wait_boot: bool = False
    # None or "auto": the host's choice (see `banger doctor`).
    vmm: Literal["auto", "firecracker", "qemu"] | None = None
    # Docker's spelling, parsed by the daemon: "[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp]".
    ports: list[str] = Field(default_factory=list)
    # "HOST_DIR:GUEST_DIR[:ro]", parsed and checked by the daemon.
    mounts: list[str] = Field(default_factory=list)
    # None: the config's forward_ports setting.
    forward_ports: Literal["off", "auto"] | None = None
    # Restore this snapshot instead of booting (its vCPUs, memory and disks).
    from_snapshot: str | None = None
    # Boot even where the image has a boot snapshot that fits (warm start off for this one).
    cold: bool = False


class PortAdd(BaseModel):
    # "[HOST_IP:]HOST_PORT:GUEST_PORT[/tcp]", as `-p` takes it.
    spec: str


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


class Accepted(BaseModel):
    """The answer to a request that starts something and returns at once."""

    status: str


class Names(BaseModel):
    """The names of every VM, image or kernel (``GET /names/{kind}``): what a tab completes."""

    names: list[str]


class CachePrune(BaseModel):
    # One line: `freed 1.2 GiB across 47 blob(s) in DIR` (or `would free ...`).
    message: str


class CatalogEntry(BaseModel):
    """An image or kernel that `image pull` / `kernel pull` knows by name."""

    name: str
    description: str


class HostStats(BaseModel):
    """The VMM process on the host, and the traffic on the VM's tap."""

    pid: int
    cpu_seconds: float
    rss_bytes: int
    read_bytes: int | None = None
    write_bytes: int | None = None
    net_rx_bytes: int | None = None
    net_tx_bytes: int | None = None


class GuestDisk(BaseModel):
    mount: str
    size_bytes: int
    used_bytes: int


class GuestStats(BaseModel):
    mem_total_bytes: int | None = None
    mem_available_bytes: int | None = None
    load: list[float] | None = None
    disks: list[GuestDisk] = Field(default_factory=list)


class VmStats(BaseModel):
    name: str
    host: HostStats
    guest: GuestStats
    # The VMM's own counters where it keeps any (Firecracker's metrics file).
    vmm: dict[str, Any] | None = None


class Port(BaseModel):
    """A listening socket in the guest and an endpoint that reaches it from this host."""

    proto: str
    # "*" for every address (0.0.0.0, :: or both).
    address: str
    port: int
    process: str | None = None
    endpoint: str = ""
    # The host address bangerd forwards to this listener, where it does ("" otherwise).
    forwarded: str = ""
    # The forward's path, as PortForward.via says it.
    via: str = ""


class HealthCheck(BaseModel):
    ok: bool
    pid: int | None = None
    ms: float | None = None
    state: str | None = None
    error: str | None = None


class VmHealth(BaseModel):
    name: str
    state: VmState
    healthy: bool
    checks: dict[str, HealthCheck]


class VmPing(BaseModel):
    name: str
    ip: str
    reachable: bool
    rtt_ms: float | None = None
    error: str | None = None


class VmPruned(BaseModel):
    """The result of a `vm prune` operation."""

    deleted: list[str]


class WorkspaceMode(StrEnum):
    """How much git history a workspace carries into the guest."""

    SHALLOW = "shallow"  # the base commit alone: diffs and new commits work, `git log` stops there
    FULL = "full"  # every ancestor of the base commit


class WorkspaceRecord(BaseModel):
    """What `vm workspace prepare` copied, recorded so export and exec can refer to it."""

    host_path: str
    guest_path: str
    base_commit: str
    # The host working tree and HEAD when it was copied (a git tree id and a
    # commit of the host's repository): `vm exec` compares the checkout with
    # them to warn of drift. With --from REV they are the checkout's, not REV's.
    tree: str
    host_head: str = ""
    mode: WorkspaceMode
    branch: str | None = None
    include_untracked: bool = False


class Workspace(WorkspaceRecord):
    vm: str
    prepared_at: str


class PtySize(BaseModel):
    rows: int = Field(default=24, ge=1, le=1000)
    cols: int = Field(default=80, ge=1, le=1000)
    term: str = "xterm-256color"


class ExecRequest(BaseModel):
    """A command to run in a VM through banger's guest agent (as root)."""

    argv: list[str] = Field(min_length=1)
    # The guest's working directory (default: /root).
    cwd: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    # POST /vms/NAME/exec only: the process's whole stdin, base64 (absent: none).
    # The websocket streams stdin instead.
    stdin: str | None = None
    # A terminal for the process (its stdout and stderr both arrive as stream 1).
    pty: PtySize | None = None
    # Seconds until the process group is killed (the result says timed_out).
    timeout: float | None = Field(default=None, gt=0, le=7 * 86400)


class ExecResult(BaseModel):
    """How an exec ended: an exit code, or the signal that killed it."""

    exit: int | None = None
    signal: int | None = None
    timed_out: bool = False


class TransferRequest(BaseModel):
    """The first message of /vms/NAME/files/ws: which file or tar stream to move."""

    # read: the file at path, out; write: into path; tar_get: names under dir, out
    # as a tar; tar_put: a tar in, extracted into dir.
    op: Literal["read", "write", "tar_get", "tar_put"]
    path: str | None = None
    dir: str | None = None
    names: list[str] = Field(default_factory=list)
    mode: int | None = Field(default=None, ge=0, le=0o7777)
    mkdirs: bool = False


class GuestAccess(BaseModel):
    """How a client reaches inside VM NAME: banger's agent channel, or SSH."""

    vm: str
    # The guest agent answers: exec and files go through /vms/NAME/exec/ws and /files/ws.
    channel: bool
    # The agent's own report (version, agent, caps) when it answers.
    agent: dict[str, Any] | None = None
    # Without the channel: the VM's SSH, which `banger vm ssh` also uses.
    ssh: SshTarget | None = None


class SshConfig(BaseModel):
    """banger's own ssh_config file, one `Host NAME.vm` block per VM."""

    path: str
    text: str


def build_all() -> None:
    """Build every model's validator now, as the daemon does before it serves.

    The daemon uses all of them, and FastAPI wraps them in its own adapters,
    which expect them complete.
    """
    for value in list(globals().values()):
        if isinstance(value, type) and issubclass(value, BaseModel) and value is not BaseModel:
            value.model_rebuild(force=True)
