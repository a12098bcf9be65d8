"""The one image pipeline: a source makes a root tree, one stage makes it an image.

Every source ends in the same place. The Debian catalog build
(``image.debian``), an OCI pull (``image.ocitree``) and a promoted VM
(``image.promote``) each fill ``Staging.tree`` and say what they made;
``finish`` then adds banger's guest agent, takes the work seed, writes the
ext4 and registers the result. A registered ext4 (``image register``) is a
disk, not a tree: ``adopt_disk`` checks it and it goes straight to
registration, since banger does not change a file it was only pointed at.

Everything is made in a temporary directory beside the destination, renamed
into place only once complete, and registered right after; if registering
fails the rename is undone. On any failure nothing is registered and no
temporary file is left.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from banger.errors import HostError, UserError
from banger.guest.agent import AgentConfig, inject_agent
from banger.image import Say
from banger.image.ext4 import make_ext4
from banger.image.tree import WORK_SEED_NAME, content_size_for, remove_tree, save_work_seed
from banger.units import format_size

log = logging.getLogger("banger.image")

ROOTFS_NAME = "rootfs.ext4"
ROOTFS_LABEL = "banger-root"

T = TypeVar("T")


@dataclass(frozen=True)
class MadeTree:
    """What a source put in ``Staging.tree``, and what to record about it."""

    source: str  # e.g. "catalog:debian-bookworm", "oci:REF@DIGEST", "vm:NAME"
    agent: AgentConfig = field(default_factory=AgentConfig)
    # Recorded as the image's config; the finishing stage adds the agent's mode.
    config: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Finished:
    """A complete image in its final place, about to be registered."""

    rootfs: Path
    work_seed: Path | None
    size_bytes: int
    source: str
    init: str | None  # what the guest runs instead of its /sbin/init; None for its own
    config: dict[str, Any]
    # The guest channel version of the injected agent; 0 when it has none.
    channel: int = 0


@dataclass(frozen=True)
class Staging:
    """A work directory beside the destination (same filesystem, so renames are atomic)."""

    dest: Path
    work: Path

    @property
    def tree(self) -> Path:
        """Where the source puts the image's root tree."""
        return self.work / "tree"

    @property
    def image(self) -> Path:
        """The image's directory, built here and renamed to ``dest`` when complete."""
        return self.work / "image"

    def scratch(self, name: str) -> Path:
        """A path for a source's own temporary file, removed with the rest."""
        return self.work / name


@contextlib.contextmanager
def staging(dest: Path) -> Iterator[Staging]:
    """Owns the temporary directory: it is removed on the way out, however that goes."""
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.build-", dir=dest.parent))
    try:
        yield Staging(dest=dest, work=work)
    finally:
        remove_tree(work)


def finish(
    stage: Staging,
    made: MadeTree,
    *,
    bundle: Callable[[], Path],
    size_bytes: int | None,
    progress: Say,
    register: Callable[[Finished], T],
    keep: Callable[[Path, Finished], None] | None = None,
) -> T:
    """Agent, work seed, ext4, then ``register``: the one way a tree becomes an image.

    ``bundle`` gives the guest agent bundle (built or cached on first use).
    ``register`` records the image; if it raises, the image's files go too.
    ``keep`` sees the complete image directory before it is published (the
    flattened-image cache links it there).
    """
    started = time.monotonic()
    if not stage.tree.is_dir():
        raise HostError(f"the image source left no tree in {stage.tree}")
    progress("adding banger's guest agent (SSH and init for images without them)")
    plan = inject_agent(stage.tree, bundle(), made.agent)
    # Owner-only: a promoted VM's disk holds its /etc/shadow and whatever else it
    # kept. The directory keeps other users out; the disk itself stays 0644 so a
    # jailed Firecracker (another uid) reads it through the jail's hard link.
    stage.image.mkdir(mode=0o700)
    save_work_seed(stage.tree, stage.image)
    content, size = content_size_for(stage.tree, size_bytes)
    progress(f"writing the ext4 disk ({format_size(size)} for {format_size(content)})")
    make_ext4(stage.tree, stage.image / ROOTFS_NAME, size, label=ROOTFS_LABEL)
    remove_tree(stage.tree)
    finished = Finished(
        rootfs=stage.dest / ROOTFS_NAME,
        work_seed=stage.dest / WORK_SEED_NAME,
        size_bytes=size,
        source=made.source,
        init=plan.init,
        # "channel": the guest.proto version the image's agent speaks (0: none);
        # "agent_build": the agent's source key, which tells an outdated agent.
        config={
            **made.config,
            "agent": plan.mode,
            "channel": plan.channel,
            "agent_build": plan.agent_build,
        },
        channel=plan.channel,
    )
    if keep is not None:
        keep(stage.image, finished)
    result = publish(stage, finished, register)
    log.info("made image %s from %s in %.1fs", stage.dest, made.source, time.monotonic() - started)
    return result


def publish(stage: Staging, finished: Finished, register: Callable[[Finished], T]) -> T:
    """Rename the staged image into place and register it; undo the rename if that fails."""
    if stage.dest.exists():
        # Left by a daemon that died between the rename and registering: the
        # name is free (checked before the work began), so nothing uses it.
        remove_tree(stage.dest)
    stage.image.rename(stage.dest)
    try:
        return register(finished)
    except BaseException:
        remove_tree(stage.dest)
        raise


def adopt_disk(rootfs: Path, *, init: str = "") -> Finished:
    """An ext4 file that already exists on the host, checked and used in place (not copied)."""
    if not rootfs.is_absolute() or not rootfs.is_file():
        raise UserError(
            f"{str(rootfs)!r} is not a file", hint="pass the absolute path of an ext4 image"
        )
    with rootfs.open("rb") as disk:
        disk.seek(1024 + 56)  # the superblock's magic number
        if disk.read(2) != b"\x53\xef":
            raise UserError(
                f"{rootfs} is not an ext2/3/4 filesystem",
                hint="make one with `mkfs.ext4 -d DIR FILE SIZE`",
            )
    return Finished(
        rootfs=rootfs,
        work_seed=None,
        size_bytes=rootfs.stat().st_size,
        source=f"file:{rootfs}",
        init=init or None,
        config={},
    )


def agent_config_of(config: Mapping[str, Any]) -> AgentConfig:
    """The agent config an image was made with, from the config recorded on it."""

    def strings(key: str) -> tuple[str, ...]:
        value = config.get(key)
        return tuple(str(v) for v in value) if isinstance(value, list) else ()

    return AgentConfig(
        entrypoint=strings("entrypoint"),
        cmd=strings("cmd"),
        env=strings("env"),
        workdir=str(config.get("working_dir") or ""),
        user=str(config.get("user") or ""),
    )
