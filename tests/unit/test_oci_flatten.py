"""Layer flattening with tars built here: semantics, then a corpus of hostile layers."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from banger.errors import HostError, UserError
from banger.image.flatten import Layer, flatten

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="ownership and device nodes need root")
T = 1_650_000_000


def entry(name: str, kind: str = "file", data: bytes = b"", **kw) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = {
        "file": tarfile.REGTYPE,
        "dir": tarfile.DIRTYPE,
        "sym": tarfile.SYMTYPE,
        "link": tarfile.LNKTYPE,
        "chr": tarfile.CHRTYPE,
        "blk": tarfile.BLKTYPE,
        "fifo": tarfile.FIFOTYPE,
    }[kind]
    info.mode = kw.pop("mode", 0o755 if kind == "dir" else 0o644)
    info.mtime = kw.pop("mtime", T)
    info.size = len(data) if kind == "file" else 0
    for key, value in kw.items():
        setattr(info, key, value)
    return info, data


def tarball(*entries: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data)
    if how == "zstd":
        return subprocess.run(["zstd", "-q", "-c"], input=data, capture_output=True).stdout
    return data


@pytest.fixture
def world(tmp_path: Path):
    """root/ is the image; outside/ holds what an attack would aim at."""
    (tmp_path / "root").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside/secret").write_text("keep")
    (tmp_path / "blobs").mkdir()
    return tmp_path


def layer(world: Path, data: bytes, how: str = "gzip") -> Layer:
    blob = compress(data, how)
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    path = world / "blobs" / digest.split(":")[1]
    path.write_bytes(blob)
    return Layer(digest=digest, path=path, size=len(blob))


def apply(world: Path, *tars: bytes, how: str = "gzip") -> Path:
    flatten([layer(world, t, how) for t in tars], world / "root")
    return world / "root"


def outside_state(world: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirs, files in os.walk(world):
        if Path(dirpath) == world:
            dirs[:] = [d for d in dirs if d not in ("root", "blobs")]
        for name in dirs + files:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p)] = (st.st_mode, st.st_mtime_ns, p.read_bytes() if p.is_file() else None)
    return out


# -- semantics ------------------------------------------------------------------


def test_files_dirs_links_modes_and_times(world: Path) -> None:
    root = apply(
        world,
        tarball(
            entry("./", "dir", mode=0o755),
            entry("bin", "dir", mtime=T + 1),
            entry("bin/su", data=b"su", mode=0o4755),
            entry("bin/wall", data=b"w", mode=0o2711),
            entry("tmp", "dir", mode=0o1777),
            entry("etc/passwd", data=b"root:x:0:0\n", mtime=T + 5),
            entry("etc/link", "sym", linkname="passwd"),
            entry("etc/abs", "sym", linkname="/etc/passwd"),
            entry("etc/hard", "link", linkname="etc/passwd"),
            entry("run/fifo", "fifo", mode=0o620),
            entry("/abs/name", data=b"normalized"),
        ),
    )
    assert stat.S_IMODE((root / "bin/su").stat().st_mode) == 0o4755
    assert stat.S_IMODE((root / "bin/wall").stat().st_mode) == 0o2711
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    assert os.readlink(root / "etc/link") == "passwd"
    assert os.readlink(root / "etc/abs") == "/etc/passwd"
    assert (root / "etc/hard").stat().st_ino == (root / "etc/passwd").stat().st_ino
    assert stat.S_ISFIFO((root / "run/fifo").lstat().st_mode)
    assert stat.S_IMODE((root / "run/fifo").lstat().st_mode) == 0o620
    assert (root / "abs/name").read_bytes() == b"normalized"
    assert (root / "etc/passwd").stat().st_mtime == T + 5
    # Set last, so the files written into it did not move it.
    assert (root / "bin").stat().st_mtime == T + 1
    assert (root / "etc/link").lstat().st_mtime == T


@needs_root
def test_ownership_devices_and_xattrs(world: Path) -> None:
    dev = entry("dev/null", "chr", mode=0o666, devmajor=1, devminor=3)
    blk = entry("dev/loop0", "blk", mode=0o660, devmajor=7, devminor=0, gid=6)
    attr = entry("f", data=b"x", uid=1000, gid=1001)
    attr[0].pax_headers = {"SCHILY.xattr.user.banger": "hello", "mtime": f"{T}.25"}
    root = apply(
        world,
        tarball(
            entry("home/u", "dir", uid=1000, gid=1000, mode=0o700),
            entry("home/u/l", "sym", linkname="/nowhere", uid=1000, gid=1000),
            dev,
            blk,
            attr,
        ),
    )
    st = (root / "home/u").stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o700)
    assert (root / "home/u/l").lstat().st_uid == 1000
    assert (root / "dev/null").lstat().st_rdev == os.makedev(1, 3)
    assert stat.S_ISCHR((root / "dev/null").lstat().st_mode)
    assert stat.S_IMODE((root / "dev/null").lstat().st_mode) == 0o666
    assert stat.S_ISBLK((root / "dev/loop0").lstat().st_mode)
    assert (root / "dev/loop0").lstat().st_gid == 6
    assert os.getxattr(root / "f", "user.banger") == b"hello"
    assert (root / "f").stat().st_mtime_ns == T * 10**9 + 250_000_000
    assert (root / "f").stat().st_uid == 1000


def test_whiteouts_and_opaque_directories(world: Path) -> None:
    lower = tarball(
        entry("a/x", data=b"x"),
        entry("a/y", data=b"y"),
        entry("b/deep/z", data=b"z"),
        entry("d/old", data=b"old"),
        entry("d/sub/old", data=b"old"),
        entry("e/old", data=b"old"),
    )
    upper = tarball(
        entry("a/.wh.x"),
        entry(".wh.b"),
        entry("d", "dir"),
        entry("d/kept-before", data=b"1"),
        entry("d/.wh..wh..opq"),
        entry("d/sub/new", data=b"2"),
        entry("e/.wh..wh..opq"),
        entry(".wh.never-existed"),
        entry("missing-parent/.wh.x"),
    )
    root = apply(world, lower, upper)
    assert sorted(os.listdir(root / "a")) == ["y"]
    assert not (root / "b").exists()
    assert sorted(os.listdir(root / "d")) == ["kept-before", "sub"]
    assert os.listdir(root / "d/sub") == ["new"]
    assert os.listdir(root / "e") == []
    assert not (root / "missing-parent").exists()


def test_later_layers_replace_entries_of_any_type(world: Path) -> None:
    lower = tarball(
        entry("dir-then-file/x", data=b"x"),
        entry("file-then-dir", data=b"f"),
        entry("link-then-dir", "sym", linkname="/tmp"),
        entry("keep", "dir", mode=0o700),
    )
    upper = tarball(
        entry("dir-then-file", data=b"now a file"),
        entry("file-then-dir", "dir"),
        entry("link-then-dir", "dir"),
        entry("keep", "dir", mode=0o750),
    )
    root = apply(world, lower, upper)
    assert (root / "dir-then-file").read_bytes() == b"now a file"
    assert (root / "file-then-dir").is_dir()
    assert (root / "link-then-dir").is_dir() and not (root / "link-then-dir").is_symlink()
    assert stat.S_IMODE((root / "keep").stat().st_mode) == 0o750


def test_symlinked_parents_resolve_inside_the_root(world: Path) -> None:
    root = apply(
        world,
        tarball(entry("usr/lib", "dir"), entry("lib", "sym", linkname="/usr/lib")),
        tarball(entry("lib/libc.so", data=b"c"), entry("rel", "sym", linkname="usr/../usr/lib")),
        tarball(entry("rel/more", data=b"m"), entry("lib/hard", "link", linkname="lib/libc.so")),
    )
    assert (root / "usr/lib/libc.so").read_bytes() == b"c"
    assert (root / "usr/lib/more").read_bytes() == b"m"
    assert (root / "usr/lib/hard").stat().st_ino == (root / "usr/lib/libc.so").stat().st_ino
    assert (root / "lib").is_symlink()


@pytest.mark.parametrize("how", ["tar", "gzip", "zstd"])
def test_every_compression_gives_the_same_tree(world: Path, how: str) -> None:
    if how == "zstd" and shutil.which("zstd") is None:
        pytest.skip("zstd is not installed")
    root = apply(world, tarball(entry("a/b", data=b"x" * 100_000)), how=how)
    assert (root / "a/b").read_bytes() == b"x" * 100_000
    assert [p.name for p in (world / "blobs").iterdir() if p.name.startswith(".")] == []


def test_damaged_cached_blob_fails_verification(world: Path) -> None:
    good = layer(world, tarball(entry("a", data=b"a")))
    bad = Layer(digest="sha256:" + "0" * 64, path=good.path, size=good.size)
    with pytest.raises(UserError, match="sha256:0000") as err:
        flatten([bad], world / "root")
    assert "prune" in (err.value.hint or "")


# -- hostile layers ----------------------------------------------------------------

ESCAPES = {
    "dotdot": [entry("../outside/pwned", data=b"!")],
    "dotdot-inner": [entry("a/../../outside/pwned", data=b"!")],
    "symlink-then-write": [
        entry("evil", "sym", linkname="../outside"),
        entry("evil/pwned", data=b"!"),
    ],
    "symlink-chain": [
        entry("d", "dir"),
        entry("d/up", "sym", linkname=".."),
        entry("d/up2", "sym", linkname="up/.."),
        entry("d/up2/outside/pwned", data=b"!"),
    ],
    "symlink-then-mkdir": [entry("evil", "sym", linkname="../../.."), entry("evil/x/", "dir")],
    "symlink-then-secret-overwrite": [
        entry("evil", "sym", linkname="../outside"),
        entry("evil/secret", data=b"overwritten"),
    ],
    "hardlink-out": [entry("h", "link", linkname="../outside/secret")],
    "hardlink-through-symlink": [
        entry("evil", "sym", linkname="../outside"),
        entry("h", "link", linkname="evil/secret"),
    ],
    "hardlink-missing": [entry("h", "link", linkname="nope")],
    "whiteout-dotdot": [entry("a/.wh..."), entry("x", data=b"")],
    "whiteout-outside": [entry("../outside/.wh.secret")],
    "whiteout-through-symlink": [
        entry("evil", "sym", linkname="../outside"),
        entry("evil/.wh.secret"),
    ],
    "opaque-through-symlink": [
        entry("evil", "sym", linkname="../outside"),
        entry("evil/.wh..wh..opq"),
    ],
    "symlink-loop": [
        entry("a", "sym", linkname="b"),
        entry("b", "sym", linkname="a"),
        entry("a/x", data=b"!"),
    ],
    "file-as-parent": [entry("f", data=b"f"), entry("f/x", data=b"!")],
}


@pytest.mark.parametrize("case", sorted(ESCAPES))
def test_escapes_are_refused_and_nothing_outside_changes(world: Path, case: str) -> None:
    before = outside_state(world)
    bad = layer(world, tarball(*ESCAPES[case]))
    with pytest.raises(UserError) as err:
        flatten([bad], world / "root")
    assert bad.digest in err.value.message
    assert "entry" in err.value.message
    assert outside_state(world) == before
    assert (world / "outside/secret").read_text() == "keep"


def test_absolute_symlink_targets_stay_inside(world: Path) -> None:
    before = outside_state(world)
    root = apply(
        world,
        tarball(
            entry("evil", "sym", linkname=str(world / "outside")),
            entry("evil/pwned", data=b"inside"),
        ),
    )
    assert outside_state(world) == before
    assert (root / str(world / "outside")[1:] / "pwned").read_bytes() == b"inside"


@pytest.mark.parametrize(
    ("what", "make"),
    [
        ("truncated gzip", lambda t: gzip.compress(t)[: len(gzip.compress(t)) // 2]),
        ("corrupt tar", lambda t: b"\x00garbage" * 200),
        ("truncated tar", lambda t: t[:700]),
        ("gzip with bad crc", lambda t: gzip.compress(t)[:-8] + b"\0" * 8),
    ],
)
def test_broken_archives_fail_naming_the_blob(world: Path, what: str, make) -> None:
    data = make(tarball(entry("big", data=os.urandom(4096)), entry("small", data=b"s")))
    bad = layer(world, data, how="tar")
    with pytest.raises(UserError) as err:
        flatten([bad], world / "root")
    assert bad.digest in err.value.message, what


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_a_clear_error_naming_blob_and_entry(world: Path):
    small = world / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        big = layer(world, tarball(entry("big.bin", data=os.urandom(3 << 20))))
        (small / "root").mkdir()
        with pytest.raises(HostError, match=r"disk full while writing entry 'big\.bin'") as err:
            flatten([big], small / "root")
        assert big.digest in err.value.message
        assert err.value.hint and "free space" in err.value.hint
    finally:
        subprocess.run(["umount", str(small)], check=True)
    assert (world / "outside/secret").read_text() == "keep"


# -- a layer must read to its end ------------------------------------------------


def members_at(data: bytes) -> dict[str, tuple[int, int]]:
    """Each member's header offset and the offset just past its padded data."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name: (m.offset, m.offset_data + -(-m.size // 512) * 512) for m in tar.getmembers()
        }


THREE = (entry("a", data=b"a" * 700), entry("b", data=b"b"), entry("c", data=b"c" * 10))


@pytest.mark.parametrize("how", ["tar", "gzip"])
def test_a_bad_checksum_after_valid_members_is_refused_with_its_offset(
    world: Path, how: str
) -> None:
    data = bytearray(tarball(*THREE))
    at = members_at(bytes(data))["b"][0]
    data[at + 148 : at + 156] = b"0000000\0"  # checksum field: no longer matches
    bad = layer(world, bytes(data), how=how)
    with pytest.raises(UserError) as err:
        flatten([bad], world / "root")
    assert bad.digest in err.value.message
    assert f"does not end cleanly at byte {at}" in err.value.message
    assert err.value.hint and "pull again" in err.value.hint


def test_a_layer_cut_in_the_middle_of_a_member_is_refused(world: Path) -> None:
    data = tarball(*THREE)
    cut = members_at(data)["a"][0] + 512 + 300  # inside a's 700 bytes
    bad = layer(world, data[:cut], how="tar")
    with pytest.raises(UserError, match=r"truncated archive at entry 'a' \(byte \d+") as err:
        flatten([bad], world / "root")
    assert bad.digest in err.value.message


def test_a_layer_cut_inside_a_header_is_refused(world: Path) -> None:
    data = tarball(*THREE)
    at = members_at(data)["c"][0]
    bad = layer(world, data[: at + 100], how="tar")
    with pytest.raises(UserError, match=f"at byte {at} ") as err:
        flatten([bad], world / "root")
    assert bad.digest in err.value.message


def test_data_after_the_end_of_archive_is_refused(world: Path) -> None:
    data = tarball(*THREE)
    bad = layer(world, data + b"\0" * 1024 + b"trailing garbage", how="gzip")
    with pytest.raises(UserError) as err:
        flatten([bad], world / "root")
    assert f"byte {len(data) + 1024} " in err.value.message
    assert "data after the end-of-archive marker" in err.value.message


def test_one_zero_block_is_not_an_end_of_archive(world: Path) -> None:
    data = tarball(*THREE)
    end = members_at(data)["c"][1]
    bad = layer(world, data[: end + 512], how="tar")
    with pytest.raises(UserError, match=f"at byte {end} .*one of the two zero blocks"):
        flatten([bad], world / "root")


@pytest.mark.parametrize("ending", ["record padding", "two zero blocks", "none"])
def test_archives_that_end_as_tar_writers_end_them_are_applied(world: Path, ending: str) -> None:
    data = tarball(*THREE)
    end = members_at(data)["c"][1]
    cut = {"record padding": len(data), "two zero blocks": end + 1024, "none": end}[ending]
    root = apply(world, data[:cut])
    assert (root / "a").read_bytes() == b"a" * 700
    assert (root / "c").read_bytes() == b"c" * 10


# -- resource bombs (issue 10: no cap on decompressed bytes or header size) --------


def test_a_huge_extended_header_is_refused_before_it_is_read(world: Path) -> None:
    import resource

    # A pax header declaring 300 MiB of zeros compresses to a few hundred KiB;
    # tarfile would read it whole into memory.
    header = tarfile.TarInfo("././@PaxHeader")
    header.type = tarfile.XHDTYPE
    header.size = 300 << 20
    raw = header.tobuf(format=tarfile.USTAR_FORMAT)
    zeros = gzip.compress(raw + bytes(header.size) + bytes(1024), compresslevel=1)
    assert len(zeros) < 2 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(UserError, match="extended header is over 1048576 bytes"):
        flatten([layer(world, zeros, how="tar")], world / "root")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 100
    assert list((world / "root").iterdir()) == []


@pytest.mark.parametrize("how", ["gzip", "tar", "zstd"])
def test_a_layer_that_unpacks_past_the_cap_is_refused(
    world: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from banger.image import flatten as flat

    monkeypatch.setattr(flat, "MAX_LAYER_BYTES", 1 << 20)
    bomb = tarball(entry("zeros", data=bytes(2 << 20)))
    with pytest.raises(UserError, match="unpacks to more than"):
        flatten([layer(world, bomb, how)], world / "root")
