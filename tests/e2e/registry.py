"""A throwaway Distribution registry and OCI image building for the pull tests.

Debian's ``docker-registry`` serves from a temp directory on 127.0.0.1;
images are built with ``umoci`` (unpack, edit the rootfs, repack) or by hand
in an OCI layout when a test needs a layer umoci cannot make (an opaque
directory, zstd), and pushed with ``skopeo``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import shutil
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

TOOLS = ("docker-registry", "umoci", "skopeo")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
LAYER_TYPES = {
    "tar": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


def skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "OCI pull tests need root (ownership and device nodes)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} not installed (scripts/install-host-deps)"
    return None


def run(*argv: str | os.PathLike[str]) -> str:
    result = subprocess.run(
        [os.fspath(a) for a in argv], capture_output=True, text=True, check=False, timeout=600
    )
    if result.returncode != 0:
        raise AssertionError(f"{argv} failed: {result.stderr.strip()}")
    return result.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str
    root: Path

    def push(
        self, layout: Path, tag: str, repo: str, *, fmt: str = "oci", all: bool = False
    ) -> str:
        dest = f"{self.host}/{repo}:{tag}"
        argv = ["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false"]
        if all:
            argv.append("--all")
        else:
            argv += ["--format", fmt]
        run(*argv, f"oci:{layout}:{tag}", f"docker://{dest}")
        return dest


@contextlib.contextmanager
def registry(workdir: Path) -> Iterator[Registry]:
    port = free_port()
    storage = workdir / "storage"
    storage.mkdir(parents=True)
    config = workdir / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    log = open(workdir / "registry.log", "wb")  # noqa: SIM115
    child = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    try:
        host = f"127.0.0.1:{port}"
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://{host}/v2/").status_code == 200:
                    break
            if time.monotonic() > deadline or child.poll() is not None:
                raise AssertionError((workdir / "registry.log").read_text())
            time.sleep(0.05)
        yield Registry(host=host, root=storage)
    finally:
        child.kill()
        child.wait()
        log.close()


# -- building images ------------------------------------------------------------


def umoci_image(layout: Path, tag: str, edits: list[Callable[[Path], None]]) -> None:
    """An image whose layers are the changes each edit makes to the rootfs."""
    if not layout.exists():
        run("umoci", "init", "--layout", layout)
    run("umoci", "new", "--image", f"{layout}:{tag}")
    for i, edit in enumerate(edits):
        bundle = layout.parent / f"bundle-{tag}-{i}"
        run("umoci", "unpack", "--image", f"{layout}:{tag}", bundle)
        edit(bundle / "rootfs")
        run("umoci", "repack", "--image", f"{layout}:{tag}", bundle)
        shutil.rmtree(bundle)
    run("umoci", "config", "--image", f"{layout}:{tag}", "--config.cmd", "/bin/sh",
        "--config.env", "A=1", "--config.workingdir", "/srv")  # fmt: skip


def umoci_unpack(layout: Path, tag: str, dest: Path) -> Path:
    run("umoci", "unpack", "--image", f"{layout}:{tag}", dest)
    return dest / "rootfs"


def _blob(layout: Path, data: bytes) -> tuple[str, int]:
    hexd = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256" / hexd).write_bytes(data)
    return f"sha256:{hexd}", len(data)


def _read(layout: Path, digest: str) -> dict:
    return json.loads((layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes())


def _index_entry(layout: Path, tag: str) -> dict:
    index = json.loads((layout / "index.json").read_text())
    for entry in index["manifests"]:
        if entry.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return entry
    raise KeyError(tag)


def _set_tag(layout: Path, tag: str, desc: dict) -> None:
    index = json.loads((layout / "index.json").read_text())
    name = "org.opencontainers.image.ref.name"
    index["manifests"] = [
        m for m in index["manifests"] if m.get("annotations", {}).get(name) != tag
    ]
    index["manifests"].append({**desc, "annotations": {name: tag}})
    (layout / "index.json").write_text(json.dumps(index))


def add_layer(layout: Path, src: str, dst: str, tar: bytes, compression: str = "gzip") -> None:
    """Tag ``dst`` as ``src`` plus one hand-made layer (tar bytes, compressed here)."""
    if compression == "gzip":
        blob = gzip.compress(tar, mtime=0)
    elif compression == "zstd":
        blob = subprocess.run(
            ["zstd", "-q", "-c"], input=tar, capture_output=True, check=True
        ).stdout
    else:
        blob = tar
    manifest = _read(layout, _index_entry(layout, src)["digest"])
    config = _read(layout, manifest["config"]["digest"])
    digest, size = _blob(layout, blob)
    config["rootfs"]["diff_ids"].append(f"sha256:{hashlib.sha256(tar).hexdigest()}")
    cdigest, csize = _blob(layout, json.dumps(config).encode())
    manifest["config"] = {**manifest["config"], "digest": cdigest, "size": csize}
    manifest["layers"] = [
        *manifest["layers"],
        {"mediaType": LAYER_TYPES[compression], "digest": digest, "size": size},
    ]
    mdigest, msize = _blob(layout, json.dumps(manifest).encode())
    _set_tag(layout, dst, {"mediaType": OCI_MANIFEST, "digest": mdigest, "size": msize})


def _with_arch(layout: Path, src: str, arch: str, variant: str = "") -> dict:
    manifest = _read(layout, _index_entry(layout, src)["digest"])
    config = _read(layout, manifest["config"]["digest"])
    config["architecture"] = arch
    cdigest, csize = _blob(layout, json.dumps(config).encode())
    manifest["config"] = {**manifest["config"], "digest": cdigest, "size": csize}
    mdigest, msize = _blob(layout, json.dumps(manifest).encode())
    platform = {"architecture": arch, "os": "linux", **({"variant": variant} if variant else {})}
    return {"mediaType": OCI_MANIFEST, "digest": mdigest, "size": msize, "platform": platform}


def multi_platform(layout: Path, src: str, dst: str, arches: list[tuple[str, str]]) -> None:
    """Tag ``dst`` as an index of ``src`` rebuilt for each (architecture, variant)."""
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [_with_arch(layout, src, a, v) for a, v in arches],
    }
    digest, size = _blob(layout, json.dumps(index).encode())
    _set_tag(layout, dst, {"mediaType": OCI_INDEX, "digest": digest, "size": size})


# -- comparing trees -------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under root with what a flattener must reproduce."""
    out: dict[str, tuple] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(dirpath) / name
            st = path.lstat()
            kind = stat.S_IFMT(st.st_mode)
            rel = str(path.relative_to(root))
            xattrs = tuple(
                sorted((k, os.getxattr(path, k, follow_symlinks=False)) for k in _listx(path))
            )
            out[rel] = (
                kind,
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                st.st_size if stat.S_ISREG(st.st_mode) else None,
                os.readlink(path) if stat.S_ISLNK(st.st_mode) else None,
                st.st_rdev if stat.S_ISCHR(kind) or stat.S_ISBLK(kind) else None,
                xattrs,
                st.st_mtime_ns if stat.S_ISREG(st.st_mode) else None,
                st.st_nlink if stat.S_ISREG(st.st_mode) else None,
            )
    return out


def _listx(path: Path) -> list[str]:
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []
