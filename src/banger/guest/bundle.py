"""Build the guest agent's bundle: banger-agent, static busybox, a self-contained dropbear.

The bundle is what goes to ``/.banger/`` in every pulled image, except the
agent script and its config, which ``agent.inject_agent`` writes fresh. Its
binaries come from Debian packages fetched with the host's ``apt-get
download`` (no mirror is named here). Debian's dropbear is dynamically linked,
so it travels with the libraries it needs and glibc's loader; its ELF
interpreter is rewritten to ``/.banger/lib/ld.so`` so it never meets the
image's own loader or libc, not even when it re-executes itself for each
connection. OpenSSH's sftp-server comes along the same way (behind a wrapper
that sets the library path) for images that have none, so scp and sftp work.
``banger-agent``, the host channel's guest half, is compiled here from the Go
source in this package (``guest.agentbin``).

Layout (relative to the bundle directory and to ``/.banger`` in the guest)::

    bin/banger-agent  bin/busybox  bin/sh -> busybox  bin/dropbear  bin/dropbearconvert
    bin/sftp-server
    libexec/sftp-server
    lib/ld-linux-x86-64.so.2  lib/ld.so -> ld-linux-x86-64.so.2  lib/lib*.so.*
    manifest.json
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from banger import proc
from banger.errors import HostError
from banger.guest import agentbin
from banger.guest.agent import BUNDLE_MANIFEST, resolve_in_tree

log = logging.getLogger("banger.guest")

# Bump when the bundle's layout or content rules change: old caches are ignored.
# 4: the manifest names the agent's source key, which images record (outdated agents).
BUNDLE_FORMAT = 4
ROOT_PACKAGES = ("busybox-static", "dropbear-bin")
# Taken without their dependencies: openssh-sftp-server depends on the whole
# OpenSSH client, but its program needs only libc (checked from the ELF).
LEAF_PACKAGES = ("openssh-sftp-server",)
GUEST_DIR = "/.banger"
INTERP = f"{GUEST_DIR}/lib/ld.so"
MANIFEST = BUNDLE_MANIFEST
# (name in the bundle, where each package may keep it)
_BINARIES = {
    "bin/busybox": ("bin/busybox",),
    "bin/dropbear": ("usr/sbin/dropbear",),
    "bin/dropbearconvert": ("usr/lib/dropbear/dropbearconvert", "usr/bin/dropbearconvert"),
    "libexec/sftp-server": ("usr/lib/openssh/sftp-server", "usr/lib/sftp-server"),
}
_DYNAMIC = ("bin/dropbear", "bin/dropbearconvert", "libexec/sftp-server")
# Sessions start with a clean environment (dropbear clears it), so a program
# run from one finds banger's libraries through this wrapper.
SFTP_WRAPPER = f"""#!{GUEST_DIR}/bin/sh
LD_LIBRARY_PATH={GUEST_DIR}/lib exec {GUEST_DIR}/libexec/sftp-server "$@"
"""
_APT_HINT = "check the host's apt sources and run `apt-get update` as root"

_PT_INTERP = 3
_PT_DYNAMIC = 2
_PT_LOAD = 1
_DT_NEEDED = 1
_DT_STRTAB = 5


def _elf64(data: bytes, what: str) -> tuple[int, int, int]:
    """(phoff, phentsize, phnum) of a little-endian ELF64 file."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise HostError(f"{what} is not a little-endian 64-bit ELF file", hint=_APT_HINT)
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return phoff, phentsize, phnum


def _segments(data: bytes, what: str) -> Iterable[tuple[int, int, int, int]]:
    """(type, file offset, virtual address, file size) of each program header."""
    phoff, phentsize, phnum = _elf64(data, what)
    for i in range(phnum):
        base = phoff + i * phentsize
        (kind,) = struct.unpack_from("<I", data, base)
        offset, vaddr, _paddr, filesz = struct.unpack_from("<QQQQ", data, base + 8)
        yield kind, offset, vaddr, filesz


def elf_interpreter(data: bytes, what: str = "the binary") -> str | None:
    for kind, offset, _vaddr, size in _segments(data, what):
        if kind == _PT_INTERP:
            return data[offset : offset + size].split(b"\0", 1)[0].decode()
    return None


def elf_needed(data: bytes, what: str = "the binary") -> list[str]:
    """The DT_NEEDED sonames of an ELF64 file, in order."""
    segments = list(_segments(data, what))
    dynamic = [(off, size) for kind, off, _v, size in segments if kind == _PT_DYNAMIC]
    if not dynamic:
        return []

    def file_offset(vaddr: int) -> int:
        for kind, off, start, size in segments:
            if kind == _PT_LOAD and start <= vaddr < start + size:
                return off + vaddr - start
        raise HostError(f"{what}: address {vaddr:#x} is outside its segments")

    off, size = dynamic[0]
    entries = [struct.unpack_from("<qQ", data, p) for p in range(off, off + size, 16)]
    strtab = next((value for tag, value in entries if tag == _DT_STRTAB), None)
    if strtab is None:
        return []
    base = file_offset(strtab)
    names = []
    for tag, value in entries:
        if tag == _DT_NEEDED:
            names.append(data[base + value : data.index(b"\0", base + value)].decode())
    return names


def set_interpreter(path: Path, interp: str) -> None:
    """Rewrite ``path``'s ELF interpreter in place; it must fit the old slot."""
    data = bytearray(path.read_bytes())
    for kind, offset, _vaddr, size in _segments(bytes(data), str(path)):
        if kind != _PT_INTERP:
            continue
        new = interp.encode()
        if len(new) + 1 > size:
            raise HostError(f"{path}: interpreter {interp} does not fit in {size} bytes")
        data[offset : offset + size] = new + b"\0" * (size - len(new))
        path.write_bytes(bytes(data))
        return
    raise HostError(f"{path} has no ELF interpreter to replace")


def package_versions(
    roots: Iterable[str] = ROOT_PACKAGES, leaves: Iterable[str] = LEAF_PACKAGES
) -> dict[str, str]:
    """Every package the bundle is made from (roots, their dependencies, and the
    leaves alone), with the version apt would download now."""
    roots, leaves = tuple(roots), tuple(leaves)
    text = proc.output(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests",
                        "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances",
                        *roots])  # fmt: skip
    closure = {line.strip() for line in text.splitlines() if re.match(r"[a-z0-9]", line)}
    names = sorted(closure | set(leaves))
    policy = proc.output(["apt-cache", "policy", *names])
    versions: dict[str, str] = {}
    current = ""
    for line in policy.splitlines():
        if re.match(r"\S+:$", line):
            current = line[:-1].split(":")[0]
        elif line.strip().startswith("Candidate:") and current:
            version = line.split(":", 1)[1].strip()
            if version != "(none)":
                versions[current] = version
    missing = [r for r in (*roots, *leaves) if r not in versions]
    if missing:
        raise HostError(f"apt has no candidate for {', '.join(missing)}", hint=_APT_HINT)
    return versions


def bundle_key(versions: dict[str, str]) -> str:
    """Hashes the format, every package version and the agent's Go sources."""
    text = f"format {BUNDLE_FORMAT}\nagent {agentbin.source_key()}\n"
    text += "".join(f"{k}={v}\n" for k, v in sorted(versions.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def build_agent_bundle(cache_dir: Path, progress: Callable[[str], None] = lambda s: None) -> Path:
    """The agent bundle for the packages apt offers now, built once under ``cache_dir``.

    Returns ``cache_dir/<key>``, where the key hashes every package version, so
    a Debian update yields a new bundle and an unchanged one is reused. The
    bundle is assembled beside its final name and renamed, never half-made.
    """
    try:
        versions = package_versions()
    except HostError:
        cached = _newest_cached(cache_dir)
        if cached is None:
            raise
        log.warning("apt cannot list the agent's packages; reusing the bundle in %s", cached)
        return cached
    dest = cache_dir / bundle_key(versions)
    if (dest / MANIFEST).is_file():
        return dest
    cache_dir.mkdir(parents=True, exist_ok=True)
    progress("building banger-agent, the guest agent")
    agent_binary = agentbin.build_agent(cache_dir / "agent-bin")
    with tempfile.TemporaryDirectory(prefix=".bundle-", dir=cache_dir) as tmp:
        work = Path(tmp)
        progress(f"downloading {len(versions)} packages for banger's guest agent")
        # Mode 0755: apt's sandbox user must be able to write the .debs here.
        os.chmod(work, 0o755)  # noqa: S103 - holds only public packages
        proc.run(["apt-get", "download", "-q", *(f"{k}={v}" for k, v in sorted(versions.items()))],
                 cwd=work, timeout=900)  # fmt: skip
        unpacked = work / "root"
        for deb in sorted(work.glob("*.deb")):
            proc.run(["dpkg-deb", "-x", deb, unpacked])
        progress("assembling the guest agent bundle")
        out = work / "bundle"
        _assemble(unpacked, out)
        shutil.copyfile(agent_binary, out / "bin" / agentbin.BINARY_NAME)
        os.chmod(out / "bin" / agentbin.BINARY_NAME, 0o755)  # noqa: S103 - a program
        (out / MANIFEST).write_text(
            json.dumps(
                # The binary's directory is named by the Go sources it was built from.
                {"format": BUNDLE_FORMAT, "agent": agent_binary.parent.name, "packages": versions},
                indent=2,
            )
            + "\n"
        )
        try:
            out.rename(dest)
        except OSError:
            if not (dest / MANIFEST).is_file():  # a concurrent build may have won the race
                raise
    log.info("guest agent bundle ready in %s", dest)
    return dest


def _newest_cached(cache_dir: Path) -> Path | None:
    """The most recent complete bundle of this format under ``cache_dir``."""
    found: list[tuple[float, Path]] = []
    for manifest in cache_dir.glob(f"*/{MANIFEST}"):
        try:
            if json.loads(manifest.read_text()).get("format") == BUNDLE_FORMAT:
                found.append((manifest.stat().st_mtime, manifest.parent))
        except (OSError, ValueError):
            continue
    return max(found)[1] if found else None


def _in_root(root: Path, rel: str) -> Path | None:
    """The regular file ``rel`` names inside an unpacked package tree, or None."""
    path = resolve_in_tree(root, rel)
    return path if path is not None and path.is_file() else None


def _library_dirs(root: Path) -> list[str]:
    dirs = []
    for base in ("lib", "usr/lib", "lib64"):
        if (root / base).is_dir():
            dirs.append(base)
            dirs += sorted(
                f"{base}/{d.name}" for d in (root / base).iterdir() if d.is_dir() and "-" in d.name
            )
    return dirs


def _find_library(root: Path, soname: str, dirs: list[str]) -> Path:
    for directory in dirs:
        found = _in_root(root, f"{directory}/{soname}")
        if found is not None:
            return found
    raise HostError(
        f"the agent's SSH server needs {soname}, which no downloaded package holds",
        hint="the Debian dependencies of dropbear-bin changed; report this to banger",
    )


def _assemble(root: Path, out: Path) -> None:
    """Copy the binaries, their library closure and the loader from ``root`` to ``out``."""
    for directory in ("bin", "lib", "libexec"):
        (out / directory).mkdir(parents=True)
    for name, candidates in _BINARIES.items():
        found = next((p for c in candidates if (p := _in_root(root, c)) is not None), None)
        if found is None:
            raise HostError(f"no downloaded package holds {name}", hint=_APT_HINT)
        shutil.copyfile(found, out / name)
        os.chmod(out / name, 0o755)  # noqa: S103 - a program
    os.symlink("busybox", out / "bin" / "sh")
    (out / "bin" / "sftp-server").write_text(SFTP_WRAPPER)
    os.chmod(out / "bin" / "sftp-server", 0o755)  # noqa: S103 - a program

    dirs = _library_dirs(root)
    interp = elf_interpreter((out / "bin" / "dropbear").read_bytes(), "dropbear")
    if interp is None:
        raise HostError("dropbear has no ELF interpreter; expected a dynamic binary")
    loader = _in_root(root, interp)
    if loader is None:
        raise HostError(f"no downloaded package holds dropbear's loader {interp}", hint=_APT_HINT)
    loader_name = Path(interp).name
    shutil.copyfile(loader, out / "lib" / loader_name)
    os.chmod(out / "lib" / loader_name, 0o755)  # noqa: S103 - the loader runs
    os.symlink(loader_name, out / "lib" / Path(INTERP).name)

    pending = [out / name for name in _DYNAMIC]
    copied = {loader_name}
    while pending:
        binary = pending.pop()
        for soname in elf_needed(binary.read_bytes(), binary.name):
            if soname in copied:
                continue
            copied.add(soname)
            shutil.copyfile(_find_library(root, soname, dirs), out / "lib" / soname)
            pending.append(out / "lib" / soname)
    for name in _DYNAMIC:
        set_interpreter(out / name, INTERP)
    log.debug("agent bundle libraries: %s", ", ".join(sorted(copied)))
