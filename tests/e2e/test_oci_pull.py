"""`pull_oci` against a real registry, compared entry for entry with `umoci unpack`."""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from banger.errors import NotFound
from banger.image.oci import cache_prune, pull_oci_sync
from banger.image.oci import pull_oci as pull_async
from tests.e2e import registry as reg

pytestmark = pytest.mark.e2e

MTIME = 1_600_000_000


@dataclass
class Env:
    reg: reg.Registry
    layout: Path
    work: Path


def _base(root: Path) -> None:
    for d in ("etc", "usr/lib", "bin", "data", "dev", "run", "old/sub", "opq", "srv"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "etc/hostname").write_text("box\n")
    (root / "usr/lib/libx.so").write_bytes(os.urandom(5 * 1024 * 1024))
    os.symlink("usr/lib", root / "lib")
    os.symlink("/etc/hostname", root / "bin/abs-link")
    (root / "bin/su").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "bin/su", 0o4755)
    (root / "bin/wall").write_bytes(b"wall")
    os.chown(root / "bin/wall", 0, 5)
    os.chmod(root / "bin/wall", 0o2755)
    (root / "tmp").mkdir(mode=0o1777)
    os.chmod(root / "tmp", 0o1777)
    os.chown(root / "srv", 1000, 1000)
    os.chmod(root / "srv", 0o750)
    (root / "data/a.txt").write_text("shared\n")
    os.link(root / "data/a.txt", root / "data/b.txt")
    os.mknod(root / "dev/null", 0o666 | 0o020000, os.makedev(1, 3))
    os.mknod(root / "dev/loop0", 0o660 | 0o060000, os.makedev(7, 0))
    os.mkfifo(root / "run/fifo", 0o620)
    (root / "data/attr").write_text("x")
    os.setxattr(root / "data/attr", "user.banger", b"hello")
    for name in ("old/sub/f", "opq/a", "opq/b"):
        (root / name).write_text(name)
    for path in (root / "data/a.txt", root / "data/attr", root / "usr/lib/libx.so"):
        os.utime(path, ns=(MTIME * 10**9 + 123456789, MTIME * 10**9 + 123456789))


def _second(root: Path) -> None:
    (root / "etc/hostname").unlink()
    shutil.rmtree(root / "old")
    (root / "etc/new").write_text("new\n")
    os.chmod(root / "srv", 0o755)


def _opaque_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind in (("opq", tarfile.DIRTYPE), ("opq/.wh..wh..opq", tarfile.REGTYPE)):
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = kind, 0o755, MTIME
            tar.addfile(info)
        info = tarfile.TarInfo("opq/c")
        info.size, info.mtime = 2, MTIME
        tar.addfile(info, io.BytesIO(b"c\n"))
    return buf.getvalue()


@pytest.fixture(scope="session")
def env(tmp_path_factory) -> Env:
    reason = reg.skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("oci")
    layout = work / "layout"
    reg.umoci_image(layout, "two", [_base, _second])
    reg.add_layer(layout, "two", "full", _opaque_tar(), "gzip")
    reg.add_layer(layout, "two", "full-zstd", _opaque_tar(), "zstd")
    reg.add_layer(layout, "two", "full-tar", _opaque_tar(), "tar")
    reg.multi_platform(layout, "full", "multi", [("arm64", "v8"), ("amd64", "")])
    reg.multi_platform(layout, "full", "armonly", [("arm64", "v8"), ("arm", "v7")])
    with reg.registry(work / "registry") as r:
        yield Env(reg=r, layout=layout, work=work)
    shutil.rmtree(work, ignore_errors=True)


def _pull(ref: str, tmp: Path, cache: Path | None = None):
    dest = tmp / "tree"
    image = pull_oci_sync(
        ref, cache_dir=cache or tmp / "cache", dest_tree=dest, progress=lambda _m: None
    )
    return image, dest


@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_pull_matches_umoci_unpack(env: Env, tmp_path: Path, fmt: str) -> None:
    ref = env.reg.push(env.layout, "full", f"full-{fmt}", fmt=fmt)
    image, tree = _pull(ref, tmp_path)
    expected = reg.snapshot(reg.umoci_unpack(env.layout, "full", tmp_path / "umoci"))
    got = reg.snapshot(tree)
    assert got == expected
    assert "etc/hostname" not in got and "old" not in got
    assert sorted(p for p in got if p.startswith("opq/")) == ["opq/c"]
    assert got["data/a.txt"][-1] == 2  # still one inode with data/b.txt
    assert len(image.layers) == 3
    assert image.cmd == ("/bin/sh",) and "A=1" in image.env and image.working_dir == "/srv"
    assert image.architecture == "amd64"
    assert image.canonical.startswith(f"{env.reg.host}/full-{fmt}:full@sha256:")


@pytest.mark.parametrize("compression", ["zstd", "tar"])
def test_zstd_and_plain_layers_flatten_like_gzip(
    env: Env, tmp_path: Path, compression: str
) -> None:
    gz = env.reg.push(env.layout, "full", "comp")
    other = env.reg.push(env.layout, f"full-{compression}", "comp")
    _img, gz_tree = _pull(gz, tmp_path / "gz")
    _img, other_tree = _pull(other, tmp_path / "other")
    assert reg.snapshot(other_tree) == reg.snapshot(gz_tree)


def test_index_picks_host_platform(env: Env, tmp_path: Path) -> None:
    ref = env.reg.push(env.layout, "multi", "multi", all=True)
    image, tree = _pull(ref, tmp_path)
    assert image.architecture == "amd64"
    assert image.digest != image.manifest_digest  # resolved through the index
    assert (tree / "etc/new").read_text() == "new\n"


def test_index_without_host_platform_lists_what_exists(env: Env, tmp_path: Path) -> None:
    ref = env.reg.push(env.layout, "armonly", "armonly", all=True)
    with pytest.raises(NotFound) as err:
        _pull(ref, tmp_path)
    assert "linux/amd64" in err.value.message
    assert "linux/arm64/v8" in (err.value.hint or "") and "linux/arm/v7" in (err.value.hint or "")


class _Counting(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        return await super().handle_async_request(request)


def test_second_pull_fetches_no_blob(env: Env, tmp_path: Path) -> None:
    import asyncio

    ref = env.reg.push(env.layout, "full", "again")
    cache = tmp_path / "cache"
    counts = []
    for i in range(2):
        transport = _Counting()
        asyncio.run(
            pull_async(
                ref,
                cache_dir=cache,
                dest_tree=tmp_path / f"t{i}",
                progress=lambda _m: None,
                transport=transport,
            )
        )
        counts.append([p for p in transport.paths if "/blobs/" in p])
    assert len(counts[0]) == 4  # config + 3 layers
    assert counts[1] == []
    freed, blobs = cache_prune(cache, dry_run=False)
    assert blobs == 4 and freed > 5 * 1024 * 1024
    assert not cache.exists()
