"""The kernels ``banger kernel pull`` knows by name."""

from __future__ import annotations

from dataclasses import dataclass

from banger.errors import NotFound


@dataclass(frozen=True)
class KernelEntry:
    name: str
    description: str
    # Debian package (a metapackage is resolved to the versioned one it depends on).
    package: str


_ENTRIES = (
    KernelEntry(
        name="debian-bookworm-cloud",
        description="Debian 12 cloud kernel (Linux 6.1) from the host's apt mirror",
        package="linux-image-cloud-amd64",
    ),
    KernelEntry(
        name="debian-bookworm-generic",
        description="Debian 12 generic kernel (Linux 6.1), larger; has virtio-9p for --mount",
        package="linux-image-amd64",
    ),
)


def entries() -> tuple[KernelEntry, ...]:
    return _ENTRIES


def lookup(name: str) -> KernelEntry:
    for entry in _ENTRIES:
        if entry.name == name:
            return entry
    raise NotFound(
        f"no kernel named {name!r} in banger's catalog",
        hint="known kernels: "
        + ", ".join(e.name for e in _ENTRIES)
        + " (see `banger kernel catalog`)",
    )
