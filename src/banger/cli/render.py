"""Text for people: records as labelled fields, sizes, yes/no and ages.

Pure functions from values to strings. ``--json`` prints the records as the
API gives them; everything here is only for the text form. A record shown
field by field comes in as its wire JSON, so a field the daemon adds later
still shows (under its own name) until it gets a label here; table rows read
the typed shapes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from banger.units import format_size

if TYPE_CHECKING:
    from banger.api.shapes import Image, Kernel, Snapshot, Vm

Fields = list[tuple[str, str]]
Format = Callable[[Any, datetime], str]


def size(num: object) -> str:
    """Bytes as ``4.0 GiB``; ``-`` when unknown."""
    if isinstance(num, bool) or not isinstance(num, int | float):
        return "-"
    return format_size(num)


def mib(num: object) -> str:
    return f"{num} MiB" if isinstance(num, int) else "-"


def yes_no(flag: object) -> str:
    return "yes" if flag else "no"


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age(text: object, now: datetime) -> str:
    """An ISO time as ``3 min ago``; older than a month, its date. Unreadable: as given."""
    moment = _parse_time(text)
    if moment is None:
        return str(text) if text else "-"
    seconds = (now - moment).total_seconds()
    if seconds < 0:
        return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    for limit, unit, per in ((60, "s", 1), (3600, "min", 60), (86400, "h", 3600)):
        if seconds < limit:
            return "just now" if seconds < 5 else f"{int(seconds // per)} {unit} ago"
    days = int(seconds // 86400)
    if days < 31:
        return f"{days} day{'s' if days != 1 else ''} ago"
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


def when(text: object, now: datetime) -> str:
    """An ISO time as ``3 min ago (2026-12-01 11:44 UTC)``, for ``show``."""
    moment = _parse_time(text)
    if moment is None:
        return age(text, now)
    return f"{age(text, now)} ({moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M UTC')})"


def value(item: object) -> str:
    """Any other field: booleans as yes/no, nothing as ``-``, lists joined."""
    if isinstance(item, bool):
        return yes_no(item)
    if item is None or item == "" or item == [] or item == {}:
        return "-"
    if isinstance(item, list | tuple):
        return " ".join(str(x) for x in item)
    if isinstance(item, dict):
        return ", ".join(f"{k}={value(v)}" for k, v in item.items())
    return str(item)


def _plain(item: Any, _: datetime) -> str:
    return value(item)


def _size(item: Any, _: datetime) -> str:
    return size(item)


def _mib(item: Any, _: datetime) -> str:
    return mib(item)


def _pid(item: Any, _: datetime) -> str:
    return str(item) if item else "not running"


def _nat(item: Any, _: datetime) -> str:
    return "yes (NAT to the outside)" if item else "no (the bridge only)"


def forward_text(item: Mapping[str, Any]) -> str:
    """``127.0.0.1:8080 -> 80`` with what is special about it."""
    host = item.get("host_ip", "")
    host = f"[{host}]" if ":" in str(host) else host
    text = f"{host}:{item.get('host_port')} -> {item.get('guest_port')}/{item.get('proto', 'tcp')}"
    notes = []
    if item.get("source") == "auto":
        notes.append("auto")
        if int(item.get("guest_port") or 0) < 1024:
            notes.append("privileged guest port: a free high host port")
    if item.get("via") == "agent":
        notes.append("via the guest agent: the guest listens on its loopback")
    if item.get("error"):
        notes.append(f"not listening: {item['error']}")
    return text + (f" ({'; '.join(notes)})" if notes else "")


def _forwards(item: Any, _: datetime) -> str:
    if not item:
        return "none (`banger vm port add NAME HOST_PORT:GUEST_PORT`)"
    return ", ".join(forward_text(f) for f in item)


def _mounts(item: Any, _: datetime) -> str:
    if not item:
        return "none"
    return ", ".join(
        f"{m['host_dir']} -> {m['guest_dir']}{' (read-only)' if m.get('read_only') else ''}"
        for m in item
    )


def _or(default: str) -> Format:
    return lambda item, _: value(item) if item else default


Spec = Sequence[tuple[str, str, Format]]

VM_FIELDS: Spec = (
    ("name", "name", _plain),
    ("state", "state", _plain),
    ("image", "image", _plain),
    ("vcpus", "vCPUs", _plain),
    ("memory_mib", "memory", _mib),
    ("overlay_bytes", "system overlay", _size),
    ("work_disk_bytes", "work disk (/root)", _size),
    ("nat", "outside access", _nat),
    ("ip", "IP address", _plain),
    ("forwards", "forwarded ports", _forwards),
    ("forward_ports", "automatic forwarding", _plain),
    ("mounts", "shared directories", _mounts),
    ("vmm", "VMM", _plain),
    ("pid", "VMM pid", _pid),
    ("tap", "tap device", _plain),
    ("mac", "MAC address", _plain),
    ("created_at", "created", when),
    ("snapshot", "restored from", _or("- (booted from its image)")),
    ("dir", "directory", _plain),
    ("id", "id", _plain),
)

SNAPSHOT_FIELDS: Spec = (
    ("name", "name", _plain),
    ("vm", "taken of VM", _plain),
    ("image", "image", _plain),
    ("kernel", "kernel", _plain),
    ("vmm", "VMM", _plain),
    ("vcpus", "vCPUs", _plain),
    ("memory_mib", "memory", _mib),
    ("size_bytes", "size on disk", _size),
    ("created_at", "created", when),
    ("dir", "directory", _plain),
)

IMAGE_FIELDS: Spec = (
    ("name", "name", _plain),
    ("kernel", "kernel", _plain),
    ("size_bytes", "disk size", _size),
    ("source", "source", _plain),
    ("created_at", "created", when),
    ("rootfs", "root filesystem", _plain),
    ("work_seed", "work disk seed", _or("none (an empty /root)")),
    ("init", "init", _or("the image's own")),
)

# The recorded config's keys as people call them: the OCI config's, and how the agent boots.
_IMAGE_CONFIG = (
    ("entrypoint", "entrypoint"),
    ("cmd", "command"),
    ("env", "environment"),
    ("working_dir", "working directory"),
    ("agent", "agent mode"),
    ("user", "user"),
)

KERNEL_FIELDS: Spec = (
    ("name", "name", _plain),
    ("version", "version", _plain),
    ("source", "source", _plain),
    ("created_at", "created", when),
    ("vmlinuz", "kernel image", _plain),
    ("initrd", "initramfs", _plain),
    ("dir", "directory", _plain),
)


def fields(record: Mapping[str, Any], spec: Spec, now: datetime) -> Fields:
    """Labelled, formatted fields in the spec's order; unknown fields after, by name."""
    known = {key for key, _, _ in spec}
    out = [(label, fmt(record[key], now)) for key, label, fmt in spec if key in record]
    out += [(key, value(item)) for key, item in record.items() if key not in known]
    return out


def vm_fields(record: Mapping[str, Any], now: datetime) -> Fields:
    rest = {k: v for k, v in record.items() if k != "boot_snapshot"}
    if record.get("boot_snapshot"):
        rest["snapshot"] = (
            f"image {record.get('image')}'s boot snapshot, {record.get('snapshot')} (warm start)"
        )
    return fields(rest, VM_FIELDS, now)


def kernel_fields(record: Mapping[str, Any], now: datetime) -> Fields:
    return fields(record, KERNEL_FIELDS, now)


def image_fields(record: Mapping[str, Any], now: datetime) -> Fields:
    hidden = ("config", "agent_outdated", "boot_snapshots")
    rest = {k: v for k, v in record.items() if k not in hidden}
    out = fields(rest, IMAGE_FIELDS, now)
    if record.get("agent_outdated"):
        out.append(("guest agent", agent_outdated_line(record)))
    out += boot_snapshot_fields(record, now)
    config = record.get("config") or {}
    if isinstance(config, Mapping):
        labels = dict(_IMAGE_CONFIG)
        for key, item in config.items():
            # The image's own fields already say its channel; the build key is a hash.
            if key not in ("channel", "agent_build") and item not in (None, "", [], {}):
                out.append((labels.get(str(key), str(key)), value(item)))
    return out


def boot_snapshot_fields(record: Mapping[str, Any], now: datetime) -> Fields:
    """One line per boot snapshot of an image: the key it answers to, its size, its age."""
    boots = record.get("boot_snapshots") or []
    if not boots:
        if not record.get("channel"):
            return [("boot snapshots", "none: without banger's agent every create boots")]
        return [("boot snapshots", "none yet: the next create saves one (warm start)")]
    out = []
    for boot in boots:
        key = boot.get("key") or {}
        shape = (
            f"{key.get('vcpus', '?')} vCPU, {_key_mib(key.get('memory_mib'))},"
            f" overlay {_key_size(key.get('overlay_bytes'))},"
            f" work disk {_key_size(key.get('work_disk_bytes'))}, {key.get('vmm', '?')}"
        )
        made = when(boot.get("created_at"), now)
        line = f"{shape}: {size(boot.get('size_bytes'))}, made {made} ({boot.get('name')})"
        out.append(("boot snapshot", line))
    return out


def _key_size(text: object) -> str:
    return size(int(str(text))) if str(text).isdigit() else "?"


def _key_mib(text: object) -> str:
    return mib(int(str(text))) if str(text).isdigit() else "?"


def agent_outdated_line(record: Mapping[str, Any]) -> str:
    """What an image made with another banger's guest agent lacks, and how to remake it."""
    name, source = str(record.get("name", "")), str(record.get("source", ""))
    kind, _, ref = source.partition(":")
    line = "outdated: made by another version of banger; it boots, without what this one's does"
    pull = f"--name {name} --kernel-ref {record.get('kernel', '')}"
    if kind == "catalog":
        redo = f"banger image pull {ref} {pull}"
    elif kind == "oci":
        redo = f"banger image pull {ref.split('@', 1)[0]} {pull}"
    else:
        return f"{line} (remake it the way it was made: {source})"
    return f"{line}; remake it: `banger image delete {name}` then `{redo}`"


def vm_row(vm: Vm, now: datetime) -> tuple[str, ...]:
    return (
        vm.name,
        str(vm.state),
        vm.ip,
        vm.image,
        str(vm.vcpus),
        mib(vm.memory_mib),
        yes_no(vm.nat),
        "boot snapshot" if vm.boot_snapshot else vm.snapshot or "-",
        age(vm.created_at, now),
    )


VM_HEADERS = ("NAME", "STATE", "IP", "IMAGE", "VCPUS", "MEMORY", "NAT", "FROM", "CREATED")


def snapshot_fields(record: Mapping[str, Any], now: datetime) -> Fields:
    return fields(record, SNAPSHOT_FIELDS, now)


def snapshot_row(snap: Snapshot, now: datetime) -> tuple[str, ...]:
    return (
        snap.name,
        snap.vm,
        snap.image,
        snap.vmm,
        mib(snap.memory_mib),
        size(snap.size_bytes),
        age(snap.created_at, now),
    )


SNAPSHOT_HEADERS = ("NAME", "VM", "IMAGE", "VMM", "MEMORY", "SIZE", "CREATED")


def image_row(image: Image, now: datetime) -> tuple[str, ...]:
    return (
        image.name,
        image.kernel,
        size(image.size_bytes),
        image.source,
        _agent_word(image),
        age(image.created_at, now),
    )


def _agent_word(image: Image) -> str:
    if image.source.startswith("file:"):
        return "none"
    return "outdated" if image.agent_outdated else "current"


IMAGE_HEADERS = ("NAME", "KERNEL", "SIZE", "SOURCE", "AGENT", "CREATED")


def kernel_row(kernel: Kernel, now: datetime) -> tuple[str, ...]:
    return (kernel.name, kernel.version, kernel.source, age(kernel.created_at, now))


KERNEL_HEADERS = ("NAME", "VERSION", "SOURCE", "CREATED")


def check_detail(name: str, result: Mapping[str, Any]) -> str:
    """One health check's detail as a phrase: ``pid 4242``, ``answered in 12.3 ms``."""
    if name == "vmm":
        return f"pid {result['pid']}" if result.get("pid") else "not running"
    if name == "ssh" and "ms" in result:
        return f"answered in {result['ms']} ms"
    if name == "init" and "state" in result:
        return f"the guest's init says {result['state']!r}"
    if result.get("error"):
        return str(result["error"])
    return ", ".join(f"{k} {value(v)}" for k, v in result.items() if k != "ok")
