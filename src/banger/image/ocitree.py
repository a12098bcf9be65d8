"""The OCI source of the image pipeline: a registry image, flattened into a tree.

``pull_oci_sync`` fetches and flattens the layers; what the image's config
says about running it (entrypoint, cmd, env, working directory, user) goes
to the guest agent and is recorded on the image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from banger.guest.agent import AgentConfig
from banger.image.oci import LayerProgress, pull_oci_sync
from banger.image.pipeline import MadeTree


def pull_oci_tree(
    ref: str,
    tree: Path,
    *,
    cache_dir: Path,
    insecure_registries: Sequence[str],
    progress: Callable[[str], None],
    layer_progress: LayerProgress | None = None,
) -> MadeTree:
    """Pull ``ref`` into the empty or missing directory ``tree``."""
    oci = pull_oci_sync(
        ref,
        cache_dir=cache_dir / "oci",
        dest_tree=tree,
        insecure_registries=insecure_registries,
        progress=progress,
        layer_progress=layer_progress,
    )
    return MadeTree(
        source=f"oci:{oci.canonical}",
        agent=AgentConfig(
            entrypoint=oci.entrypoint,
            cmd=oci.cmd,
            env=oci.env,
            workdir=oci.working_dir,
            user=oci.user,
        ),
        config={
            "entrypoint": list(oci.entrypoint),
            "cmd": list(oci.cmd),
            "env": list(oci.env),
            "working_dir": oci.working_dir,
            "user": oci.user,
            "architecture": oci.architecture,
            "digest": oci.digest,
        },
    )
