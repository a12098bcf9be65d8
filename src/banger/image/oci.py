"""Pull an OCI image from a registry and flatten it into a directory.

The one entry point the image service calls: it resolves the reference (an
index to the host's platform), streams every blob into the shared cache, and
applies each layer as soon as it and the ones before it have arrived, so
flattening overlaps the downloads of later layers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from banger.errors import UserError
from banger.image import Say
from banger.image.blobcache import BlobCache, cache_prune, short
from banger.image.flatten import Layer, Tree, apply_layer
from banger.image.reference import Reference, is_digest, parse_reference
from banger.image.registry import (
    INDEX_TYPES,
    Manifest,
    RegistryClient,
    choose_platform,
    host_platform,
)
from banger.units import format_size

log = logging.getLogger("banger.image")

__all__ = [
    "OciImage",
    "cache_prune",
    "prune_message",
    "pull_oci",
    "pull_oci_sync",
    "resolve_oci",
    "resolve_oci_sync",
]

LAYER_TYPES = (
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
)
MAX_CONFIG_BYTES = 16 * 1024 * 1024
_PARALLEL_DOWNLOADS = 3
_MAX_INDEX_DEPTH = 3

LayerProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class OciImage:
    reference: str  # as the user wrote it
    canonical: str  # registry/repository[:tag]@digest of what the reference resolved to
    digest: str  # what the reference resolved to (an index or a manifest)
    manifest_digest: str  # the platform's image manifest
    config_digest: str
    architecture: str
    os: str
    layers: tuple[str, ...]
    size_bytes: int  # compressed layers, as downloaded
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    env: tuple[str, ...]
    working_dir: str
    user: str


def _descriptor(ref: Reference, desc: Any, what: str) -> tuple[str, int, str]:
    if not isinstance(desc, dict):
        raise UserError(f"manifest of {ref} has a malformed {what} descriptor")
    digest, size = desc.get("digest"), desc.get("size")
    if not isinstance(digest, str) or not is_digest(digest):
        raise UserError(
            f"manifest of {ref} names {what} digest {digest!r}, not sha256:<64 hex>",
            hint="banger verifies sha256 digests only",
        )
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise UserError(f"manifest of {ref} gives {what} {short(digest)} no valid size")
    return digest, size, str(desc.get("mediaType") or "")


async def _resolve(client: RegistryClient, progress: Say) -> tuple[str, Manifest]:
    ref = client.ref
    progress(f"resolving {ref}")
    manifest = await client.manifest(ref.reference)
    top = manifest.digest
    for _ in range(_MAX_INDEX_DEPTH):
        if manifest.media_type not in INDEX_TYPES:
            return top, manifest
        desc = choose_platform(manifest.body)
        digest, _size, _mt = _descriptor(ref, desc, "platform manifest")
        plat = desc.get("platform") or {}
        progress(f"platform {plat.get('os')}/{plat.get('architecture')}: {short(digest)}")
        manifest = await client.manifest(digest)
    raise UserError(f"{ref} nests image indexes too deeply", hint="check the image")


def _image_config(ref: Reference, path: Path) -> dict[str, Any]:
    try:
        config = json.loads(path.read_bytes())
    except ValueError as exc:
        raise UserError(f"the config of {ref} is not valid JSON") from exc
    if not isinstance(config, dict):
        raise UserError(f"the config of {ref} is not a JSON object")
    arch, os_name = config.get("architecture"), config.get("os")
    want = host_platform()[0]
    if arch and arch != want:
        raise UserError(
            f"{ref} is built for {os_name or 'linux'}/{arch}, this host runs {want}",
            hint="pull a tag or digest made for this architecture",
        )
    return config


def _strings(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    return ()


async def _fetch_and_apply(
    client: RegistryClient,
    cache: BlobCache,
    layers: list[tuple[str, int, str]],
    dest_tree: Path,
    progress: Say,
    layer_progress: LayerProgress | None,
) -> None:
    gate = asyncio.Semaphore(_PARALLEL_DOWNLOADS)

    async def fetch(digest: str, size: int) -> Path:
        def report(done: int, total: int) -> None:
            if layer_progress is not None:
                layer_progress(digest, done, total)

        async with gate:
            return await client.blob(cache, digest, size, report)

    tasks = [asyncio.create_task(fetch(d, s)) for d, s, _ in layers]
    tree = Tree(dest_tree)
    try:
        for i, (task, (digest, size, media_type)) in enumerate(zip(tasks, layers, strict=True)):
            path = await task
            progress(f"applying layer {i + 1}/{len(layers)} {short(digest)}")
            await asyncio.to_thread(apply_layer, tree, Layer(digest, path, size, media_type))
        await asyncio.to_thread(tree.finish)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        tree.close()


async def pull_oci(
    ref: str,
    *,
    cache_dir: Path,
    dest_tree: Path,
    insecure_registries: Sequence[str] = (),
    progress: Say,
    layer_progress: LayerProgress | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> OciImage:
    """Pull ``ref`` and flatten it into ``dest_tree`` (made if missing; must be empty).

    On failure ``dest_tree`` holds a partial tree: the caller removes it.
    """
    parsed = parse_reference(ref)
    cache = BlobCache(cache_dir)
    dest_tree.mkdir(parents=True, exist_ok=True)
    if any(dest_tree.iterdir()):
        raise UserError(f"{dest_tree} is not empty", hint="flatten into a fresh directory")
    async with RegistryClient(
        parsed, insecure_registries=insecure_registries, transport=transport
    ) as client:
        top, manifest = await _resolve(client, progress)
        body = manifest.body
        config_digest, config_size, _ = _descriptor(parsed, body.get("config"), "config")
        if config_size > MAX_CONFIG_BYTES:
            raise UserError(f"the config of {parsed} is larger than 16 MiB")
        raw_layers = body.get("layers")
        if not isinstance(raw_layers, list):
            raise UserError(f"manifest of {parsed} lists no layers")
        layers = [_descriptor(parsed, d, "layer") for d in raw_layers]
        for digest, _size, media_type in layers:
            if media_type and media_type not in LAYER_TYPES:
                raise UserError(
                    f"layer {digest} of {parsed} has unsupported media type {media_type!r}",
                    hint="banger applies tar layers, plain or gzip/zstd compressed",
                )
        config_path = await client.blob(cache, config_digest, config_size)
        config = _image_config(parsed, config_path)
        total = sum(size for _, size, _ in layers)
        progress(f"{len(layers)} layer(s), {format_size(total)}")
        await _fetch_and_apply(client, cache, layers, dest_tree, progress, layer_progress)
    inner = config.get("config") or {}
    return OciImage(
        reference=ref,
        canonical=parsed.with_digest(top).canonical(),
        digest=top,
        manifest_digest=manifest.digest,
        config_digest=config_digest,
        architecture=str(config.get("architecture") or ""),
        os=str(config.get("os") or ""),
        layers=tuple(d for d, _, _ in layers),
        size_bytes=total,
        entrypoint=_strings(inner.get("Entrypoint")),
        cmd=_strings(inner.get("Cmd")),
        env=_strings(inner.get("Env")),
        working_dir=str(inner.get("WorkingDir") or ""),
        user=str(inner.get("User") or ""),
    )


async def resolve_oci(
    ref: str,
    *,
    insecure_registries: Sequence[str] = (),
    progress: Say,
    transport: httpx.AsyncBaseTransport | None = None,
) -> str:
    """The digest ``ref`` names now (its index or manifest), asking the registry once."""
    parsed = parse_reference(ref)
    if is_digest(parsed.reference):
        return parsed.reference
    async with RegistryClient(
        parsed, insecure_registries=insecure_registries, transport=transport
    ) as client:
        progress(f"resolving {parsed}")
        return (await client.manifest(parsed.reference)).digest


def resolve_oci_sync(ref: str, *, insecure_registries: Sequence[str] = (), progress: Say) -> str:
    return asyncio.run(resolve_oci(ref, insecure_registries=insecure_registries, progress=progress))


def pull_oci_sync(
    ref: str,
    *,
    cache_dir: Path,
    dest_tree: Path,
    insecure_registries: Sequence[str] = (),
    progress: Say,
    layer_progress: LayerProgress | None = None,
) -> OciImage:
    """pull_oci for callers on a plain thread (an operation's worker)."""
    return asyncio.run(
        pull_oci(
            ref,
            cache_dir=cache_dir,
            dest_tree=dest_tree,
            insecure_registries=insecure_registries,
            progress=progress,
            layer_progress=layer_progress,
        )
    )


def prune_message(freed: int, blobs: int, cache_dir: Path, *, dry_run: bool) -> str:
    """The one line `banger image cache prune` prints."""
    verb = "would free" if dry_run else "freed"
    return f"{verb} {format_size(freed)} across {blobs} blob(s) in {cache_dir}"
