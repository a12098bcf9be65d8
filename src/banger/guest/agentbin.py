"""Build ``banger-agent``, the guest agent's Go program, from the source in this package.

The source (``guest/agent/``: go.mod and *.go, standard library only) ships
inside the Python package; the host compiles it once with its own Go
toolchain (Debian's golang-go) into a static binary, so nothing is fetched:
no module proxy, ``CGO_ENABLED=0`` and a Go cache under banger's cache
directory, never in the user's home. A build is keyed by a hash of the
sources, so an upgraded banger rebuilds and an unchanged one reuses it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from banger import proc
from banger.errors import HostError

log = logging.getLogger("banger.guest")

BINARY_NAME = "banger-agent"
GO_HINT = "install Go (Debian: apt-get install golang-go), then `banger doctor`"
_BUILD_TIMEOUT = 600


def source_dir() -> Path:
    """The agent's Go source directory inside the installed package."""
    return Path(str(resources.files("banger.guest").joinpath("agent")))


def _sources(src: Path) -> list[Path]:
    return sorted([src / "go.mod", *src.glob("*.go")])


def source_key(src: Path | None = None) -> str:
    """A hash of every Go source file (names and contents)."""
    src = src or source_dir()
    digest = hashlib.sha256()
    for path in _sources(src):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def go_binary() -> str:
    found = proc.which("go")
    if found is None:
        raise HostError(
            "the Go compiler `go` is not installed; banger builds its guest agent with it",
            hint=GO_HINT,
        )
    return found


def build_agent(cache_dir: Path) -> Path:
    """``cache_dir/<source key>/banger-agent``, compiled on first use.

    Built beside its final name and renamed, so a concurrent or interrupted
    build never leaves half a binary where a later one would take it.
    """
    src = source_dir()
    dest = cache_dir / source_key(src) / BINARY_NAME
    if dest.is_file():
        return dest
    go = go_binary()
    go_home = cache_dir / "go"
    env = {
        "CGO_ENABLED": "0",
        "GOPROXY": "off",
        "GOFLAGS": "-mod=mod",
        "GOTOOLCHAIN": "local",
        "GOCACHE": str(go_home / "cache"),
        "GOPATH": str(go_home / "path"),
        "GOENV": "off",
        "HOME": str(go_home),
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-", dir=dest.parent) as tmp:
        # Compile a copy: the installed package may be read-only, and Go
        # must not see anything but the sources the key was made from.
        work = Path(tmp) / "src"
        work.mkdir()
        for path in _sources(src):
            shutil.copyfile(path, work / path.name)
        out = Path(tmp) / BINARY_NAME
        log.info("building %s with %s", BINARY_NAME, go)
        proc.run([go, "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "."],
                 cwd=work, env=env, timeout=_BUILD_TIMEOUT)  # fmt: skip
        os.chmod(out, 0o755)  # noqa: S103 - a program for the guest
        os.replace(out, dest)
    return dest
