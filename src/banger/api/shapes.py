"""The wire models as plain classes, for clients: generated, do not edit.

Made by ``python -m banger.api.gen_shapes`` from ``banger.api.models``, the
one definition of each shape. Importing this costs next to nothing (no
pydantic, not even dataclasses); the daemon has validated with the pydantic
models everything a client reads.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, ClassVar, TypeVar

R = TypeVar("R")


def _opt(f: Callable[[Any], R]) -> Callable[[Any], R | None]:
    return lambda v: None if v is None else f(v)


def _list(f: Callable[[Any], R]) -> Callable[[Any], list[R]]:
    return lambda v: [f(i) for i in v]


def _dict(f: Callable[[Any], R]) -> Callable[[Any], dict[str, R]]:
    return lambda v: {k: f(i) for k, i in v.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    to_json = getattr(value, "to_json", None)
    return to_json() if to_json is not None else value


class _Shape:
    __slots__ = ()
    _fields: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        """The shape as JSON-ready data, as the daemon sends it."""
        return {name: _plain(getattr(self, name)) for name in self._fields}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, _Shape) or type(other) is not type(self):
            return NotImplemented
        return self.to_json() == other.to_json()

    # Equal by value and mutable, as a dataclass: not hashable.
    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({shown})"


class VmState(StrEnum):
    CREATING = "creating"
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    STOPPED = "stopped"
    ERROR = "error"


class ForwardSource(StrEnum):
    PUBLISHED = "published"
    AUTO = "auto"


class SnapshotKind(StrEnum):
    USER = "user"
    BOOT = "boot"


class OpState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class EventType(StrEnum):
    STAGE = "stage"
    INFO = "info"
    OUTPUT = "output"
    EXIT = "exit"
    DONE = "done"
    FAILED = "failed"


class WorkspaceMode(StrEnum):
    SHALLOW = "shallow"
    FULL = "full"


class ErrorBody(_Shape):
    _fields = (
        "code",
        "message",
        "hint",
        "field",
    )
    __slots__ = _fields
    code: str
    message: str
    hint: str | None
    field: str | None

    def __init__(
        self,
        *,
        code: str,
        message: str,
        hint: str | None = None,
        field: str | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.hint = hint
        self.field = field

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ErrorBody:
        return cls(
            code=d["code"],
            message=d["message"],
            hint=d.get("hint"),
            field=d.get("field"),
        )


class Kernel(_Shape):
    _fields = (
        "name",
        "version",
        "dir",
        "vmlinuz",
        "initrd",
        "source",
        "created_at",
        "vmlinux",
    )
    __slots__ = _fields
    name: str
    version: str
    dir: str
    vmlinuz: str
    initrd: str
    source: str
    created_at: str
    vmlinux: str

    def __init__(
        self,
        *,
        name: str,
        version: str,
        dir: str,
        vmlinuz: str,
        initrd: str,
        source: str,
        created_at: str,
        vmlinux: str = "",
    ) -> None:
        self.name = name
        self.version = version
        self.dir = dir
        self.vmlinuz = vmlinuz
        self.initrd = initrd
        self.source = source
        self.created_at = created_at
        self.vmlinux = vmlinux

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Kernel:
        return cls(
            name=d["name"],
            version=d["version"],
            dir=d["dir"],
            vmlinuz=d["vmlinuz"],
            initrd=d["initrd"],
            source=d["source"],
            created_at=d["created_at"],
            vmlinux=d.get("vmlinux", ""),
        )


class Image(_Shape):
    _fields = (
        "name",
        "kernel",
        "rootfs",
        "size_bytes",
        "source",
        "created_at",
        "work_seed",
        "init",
        "config",
        "channel",
        "agent_outdated",
        "boot_snapshots",
    )
    __slots__ = _fields
    name: str
    kernel: str
    rootfs: str
    size_bytes: int
    source: str
    created_at: str
    work_seed: str
    init: str
    config: dict[str, Any]
    channel: int
    agent_outdated: bool
    boot_snapshots: list[BootSnapshot]

    def __init__(
        self,
        *,
        name: str,
        kernel: str,
        rootfs: str,
        size_bytes: int,
        source: str,
        created_at: str,
        work_seed: str = "",
        init: str = "",
        config: dict[str, Any] | None = None,
        channel: int = 0,
        agent_outdated: bool = False,
        boot_snapshots: list[BootSnapshot] | None = None,
    ) -> None:
        self.name = name
        self.kernel = kernel
        self.rootfs = rootfs
        self.size_bytes = size_bytes
        self.source = source
        self.created_at = created_at
        self.work_seed = work_seed
        self.init = init
        self.config = dict() if config is None else config
        self.channel = channel
        self.agent_outdated = agent_outdated
        self.boot_snapshots = list() if boot_snapshots is None else boot_snapshots

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Image:
        return cls(
            name=d["name"],
            kernel=d["kernel"],
            rootfs=d["rootfs"],
            size_bytes=d["size_bytes"],
            source=d["source"],
            created_at=d["created_at"],
            work_seed=d.get("work_seed", ""),
            init=d.get("init", ""),
            config=d.get("config", dict()),
            channel=d.get("channel", 0),
            agent_outdated=d.get("agent_outdated", False),
            boot_snapshots=_list(BootSnapshot.from_json)(d.get("boot_snapshots", list())),
        )


class PortForward(_Shape):
    """A host address bangerd listens on, relaying each connection to a port of the VM."""

    _fields = (
        "host_ip",
        "host_port",
        "guest_port",
        "proto",
        "source",
        "error",
        "via",
    )
    __slots__ = _fields
    host_ip: str
    host_port: int
    guest_port: int
    proto: str
    source: ForwardSource
    error: str
    via: str

    def __init__(
        self,
        *,
        host_ip: str = "127.0.0.1",
        host_port: int,
        guest_port: int,
        proto: str = "tcp",
        source: ForwardSource,
        error: str = "",
        via: str = "",
    ) -> None:
        self.host_ip = host_ip
        self.host_port = host_port
        self.guest_port = guest_port
        self.proto = proto
        self.source = source
        self.error = error
        self.via = via

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PortForward:
        return cls(
            host_ip=d.get("host_ip", "127.0.0.1"),
            host_port=d["host_port"],
            guest_port=d["guest_port"],
            proto=d.get("proto", "tcp"),
            source=ForwardSource(d["source"]),
            error=d.get("error", ""),
            via=d.get("via", ""),
        )


class Mount(_Shape):
    """A host directory shared into the guest (virtio-9p under QEMU)."""

    _fields = (
        "host_dir",
        "guest_dir",
        "read_only",
        "tag",
    )
    __slots__ = _fields
    host_dir: str
    guest_dir: str
    read_only: bool
    tag: str

    def __init__(
        self,
        *,
        host_dir: str,
        guest_dir: str,
        read_only: bool = False,
        tag: str,
    ) -> None:
        self.host_dir = host_dir
        self.guest_dir = guest_dir
        self.read_only = read_only
        self.tag = tag

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Mount:
        return cls(
            host_dir=d["host_dir"],
            guest_dir=d["guest_dir"],
            read_only=d.get("read_only", False),
            tag=d["tag"],
        )


class Vm(_Shape):
    _fields = (
        "id",
        "name",
        "image",
        "state",
        "vcpus",
        "memory_mib",
        "overlay_bytes",
        "work_disk_bytes",
        "nat",
        "ip",
        "tap",
        "mac",
        "vmm",
        "dir",
        "created_at",
        "pid",
        "forward_ports",
        "forwards",
        "mounts",
        "snapshot",
        "boot_snapshot",
    )
    __slots__ = _fields
    id: str
    name: str
    image: str
    state: VmState
    vcpus: int
    memory_mib: int
    overlay_bytes: int
    work_disk_bytes: int
    nat: bool
    ip: str
    tap: str
    mac: str
    vmm: str
    dir: str
    created_at: str
    pid: int | None
    forward_ports: str
    forwards: list[PortForward]
    mounts: list[Mount]
    snapshot: str
    boot_snapshot: bool

    def __init__(
        self,
        *,
        id: str,
        name: str,
        image: str,
        state: VmState,
        vcpus: int,
        memory_mib: int,
        overlay_bytes: int,
        work_disk_bytes: int = 0,
        nat: bool = False,
        ip: str,
        tap: str,
        mac: str,
        vmm: str,
        dir: str,
        created_at: str,
        pid: int | None = None,
        forward_ports: str = "off",
        forwards: list[PortForward] | None = None,
        mounts: list[Mount] | None = None,
        snapshot: str = "",
        boot_snapshot: bool = False,
    ) -> None:
        self.id = id
        self.name = name
        self.image = image
        self.state = state
        self.vcpus = vcpus
        self.memory_mib = memory_mib
        self.overlay_bytes = overlay_bytes
        self.work_disk_bytes = work_disk_bytes
        self.nat = nat
        self.ip = ip
        self.tap = tap
        self.mac = mac
        self.vmm = vmm
        self.dir = dir
        self.created_at = created_at
        self.pid = pid
        self.forward_ports = forward_ports
        self.forwards = list() if forwards is None else forwards
        self.mounts = list() if mounts is None else mounts
        self.snapshot = snapshot
        self.boot_snapshot = boot_snapshot

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Vm:
        return cls(
            id=d["id"],
            name=d["name"],
            image=d["image"],
            state=VmState(d["state"]),
            vcpus=d["vcpus"],
            memory_mib=d["memory_mib"],
            overlay_bytes=d["overlay_bytes"],
            work_disk_bytes=d.get("work_disk_bytes", 0),
            nat=d.get("nat", False),
            ip=d["ip"],
            tap=d["tap"],
            mac=d["mac"],
            vmm=d["vmm"],
            dir=d["dir"],
            created_at=d["created_at"],
            pid=d.get("pid"),
            forward_ports=d.get("forward_ports", "off"),
            forwards=_list(PortForward.from_json)(d.get("forwards", list())),
            mounts=_list(Mount.from_json)(d.get("mounts", list())),
            snapshot=d.get("snapshot", ""),
            boot_snapshot=d.get("boot_snapshot", False),
        )


class Snapshot(_Shape):
    """A VM's memory, device state and writable disks at one moment (`vm snapshot create`)."""

    _fields = (
        "name",
        "vm",
        "image",
        "kernel",
        "vmm",
        "vcpus",
        "memory_mib",
        "overlay_bytes",
        "work_disk_bytes",
        "nat",
        "size_bytes",
        "dir",
        "created_at",
        "kernel_path",
        "initrd_path",
        "rootfs",
        "cmdline",
        "mac",
        "ip",
        "vmm_version",
        "banger_version",
        "kind",
        "boot_key",
    )
    __slots__ = _fields
    name: str
    vm: str
    image: str
    kernel: str
    vmm: str
    vcpus: int
    memory_mib: int
    overlay_bytes: int
    work_disk_bytes: int
    nat: bool
    size_bytes: int
    dir: str
    created_at: str
    kernel_path: str
    initrd_path: str
    rootfs: str
    cmdline: str
    mac: str
    ip: str
    vmm_version: str
    banger_version: str
    kind: SnapshotKind
    boot_key: str

    def __init__(
        self,
        *,
        name: str,
        vm: str,
        image: str,
        kernel: str,
        vmm: str,
        vcpus: int,
        memory_mib: int,
        overlay_bytes: int,
        work_disk_bytes: int,
        nat: bool = False,
        size_bytes: int,
        dir: str,
        created_at: str,
        kernel_path: str,
        initrd_path: str,
        rootfs: str,
        cmdline: str,
        mac: str,
        ip: str,
        vmm_version: str,
        banger_version: str,
        kind: SnapshotKind = SnapshotKind.USER,
        boot_key: str = "",
    ) -> None:
        self.name = name
        self.vm = vm
        self.image = image
        self.kernel = kernel
        self.vmm = vmm
        self.vcpus = vcpus
        self.memory_mib = memory_mib
        self.overlay_bytes = overlay_bytes
        self.work_disk_bytes = work_disk_bytes
        self.nat = nat
        self.size_bytes = size_bytes
        self.dir = dir
        self.created_at = created_at
        self.kernel_path = kernel_path
        self.initrd_path = initrd_path
        self.rootfs = rootfs
        self.cmdline = cmdline
        self.mac = mac
        self.ip = ip
        self.vmm_version = vmm_version
        self.banger_version = banger_version
        self.kind = kind
        self.boot_key = boot_key

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Snapshot:
        return cls(
            name=d["name"],
            vm=d["vm"],
            image=d["image"],
            kernel=d["kernel"],
            vmm=d["vmm"],
            vcpus=d["vcpus"],
            memory_mib=d["memory_mib"],
            overlay_bytes=d["overlay_bytes"],
            work_disk_bytes=d["work_disk_bytes"],
            nat=d.get("nat", False),
            size_bytes=d["size_bytes"],
            dir=d["dir"],
            created_at=d["created_at"],
            kernel_path=d["kernel_path"],
            initrd_path=d["initrd_path"],
            rootfs=d["rootfs"],
            cmdline=d["cmdline"],
            mac=d["mac"],
            ip=d["ip"],
            vmm_version=d["vmm_version"],
            banger_version=d["banger_version"],
            kind=SnapshotKind(d.get("kind", SnapshotKind.USER)),
            boot_key=d.get("boot_key", ""),
        )


class BootSnapshot(_Shape):
    """One of an image's boot snapshots, as `image show` lists them."""

    _fields = (
        "name",
        "key",
        "size_bytes",
        "created_at",
        "dir",
    )
    __slots__ = _fields
    name: str
    key: dict[str, Any]
    size_bytes: int
    created_at: str
    dir: str

    def __init__(
        self,
        *,
        name: str,
        key: dict[str, Any],
        size_bytes: int,
        created_at: str,
        dir: str,
    ) -> None:
        self.name = name
        self.key = key
        self.size_bytes = size_bytes
        self.created_at = created_at
        self.dir = dir

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BootSnapshot:
        return cls(
            name=d["name"],
            key=d["key"],
            size_bytes=d["size_bytes"],
            created_at=d["created_at"],
            dir=d["dir"],
        )


class SnapshotCreate(_Shape):
    _fields = ("name",)
    __slots__ = _fields
    name: str | None

    def __init__(
        self,
        *,
        name: str | None = None,
    ) -> None:
        self.name = name

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SnapshotCreate:
        return cls(
            name=d.get("name"),
        )


class VmFork(_Shape):
    _fields = (
        "count",
        "names",
    )
    __slots__ = _fields
    count: int
    names: list[str] | None

    def __init__(
        self,
        *,
        count: int = 1,
        names: list[str] | None = None,
    ) -> None:
        self.count = count
        self.names = names

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VmFork:
        return cls(
            count=d.get("count", 1),
            names=d.get("names"),
        )


class VmForked(_Shape):
    """The result of a `vm fork` operation: the new VMs, in order."""

    _fields = ("vms",)
    __slots__ = _fields
    vms: list[Vm]

    def __init__(
        self,
        *,
        vms: list[Vm],
    ) -> None:
        self.vms = vms

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VmForked:
        return cls(
            vms=_list(Vm.from_json)(d["vms"]),
        )


class SshTarget(_Shape):
    """Everything a client needs to hand the terminal to OpenSSH."""

    _fields = (
        "host",
        "user",
        "identity_file",
        "known_hosts_file",
        "host_key_alias",
    )
    __slots__ = _fields
    host: str
    user: str
    identity_file: str
    known_hosts_file: str
    host_key_alias: str

    def __init__(
        self,
        *,
        host: str,
        user: str = "root",
        identity_file: str,
        known_hosts_file: str,
        host_key_alias: str,
    ) -> None:
        self.host = host
        self.user = user
        self.identity_file = identity_file
        self.known_hosts_file = known_hosts_file
        self.host_key_alias = host_key_alias

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SshTarget:
        return cls(
            host=d["host"],
            user=d.get("user", "root"),
            identity_file=d["identity_file"],
            known_hosts_file=d["known_hosts_file"],
            host_key_alias=d["host_key_alias"],
        )


class Operation(_Shape):
    _fields = (
        "id",
        "kind",
        "target",
        "state",
        "stage",
        "error",
        "result",
        "created_at",
        "finished_at",
    )
    __slots__ = _fields
    id: str
    kind: str
    target: str
    state: OpState
    stage: str
    error: ErrorBody | None
    result: dict[str, Any] | None
    created_at: str
    finished_at: str | None

    def __init__(
        self,
        *,
        id: str,
        kind: str,
        target: str,
        state: OpState,
        stage: str = "",
        error: ErrorBody | None = None,
        result: dict[str, Any] | None = None,
        created_at: str,
        finished_at: str | None = None,
    ) -> None:
        self.id = id
        self.kind = kind
        self.target = target
        self.state = state
        self.stage = stage
        self.error = error
        self.result = result
        self.created_at = created_at
        self.finished_at = finished_at

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Operation:
        return cls(
            id=d["id"],
            kind=d["kind"],
            target=d["target"],
            state=OpState(d["state"]),
            stage=d.get("stage", ""),
            error=_opt(ErrorBody.from_json)(d.get("error")),
            result=d.get("result"),
            created_at=d["created_at"],
            finished_at=d.get("finished_at"),
        )


class Event(_Shape):
    """One line of an operation's progress stream."""

    _fields = (
        "seq",
        "type",
        "stage",
        "message",
        "time",
        "operation",
        "stream",
        "data",
    )
    __slots__ = _fields
    seq: int
    type: EventType
    stage: str
    message: str
    time: float
    operation: Operation | None
    stream: int | None
    data: str

    def __init__(
        self,
        *,
        seq: int,
        type: EventType,
        stage: str = "",
        message: str = "",
        time: float,
        operation: Operation | None = None,
        stream: int | None = None,
        data: str = "",
    ) -> None:
        self.seq = seq
        self.type = type
        self.stage = stage
        self.message = message
        self.time = time
        self.operation = operation
        self.stream = stream
        self.data = data

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Event:
        return cls(
            seq=d["seq"],
            type=EventType(d["type"]),
            stage=d.get("stage", ""),
            message=d.get("message", ""),
            time=d["time"],
            operation=_opt(Operation.from_json)(d.get("operation")),
            stream=d.get("stream"),
            data=d.get("data", ""),
        )


class VmCreate(_Shape):
    _fields = (
        "name",
        "image",
        "vcpus",
        "memory_mib",
        "system_overlay_size",
        "work_disk_size",
        "nat",
        "no_start",
        "wait_boot",
        "vmm",
        "ports",
        "mounts",
        "forward_ports",
        "from_snapshot",
        "cold",
    )
    __slots__ = _fields
    name: str | None
    image: str | None
    vcpus: int | None
    memory_mib: int | None
    system_overlay_size: str | None
    work_disk_size: str | None
    nat: bool
    no_start: bool
    wait_boot: bool
    vmm: str | None
    ports: list[str]
    mounts: list[str]
    forward_ports: str | None
    from_snapshot: str | None
    cold: bool

    def __init__(
        self,
        *,
        name: str | None = None,
        image: str | None = None,
        vcpus: int | None = None,
        memory_mib: int | None = None,
        system_overlay_size: str | None = None,
        work_disk_size: str | None = None,
        nat: bool = False,
        no_start: bool = False,
        wait_boot: bool = False,
        vmm: str | None = None,
        ports: list[str] | None = None,
        mounts: list[str] | None = None,
        forward_ports: str | None = None,
        from_snapshot: str | None = None,
        cold: bool = False,
    ) -> None:
        self.name = name
        self.image = image
        self.vcpus = vcpus
        self.memory_mib = memory_mib
        self.system_overlay_size = system_overlay_size
        self.work_disk_size = work_disk_size
        self.nat = nat
        self.no_start = no_start
        self.wait_boot = wait_boot
        self.vmm = vmm
        self.ports = list() if ports is None else ports
        self.mounts = list() if mounts is None else mounts
        self.forward_ports = forward_ports
        self.from_snapshot = from_snapshot
        self.cold = cold

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VmCreate:
        return cls(
            name=d.get("name"),
            image=d.get("image"),
            vcpus=d.get("vcpus"),
            memory_mib=d.get("memory_mib"),
            system_overlay_size=d.get("system_overlay_size"),
            work_disk_size=d.get("work_disk_size"),
            nat=d.get("nat", False),
            no_start=d.get("no_start", False),
            wait_boot=d.get("wait_boot", False),
            vmm=d.get("vmm"),
            ports=d.get("ports", list()),
            mounts=d.get("mounts", list()),
            forward_ports=d.get("forward_ports"),
            from_snapshot=d.get("from_snapshot"),
            cold=d.get("cold", False),
        )


class PortAdd(_Shape):
    _fields = ("spec",)
    __slots__ = _fields
    spec: str

    def __init__(
        self,
        *,
        spec: str,
    ) -> None:
        self.spec = spec

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PortAdd:
        return cls(
            spec=d["spec"],
        )


class VmSet(_Shape):
    _fields = (
        "vcpus",
        "memory_mib",
        "work_disk_size",
        "nat",
    )
    __slots__ = _fields
    vcpus: int | None
    memory_mib: int | None
    work_disk_size: str | None
    nat: bool | None

    def __init__(
        self,
        *,
        vcpus: int | None = None,
        memory_mib: int | None = None,
        work_disk_size: str | None = None,
        nat: bool | None = None,
    ) -> None:
        self.vcpus = vcpus
        self.memory_mib = memory_mib
        self.work_disk_size = work_disk_size
        self.nat = nat

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VmSet:
        return cls(
            vcpus=d.get("vcpus"),
            memory_mib=d.get("memory_mib"),
            work_disk_size=d.get("work_disk_size"),
            nat=d.get("nat"),
        )


class VmStop(_Shape):
    _fields = ("timeout",)
    __slots__ = _fields
    timeout: float

    def __init__(
        self,
        *,
        timeout: float = 30.0,
    ) -> None:
        self.timeout = timeout

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VmStop:
        return cls(
            timeout=d.get("timeout", 30.0),
        )


class VmPrune(_Shape):
    _fields = ("names",)
    __slots__ = _fields
    names: list[str]

    def __init__(
        self,
        *,
        names: list[str],
    ) -> None:
        self.names = names

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VmPrune:
        return cls(
            names=d["names"],
        )


class VmKill(_Shape):
    _fields = ("signal",)
    __slots__ = _fields
    signal: str

    def __init__(
        self,
        *,
        signal: str = "KILL",
    ) -> None:
        self.signal = signal

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VmKill:
        return cls(
            signal=d.get("signal", "KILL"),
        )


class KernelPull(_Shape):
    _fields = ("name",)
    __slots__ = _fields
    name: str

    def __init__(
        self,
        *,
        name: str,
    ) -> None:
        self.name = name

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KernelPull:
        return cls(
            name=d["name"],
        )


class ImagePull(_Shape):
    _fields = (
        "ref",
        "name",
        "kernel",
        "size",
    )
    __slots__ = _fields
    ref: str
    name: str | None
    kernel: str | None
    size: str | None

    def __init__(
        self,
        *,
        ref: str,
        name: str | None = None,
        kernel: str | None = None,
        size: str | None = None,
    ) -> None:
        self.ref = ref
        self.name = name
        self.kernel = kernel
        self.size = size

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ImagePull:
        return cls(
            ref=d["ref"],
            name=d.get("name"),
            kernel=d.get("kernel"),
            size=d.get("size"),
        )


class ImageRegister(_Shape):
    _fields = (
        "name",
        "rootfs",
        "kernel",
        "init",
    )
    __slots__ = _fields
    name: str
    rootfs: str
    kernel: str | None
    init: str | None

    def __init__(
        self,
        *,
        name: str,
        rootfs: str,
        kernel: str | None = None,
        init: str | None = None,
    ) -> None:
        self.name = name
        self.rootfs = rootfs
        self.kernel = kernel
        self.init = init

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ImageRegister:
        return cls(
            name=d["name"],
            rootfs=d["rootfs"],
            kernel=d.get("kernel"),
            init=d.get("init"),
        )


class ImagePromote(_Shape):
    _fields = (
        "vm",
        "name",
        "size",
    )
    __slots__ = _fields
    vm: str
    name: str
    size: str | None

    def __init__(
        self,
        *,
        vm: str,
        name: str,
        size: str | None = None,
    ) -> None:
        self.vm = vm
        self.name = name
        self.size = size

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ImagePromote:
        return cls(
            vm=d["vm"],
            name=d["name"],
            size=d.get("size"),
        )


class KernelImport(_Shape):
    _fields = (
        "name",
        "dir",
        "kernel",
        "initrd",
        "modules",
    )
    __slots__ = _fields
    name: str
    dir: str | None
    kernel: str | None
    initrd: str | None
    modules: str | None

    def __init__(
        self,
        *,
        name: str,
        dir: str | None = None,
        kernel: str | None = None,
        initrd: str | None = None,
        modules: str | None = None,
    ) -> None:
        self.name = name
        self.dir = dir
        self.kernel = kernel
        self.initrd = initrd
        self.modules = modules

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KernelImport:
        return cls(
            name=d["name"],
            dir=d.get("dir"),
            kernel=d.get("kernel"),
            initrd=d.get("initrd"),
            modules=d.get("modules"),
        )


class DaemonStatus(_Shape):
    _fields = (
        "version",
        "pid",
        "socket",
        "home",
        "uid",
        "vmm",
        "vmm_reason",
        "accel",
        "accel_reason",
    )
    __slots__ = _fields
    version: str
    pid: int
    socket: str
    home: str
    uid: int
    vmm: str
    vmm_reason: str
    accel: str
    accel_reason: str

    def __init__(
        self,
        *,
        version: str,
        pid: int,
        socket: str,
        home: str,
        uid: int,
        vmm: str,
        vmm_reason: str = "",
        accel: str,
        accel_reason: str,
    ) -> None:
        self.version = version
        self.pid = pid
        self.socket = socket
        self.home = home
        self.uid = uid
        self.vmm = vmm
        self.vmm_reason = vmm_reason
        self.accel = accel
        self.accel_reason = accel_reason

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DaemonStatus:
        return cls(
            version=d["version"],
            pid=d["pid"],
            socket=d["socket"],
            home=d["home"],
            uid=d["uid"],
            vmm=d["vmm"],
            vmm_reason=d.get("vmm_reason", ""),
            accel=d["accel"],
            accel_reason=d["accel_reason"],
        )


class Accepted(_Shape):
    """The answer to a request that starts something and returns at once."""

    _fields = ("status",)
    __slots__ = _fields
    status: str

    def __init__(
        self,
        *,
        status: str,
    ) -> None:
        self.status = status

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Accepted:
        return cls(
            status=d["status"],
        )


class Names(_Shape):
    """The names of every VM, image or kernel (``GET /names/{kind}``): what a tab completes."""

    _fields = ("names",)
    __slots__ = _fields
    names: list[str]

    def __init__(
        self,
        *,
        names: list[str],
    ) -> None:
        self.names = names

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Names:
        return cls(
            names=d["names"],
        )


class CachePrune(_Shape):
    _fields = ("message",)
    __slots__ = _fields
    message: str

    def __init__(
        self,
        *,
        message: str,
    ) -> None:
        self.message = message

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CachePrune:
        return cls(
            message=d["message"],
        )


class CatalogEntry(_Shape):
    """An image or kernel that `image pull` / `kernel pull` knows by name."""

    _fields = (
        "name",
        "description",
    )
    __slots__ = _fields
    name: str
    description: str

    def __init__(
        self,
        *,
        name: str,
        description: str,
    ) -> None:
        self.name = name
        self.description = description

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> CatalogEntry:
        return cls(
            name=d["name"],
            description=d["description"],
        )


class HostStats(_Shape):
    """The VMM process on the host, and the traffic on the VM's tap."""

    _fields = (
        "pid",
        "cpu_seconds",
        "rss_bytes",
        "read_bytes",
        "write_bytes",
        "net_rx_bytes",
        "net_tx_bytes",
    )
    __slots__ = _fields
    pid: int
    cpu_seconds: float
    rss_bytes: int
    read_bytes: int | None
    write_bytes: int | None
    net_rx_bytes: int | None
    net_tx_bytes: int | None

    def __init__(
        self,
        *,
        pid: int,
        cpu_seconds: float,
        rss_bytes: int,
        read_bytes: int | None = None,
        write_bytes: int | None = None,
        net_rx_bytes: int | None = None,
        net_tx_bytes: int | None = None,
    ) -> None:
        self.pid = pid
        self.cpu_seconds = cpu_seconds
        self.rss_bytes = rss_bytes
        self.read_bytes = read_bytes
        self.write_bytes = write_bytes
        self.net_rx_bytes = net_rx_bytes
        self.net_tx_bytes = net_tx_bytes

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> HostStats:
        return cls(
            pid=d["pid"],
            cpu_seconds=d["cpu_seconds"],
            rss_bytes=d["rss_bytes"],
            read_bytes=d.get("read_bytes"),
            write_bytes=d.get("write_bytes"),
            net_rx_bytes=d.get("net_rx_bytes"),
            net_tx_bytes=d.get("net_tx_bytes"),
        )


class GuestDisk(_Shape):
    _fields = (
        "mount",
        "size_bytes",
        "used_bytes",
    )
    __slots__ = _fields
    mount: str
    size_bytes: int
    used_bytes: int

    def __init__(
        self,
        *,
        mount: str,
        size_bytes: int,
        used_bytes: int,
    ) -> None:
        self.mount = mount
        self.size_bytes = size_bytes
        self.used_bytes = used_bytes

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GuestDisk:
        return cls(
            mount=d["mount"],
            size_bytes=d["size_bytes"],
            used_bytes=d["used_bytes"],
        )


class GuestStats(_Shape):
    _fields = (
        "mem_total_bytes",
        "mem_available_bytes",
        "load",
        "disks",
    )
    __slots__ = _fields
    mem_total_bytes: int | None
    mem_available_bytes: int | None
    load: list[float] | None
    disks: list[GuestDisk]

    def __init__(
        self,
        *,
        mem_total_bytes: int | None = None,
        mem_available_bytes: int | None = None,
        load: list[float] | None = None,
        disks: list[GuestDisk] | None = None,
    ) -> None:
        self.mem_total_bytes = mem_total_bytes
        self.mem_available_bytes = mem_available_bytes
        self.load = load
        self.disks = list() if disks is None else disks

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GuestStats:
        return cls(
            mem_total_bytes=d.get("mem_total_bytes"),
            mem_available_bytes=d.get("mem_available_bytes"),
            load=d.get("load"),
            disks=_list(GuestDisk.from_json)(d.get("disks", list())),
        )


class VmStats(_Shape):
    _fields = (
        "name",
        "host",
        "guest",
        "vmm",
    )
    __slots__ = _fields
    name: str
    host: HostStats
    guest: GuestStats
    vmm: dict[str, Any] | None

    def __init__(
        self,
        *,
        name: str,
        host: HostStats,
        guest: GuestStats,
        vmm: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.host = host
        self.guest = guest
        self.vmm = vmm

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VmStats:
        return cls(
            name=d["name"],
            host=HostStats.from_json(d["host"]),
            guest=GuestStats.from_json(d["guest"]),
            vmm=d.get("vmm"),
        )


class Port(_Shape):
    """A listening socket in the guest and an endpoint that reaches it from this host."""

    _fields = (
        "proto",
        "address",
        "port",
        "process",
        "endpoint",
        "forwarded",
        "via",
    )
    __slots__ = _fields
    proto: str
    address: str
    port: int
    process: str | None
    endpoint: str
    forwarded: str
    via: str

    def __init__(
        self,
        *,
        proto: str,
        address: str,
        port: int,
        process: str | None = None,
        endpoint: str = "",
        forwarded: str = "",
        via: str = "",
    ) -> None:
        self.proto = proto
        self.address = address
        self.port = port
        self.process = process
        self.endpoint = endpoint
        self.forwarded = forwarded
        self.via = via

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Port:
        return cls(
            proto=d["proto"],
            address=d["address"],
            port=d["port"],
            process=d.get("process"),
            endpoint=d.get("endpoint", ""),
            forwarded=d.get("forwarded", ""),
            via=d.get("via", ""),
        )


class HealthCheck(_Shape):
    _fields = (
        "ok",
        "pid",
        "ms",
        "state",
        "error",
    )
    __slots__ = _fields
    ok: bool
    pid: int | None
    ms: float | None
    state: str | None
    error: str | None

    def __init__(
        self,
        *,
        ok: bool,
        pid: int | None = None,
        ms: float | None = None,
        state: str | None = None,
        error: str | None = None,
    ) -> None:
        self.ok = ok
        self.pid = pid
        self.ms = ms
        self.state = state
        self.error = error

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> HealthCheck:
        return cls(
            ok=d["ok"],
            pid=d.get("pid"),
            ms=d.get("ms"),
            state=d.get("state"),
            error=d.get("error"),
        )


class VmHealth(_Shape):
    _fields = (
        "name",
        "state",
        "healthy",
        "checks",
    )
    __slots__ = _fields
    name: str
    state: VmState
    healthy: bool
    checks: dict[str, HealthCheck]

    def __init__(
        self,
        *,
        name: str,
        state: VmState,
        healthy: bool,
        checks: dict[str, HealthCheck],
    ) -> None:
        self.name = name
        self.state = state
        self.healthy = healthy
        self.checks = checks

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VmHealth:
        return cls(
            name=d["name"],
            state=VmState(d["state"]),
            healthy=d["healthy"],
            checks=_dict(HealthCheck.from_json)(d["checks"]),
        )


class VmPing(_Shape):
    _fields = (
        "name",
        "ip",
        "reachable",
        "rtt_ms",
        "error",
    )
    __slots__ = _fields
    name: str
    ip: str
    reachable: bool
    rtt_ms: float | None
    error: str | None

    def __init__(
        self,
        *,
        name: str,
        ip: str,
        reachable: bool,
        rtt_ms: float | None = None,
        error: str | None = None,
    ) -> None:
        self.name = name
        self.ip = ip
        self.reachable = reachable
        self.rtt_ms = rtt_ms
        self.error = error

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VmPing:
        return cls(
            name=d["name"],
            ip=d["ip"],
            reachable=d["reachable"],
            rtt_ms=d.get("rtt_ms"),
            error=d.get("error"),
        )


class VmPruned(_Shape):
    """The result of a `vm prune` operation."""

    _fields = ("deleted",)
    __slots__ = _fields
    deleted: list[str]

    def __init__(
        self,
        *,
        deleted: list[str],
    ) -> None:
        self.deleted = deleted

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> VmPruned:
        return cls(
            deleted=d["deleted"],
        )


class WorkspaceRecord(_Shape):
    """What `vm workspace prepare` copied, recorded so export and exec can refer to it."""

    _fields = (
        "host_path",
        "guest_path",
        "base_commit",
        "tree",
        "host_head",
        "mode",
        "branch",
        "include_untracked",
    )
    __slots__ = _fields
    host_path: str
    guest_path: str
    base_commit: str
    tree: str
    host_head: str
    mode: WorkspaceMode
    branch: str | None
    include_untracked: bool

    def __init__(
        self,
        *,
        host_path: str,
        guest_path: str,
        base_commit: str,
        tree: str,
        host_head: str = "",
        mode: WorkspaceMode,
        branch: str | None = None,
        include_untracked: bool = False,
    ) -> None:
        self.host_path = host_path
        self.guest_path = guest_path
        self.base_commit = base_commit
        self.tree = tree
        self.host_head = host_head
        self.mode = mode
        self.branch = branch
        self.include_untracked = include_untracked

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WorkspaceRecord:
        return cls(
            host_path=d["host_path"],
            guest_path=d["guest_path"],
            base_commit=d["base_commit"],
            tree=d["tree"],
            host_head=d.get("host_head", ""),
            mode=WorkspaceMode(d["mode"]),
            branch=d.get("branch"),
            include_untracked=d.get("include_untracked", False),
        )


class Workspace(_Shape):
    _fields = (
        "host_path",
        "guest_path",
        "base_commit",
        "tree",
        "host_head",
        "mode",
        "branch",
        "include_untracked",
        "vm",
        "prepared_at",
    )
    __slots__ = _fields
    host_path: str
    guest_path: str
    base_commit: str
    tree: str
    host_head: str
    mode: WorkspaceMode
    branch: str | None
    include_untracked: bool
    vm: str
    prepared_at: str

    def __init__(
        self,
        *,
        host_path: str,
        guest_path: str,
        base_commit: str,
        tree: str,
        host_head: str = "",
        mode: WorkspaceMode,
        branch: str | None = None,
        include_untracked: bool = False,
        vm: str,
        prepared_at: str,
    ) -> None:
        self.host_path = host_path
        self.guest_path = guest_path
        self.base_commit = base_commit
        self.tree = tree
        self.host_head = host_head
        self.mode = mode
        self.branch = branch
        self.include_untracked = include_untracked
        self.vm = vm
        self.prepared_at = prepared_at

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Workspace:
        return cls(
            host_path=d["host_path"],
            guest_path=d["guest_path"],
            base_commit=d["base_commit"],
            tree=d["tree"],
            host_head=d.get("host_head", ""),
            mode=WorkspaceMode(d["mode"]),
            branch=d.get("branch"),
            include_untracked=d.get("include_untracked", False),
            vm=d["vm"],
            prepared_at=d["prepared_at"],
        )


class PtySize(_Shape):
    _fields = (
        "rows",
        "cols",
        "term",
    )
    __slots__ = _fields
    rows: int
    cols: int
    term: str

    def __init__(
        self,
        *,
        rows: int = 24,
        cols: int = 80,
        term: str = "xterm-256color",
    ) -> None:
        self.rows = rows
        self.cols = cols
        self.term = term

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PtySize:
        return cls(
            rows=d.get("rows", 24),
            cols=d.get("cols", 80),
            term=d.get("term", "xterm-256color"),
        )


class ExecRequest(_Shape):
    """A command to run in a VM through banger's guest agent (as root)."""

    _fields = (
        "argv",
        "cwd",
        "env",
        "stdin",
        "pty",
        "timeout",
    )
    __slots__ = _fields
    argv: list[str]
    cwd: str | None
    env: dict[str, str]
    stdin: str | None
    pty: PtySize | None
    timeout: float | None

    def __init__(
        self,
        *,
        argv: list[str],
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        stdin: str | None = None,
        pty: PtySize | None = None,
        timeout: float | None = None,
    ) -> None:
        self.argv = argv
        self.cwd = cwd
        self.env = dict() if env is None else env
        self.stdin = stdin
        self.pty = pty
        self.timeout = timeout

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ExecRequest:
        return cls(
            argv=d["argv"],
            cwd=d.get("cwd"),
            env=d.get("env", dict()),
            stdin=d.get("stdin"),
            pty=_opt(PtySize.from_json)(d.get("pty")),
            timeout=d.get("timeout"),
        )


class ExecResult(_Shape):
    """How an exec ended: an exit code, or the signal that killed it."""

    _fields = (
        "exit",
        "signal",
        "timed_out",
    )
    __slots__ = _fields
    exit: int | None
    signal: int | None
    timed_out: bool

    def __init__(
        self,
        *,
        exit: int | None = None,
        signal: int | None = None,
        timed_out: bool = False,
    ) -> None:
        self.exit = exit
        self.signal = signal
        self.timed_out = timed_out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ExecResult:
        return cls(
            exit=d.get("exit"),
            signal=d.get("signal"),
            timed_out=d.get("timed_out", False),
        )


class TransferRequest(_Shape):
    """The first message of /vms/NAME/files/ws: which file or tar stream to move."""

    _fields = (
        "op",
        "path",
        "dir",
        "names",
        "mode",
        "mkdirs",
    )
    __slots__ = _fields
    op: str
    path: str | None
    dir: str | None
    names: list[str]
    mode: int | None
    mkdirs: bool

    def __init__(
        self,
        *,
        op: str,
        path: str | None = None,
        dir: str | None = None,
        names: list[str] | None = None,
        mode: int | None = None,
        mkdirs: bool = False,
    ) -> None:
        self.op = op
        self.path = path
        self.dir = dir
        self.names = list() if names is None else names
        self.mode = mode
        self.mkdirs = mkdirs

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TransferRequest:
        return cls(
            op=d["op"],
            path=d.get("path"),
            dir=d.get("dir"),
            names=d.get("names", list()),
            mode=d.get("mode"),
            mkdirs=d.get("mkdirs", False),
        )


class GuestAccess(_Shape):
    """How a client reaches inside VM NAME: banger's agent channel, or SSH."""

    _fields = (
        "vm",
        "channel",
        "agent",
        "ssh",
    )
    __slots__ = _fields
    vm: str
    channel: bool
    agent: dict[str, Any] | None
    ssh: SshTarget | None

    def __init__(
        self,
        *,
        vm: str,
        channel: bool,
        agent: dict[str, Any] | None = None,
        ssh: SshTarget | None = None,
    ) -> None:
        self.vm = vm
        self.channel = channel
        self.agent = agent
        self.ssh = ssh

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GuestAccess:
        return cls(
            vm=d["vm"],
            channel=d["channel"],
            agent=d.get("agent"),
            ssh=_opt(SshTarget.from_json)(d.get("ssh")),
        )


class SshConfig(_Shape):
    """banger's own ssh_config file, one `Host NAME.vm` block per VM."""

    _fields = (
        "path",
        "text",
    )
    __slots__ = _fields
    path: str
    text: str

    def __init__(
        self,
        *,
        path: str,
        text: str,
    ) -> None:
        self.path = path
        self.text = text

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SshConfig:
        return cls(
            path=d["path"],
            text=d["text"],
        )
