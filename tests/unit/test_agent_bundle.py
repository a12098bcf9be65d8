"""The agent bundle: ELF rewriting, cache keys and reuse, without downloading."""

from __future__ import annotations

import json
import os
import shutil
import struct
from pathlib import Path

import pytest

from banger.errors import HostError
from banger.guest import bundle

HOST_BINARY = Path(shutil.which("ls") or "/bin/ls").resolve()


def _is_dynamic_elf64(path: Path) -> bool:
    head = path.read_bytes()[:6]
    return head[:4] == b"\x7fELF" and head[4] == 2 and head[5] == 1


needs_host_elf = pytest.mark.skipif(
    not _is_dynamic_elf64(HOST_BINARY), reason="needs a 64-bit little-endian host binary"
)


@needs_host_elf
def test_reads_interpreter_and_needed_libraries_of_a_real_binary() -> None:
    data = HOST_BINARY.read_bytes()
    interp = bundle.elf_interpreter(data)
    assert interp is not None and interp.startswith("/") and "ld" in interp
    assert "libc.so.6" in bundle.elf_needed(data)


@needs_host_elf
def test_rewrites_the_interpreter_in_place(tmp_path: Path) -> None:
    copy = tmp_path / "prog"
    shutil.copyfile(HOST_BINARY, copy)
    before = copy.stat().st_size
    bundle.set_interpreter(copy, bundle.INTERP)
    data = copy.read_bytes()
    assert bundle.elf_interpreter(data) == "/.banger/lib/ld.so"
    assert copy.stat().st_size == before
    assert bundle.elf_needed(data) == bundle.elf_needed(HOST_BINARY.read_bytes())


@needs_host_elf
def test_refuses_an_interpreter_longer_than_the_slot(tmp_path: Path) -> None:
    copy = tmp_path / "prog"
    shutil.copyfile(HOST_BINARY, copy)
    with pytest.raises(HostError, match="does not fit"):
        bundle.set_interpreter(copy, "/" + "x" * 200)
    assert copy.read_bytes() == HOST_BINARY.read_bytes()


def test_rejects_files_that_are_not_elf64(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="not a little-endian 64-bit ELF"):
        bundle.elf_needed(b"#!/bin/sh\n", "script")
    elf32 = b"\x7fELF\x01\x01" + b"\0" * 60
    with pytest.raises(HostError):
        bundle.elf_interpreter(elf32)


def test_static_binary_has_no_interpreter_or_needed() -> None:
    # A minimal ELF64 header with no program headers.
    header = bytearray(b"\x7fELF\x02\x01\x01" + b"\0" * 57)
    struct.pack_into("<QHH", header, 0x20, 64, 0, 0)
    assert bundle.elf_interpreter(bytes(header)) is None
    assert bundle.elf_needed(bytes(header)) == []


def test_key_depends_on_every_version() -> None:
    a = {"dropbear-bin": "2022.83-1", "libc6": "2.36-9"}
    assert bundle.bundle_key(a) == bundle.bundle_key(dict(reversed(a.items())))
    assert bundle.bundle_key(a) != bundle.bundle_key({**a, "libc6": "2.36-10"})


def _cached(cache: Path, versions: dict[str, str]) -> Path:
    dest = cache / bundle.bundle_key(versions)
    dest.mkdir(parents=True)
    (dest / bundle.MANIFEST).write_text(json.dumps({"format": bundle.BUNDLE_FORMAT}))
    return dest


def test_a_cached_bundle_is_reused_without_downloading(tmp_path, monkeypatch) -> None:
    versions = {"busybox-static": "1", "dropbear-bin": "2"}
    dest = _cached(tmp_path, versions)
    monkeypatch.setattr(bundle, "package_versions", lambda: versions)

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("downloaded although cached")

    monkeypatch.setattr(bundle.proc, "run", no_download)
    assert bundle.build_agent_bundle(tmp_path) == dest


def test_without_apt_the_newest_cached_bundle_serves(tmp_path, monkeypatch) -> None:
    _cached(tmp_path, {"dropbear-bin": "1"})
    newest = _cached(tmp_path, {"dropbear-bin": "2"})
    old_format = tmp_path / "oldformat"
    old_format.mkdir()
    (old_format / bundle.MANIFEST).write_text('{"format": 0}')

    def offline() -> dict[str, str]:
        raise HostError("apt-cache failed")

    monkeypatch.setattr(bundle, "package_versions", offline)
    os.utime(newest / bundle.MANIFEST, (2e9, 2e9))
    assert bundle.build_agent_bundle(tmp_path) == newest
    with pytest.raises(HostError, match="apt-cache failed"):
        bundle.build_agent_bundle(tmp_path / "empty")


DEPENDS = """busybox-static
dropbear-bin
  Depends: libc6
  Depends: <libz1>
    zlib1g
libc6
  Depends: libgcc-s1
<libz1>
zlib1g
libgcc-s1
"""

POLICY = """busybox-static:
  Installed: (none)
  Candidate: 1:1.35.0-4
dropbear-bin:
  Installed: (none)
  Candidate: 2022.83-1+deb12u3
libc6:
  Installed: 2.36-9
  Candidate: 2.36-9+deb12u14
libgcc-s1:
  Installed: 12.2.0-14
  Candidate: 12.2.0-14
openssh-sftp-server:
  Installed: (none)
  Candidate: 1:9.2p1-2+deb12u10
zlib1g:
  Installed: (none)
  Candidate: (none)
"""


def test_package_versions_follow_dependencies_and_take_leaves_alone(monkeypatch) -> None:
    calls: list[list[str]] = []

    def output(argv: list[str], **kwargs: object) -> str:
        calls.append([str(a) for a in argv])
        return DEPENDS if argv[1] == "depends" else POLICY

    monkeypatch.setattr(bundle.proc, "output", output)
    versions = bundle.package_versions()
    assert versions == {
        "busybox-static": "1:1.35.0-4",
        "dropbear-bin": "2022.83-1+deb12u3",
        "libc6": "2.36-9+deb12u14",
        "libgcc-s1": "12.2.0-14",
        "openssh-sftp-server": "1:9.2p1-2+deb12u10",
    }
    # The leaf's own dependencies (the OpenSSH client) are never asked for.
    assert "openssh-sftp-server" not in calls[0]
    assert "openssh-sftp-server" in calls[1]


def test_package_versions_fail_when_a_wanted_package_is_unknown(monkeypatch) -> None:
    monkeypatch.setattr(
        bundle.proc, "output", lambda argv, **kw: DEPENDS if argv[1] == "depends" else ""
    )
    with pytest.raises(HostError, match="no candidate for busybox-static, dropbear-bin"):
        bundle.package_versions()


def test_sftp_wrapper_gives_the_program_banger_libraries() -> None:
    lines = bundle.SFTP_WRAPPER.splitlines()
    assert lines[0] == "#!/.banger/bin/sh"
    assert lines[1] == 'LD_LIBRARY_PATH=/.banger/lib exec /.banger/libexec/sftp-server "$@"'
