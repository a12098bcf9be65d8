"""Turn an OCI image into a bootable banger image: pull, flatten, add the agent, ext4.

Everything is made under a temporary name beside ``dest`` and renamed into
place at the end, so a failure anywhere leaves no half-made image.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from banger.guest.agent import AgentConfig, inject_agent
from banger.guest.bundle import build_agent_bundle
from banger.image.debian import remove_tree
from banger.image.ext4 import make_ext4
from banger.image.oci import LayerProgress, pull_oci_sync
from banger.image.tree import content_size_for, save_work_seed
from banger.units import format_size

log = logging.getLogger("banger.image")

ROOTFS_NAME = "rootfs.ext4"


@dataclass(frozen=True)
class BuiltImage:
    rootfs: Path
    work_seed: Path
    size_bytes: int
    source: str
    init: str | None
    config: dict[str, Any] = field(default_factory=dict)


def build_oci_image(
    ref: str,
    dest: Path,
    *,
    cache_dir: Path,
    size_bytes: int | None,
    insecure_registries: Sequence[str],
    progress: Callable[[str], None],
    layer_progress: LayerProgress | None = None,
) -> BuiltImage:
    started = time.monotonic()
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.pull-", dir=dest.parent))
    staged = work / "image"
    tree = work / "tree"
    try:
        oci = pull_oci_sync(
            ref,
            cache_dir=cache_dir / "oci",
            dest_tree=tree,
            insecure_registries=insecure_registries,
            progress=progress,
            layer_progress=layer_progress,
        )
        config = AgentConfig(
            entrypoint=oci.entrypoint,
            cmd=oci.cmd,
            env=oci.env,
            workdir=oci.working_dir,
            user=oci.user,
        )
        progress("adding banger's guest agent (SSH and init for images without them)")
        bundle = build_agent_bundle(cache_dir / "agent", progress)
        plan = inject_agent(tree, bundle, config)
        content, size = content_size_for(tree, size_bytes)
        progress(f"writing the ext4 disk ({format_size(size)} for {format_size(content)})")
        staged.mkdir()
        make_ext4(tree, staged / ROOTFS_NAME, size, label="banger-root")
        save_work_seed(tree, staged)
        remove_tree(tree)
        staged.rename(dest)
    finally:
        remove_tree(work)
    log.info("built %s from %s in %.1fs", dest, oci.canonical, time.monotonic() - started)
    return BuiltImage(
        rootfs=dest / ROOTFS_NAME,
        work_seed=dest / "work-seed",
        size_bytes=size,
        source=f"oci:{oci.canonical}",
        init=plan.init,
        config={
            "entrypoint": list(oci.entrypoint),
            "cmd": list(oci.cmd),
            "env": list(oci.env),
            "working_dir": oci.working_dir,
            "user": oci.user,
            "architecture": oci.architecture,
            "digest": oci.digest,
            "agent": plan.mode,
        },
    )
