"""Images ``banger image pull`` knows by name."""

from __future__ import annotations

from dataclasses import dataclass

from banger.errors import NotFound


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    description: str
    # How the image is made: "debootstrap" builds it from the host's Debian mirror.
    builder: str
    suite: str


_ENTRIES = (
    CatalogEntry(
        name="debian-bookworm",
        description="Debian 12 (bookworm) minimal with systemd, OpenSSH, git",
        builder="debootstrap",
        suite="bookworm",
    ),
)


def entries() -> tuple[CatalogEntry, ...]:
    return _ENTRIES


def names() -> list[str]:
    return [entry.name for entry in _ENTRIES]


def lookup(name: str) -> CatalogEntry:
    for entry in _ENTRIES:
        if entry.name == name:
            return entry
    raise NotFound(
        f"{name!r} is not in banger's image catalog",
        hint="catalog images: " + ", ".join(names()) + " (see `banger image catalog`)",
    )
