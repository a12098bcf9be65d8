"""OCI pull and flatten to ext4, against what a user would do without banger.

A registry on 127.0.0.1 (Debian's docker-registry) serves a ~200 MB image of
three layers (text and binary files, a layer that deletes and overwrites
what an earlier one made). Each run, in a fresh directory:

- baseline: ``skopeo copy`` to an OCI layout, ``umoci unpack``, ``mkfs.ext4 -d``
  of the rootfs at the size banger picks;
- banger cold: the image pipeline as ``banger image pull`` runs it (fetch,
  flatten, the guest agent, the ext4) with an empty blob cache;
- banger warm: the same with every blob already cached;
- banger re-pull: the same manifest again with the flattened-image cache
  (what a second ``image pull`` of it costs).

Prints medians and the ratios to the baseline of the same run. Needs root
(ownership in the image), skopeo, umoci and docker-registry.

    .venv/bin/python bench/oci_pull.py [--runs 5] [--json FILE]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from figures import Case, Figures, Ratio, emit
from tests.e2e.registry import registry, umoci_image

from banger.guest.agent import agent_script
from banger.guest.bundle import build_agent_bundle
from banger.image.ext4 import make_ext4
from banger.image.flatcache import FlatCache, flat_key
from banger.image.oci import resolve_oci_sync
from banger.image.ocitree import pull_oci_tree
from banger.image.pipeline import Finished, finish, staging
from banger.image.tree import content_size_for

MIB = 1 << 20


def _files(root: Path, name: str, count: int, size: int, seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - file contents, not secrets
    words = [f"word{i}" for i in range(500)]
    target = root / "usr" / "share" / name
    target.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        if i % 2:
            data = rng.randbytes(size)  # binaries: incompressible
        else:
            data = " ".join(rng.choice(words) for _ in range(size // 6)).encode()[:size]
        (target / f"f{i:05d}").write_bytes(data)


def layers() -> list[Callable[[Path], None]]:
    def base(root: Path) -> None:
        _files(root, "base", 1600, 64 << 10, 1)  # ~100 MB

    def middle(root: Path) -> None:
        _files(root, "middle", 1000, 60 << 10, 2)  # ~60 MB
        for i in range(0, 400, 2):
            (root / "usr" / "share" / "base" / f"f{i:05d}").unlink()

    def top(root: Path) -> None:
        _files(root, "top", 640, 64 << 10, 3)  # ~40 MB
        _files(root, "base", 200, 32 << 10, 4)  # overwrites

    return [base, middle, top]


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def baseline(ref: str, work: Path, size: int) -> None:
    layout, bundle = work / "layout", work / "bundle"
    work.mkdir()
    subprocess.run(
        ["skopeo", "--insecure-policy", "copy", "--src-tls-verify=false", "-q",
         f"docker://{ref}", f"oci:{layout}:b"],
        check=True,
    )  # fmt: skip
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:b", bundle], check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip
    make_ext4(bundle / "rootfs", work / "rootfs.ext4", size)


def banger_pull(ref: str, dest: Path, cache: Path, bundle: Path, flat: FlatCache | None) -> None:
    # As the daemon does: ask the registry what the reference names now, then look.
    digest = resolve_oci_sync(ref, progress=lambda _m: None)
    key = flat_key(digest, bundle, agent_script(), None)
    with staging(dest) as stage:
        if flat is not None and (hit := flat.lookup(key)) and flat.link_into(hit, dest):
            return
        made = pull_oci_tree(
            ref, stage.tree, cache_dir=cache, insecure_registries=(), progress=lambda _m: None
        )

        def keep(image_dir: Path, done: Finished) -> None:
            if flat is not None:
                flat.keep(key, image_dir, size_bytes=done.size_bytes, init=done.init,
                          config=done.config)  # fmt: skip

        finish(stage, made, bundle=lambda: bundle, size_bytes=None, progress=lambda _m: None,
               register=lambda done: done, keep=keep)  # fmt: skip


def one_run(ref: str, run: Path, size: int, bundle: Path) -> dict[str, float]:
    run.mkdir()
    cache, flat = run / "cache", FlatCache(run / "flat")
    try:
        return {
            "baseline": timed(lambda: baseline(ref, run / "b", size)),
            "cold": timed(lambda: banger_pull(ref, run / "i1", cache, bundle, flat)),
            "warm": timed(lambda: banger_pull(ref, run / "i2", cache, bundle, None)),
            "re-pull": timed(lambda: banger_pull(ref, run / "i3", cache, bundle, flat)),
        }
    finally:
        shutil.rmtree(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the image's files belong to root")
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="bench-oci-") as tmp:
        root = Path(tmp)
        umoci_image(root / "src", "1", layers())
        bundle = build_agent_bundle(root / "agent")
        with registry(root / "registry") as reg:
            ref = reg.push(root / "src", "1", "bench/big")
            probe = root / "probe"
            subprocess.run(["umoci", "unpack", "--image", f"{root / 'src'}:1", probe], check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            _content, size = content_size_for(probe / "rootfs", None)
            shutil.rmtree(probe)
            rows: dict[str, list[float]] = {k: [] for k in ("baseline", "cold", "warm", "re-pull")}
            for i in range(args.runs):
                for name, took in one_run(ref, root / f"run{i}", size, bundle).items():
                    rows[name].append(took)
    med = {k: statistics.median(v) for k, v in rows.items()}
    emit(
        Figures(
            bench="oci_pull",
            title="OCI pull and flatten to ext4 (200 MB, 3 layers, registry on 127.0.0.1)",
            cases=[Case(name, samples, "s") for name, samples in rows.items()],
            ratios=[
                Ratio("cold / baseline", med["cold"] / med["baseline"], 1.0),
                Ratio("warm / baseline", med["warm"] / med["baseline"]),
                Ratio("re-pull / cold", med["re-pull"] / med["cold"], 0.1),
            ],
            notes=["baseline: skopeo copy + umoci unpack + mkfs.ext4 -d at banger's size"],
        ),
        args.json,
    )


if __name__ == "__main__":
    main()
