"""banger-agent's files and tar streams over the wire, including hostile archives."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

from tests.agent_driver import AgentClient


def test_write_then_read_back_with_the_mode(agent: AgentClient, tmp_path: Path) -> None:
    target = tmp_path / "new" / "dir" / "file.bin"
    data = os.urandom(700_000)
    ch = agent.open("write", path=str(target), mode=0o640, mkdirs=True)
    ch.write(data)
    ch.eof()
    assert ch.wait() == {"ok": True, "size": len(data)}
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]  # no temporary left
    ch = agent.open("read", path=str(target))
    assert ch.wait() == {"ok": True, "size": len(data)}
    assert ch.stdout == data and 1 in ch.eofs


def test_a_cancelled_write_leaves_the_old_file(agent: AgentClient, tmp_path: Path) -> None:
    target = tmp_path / "keep"
    target.write_text("old")
    ch = agent.open("write", path=str(target))
    ch.write(b"half of the new")
    ch.cancel()
    assert ch.wait()["errno"] == "ECANCELED"
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.log", "agent.sock", "keep"]


def test_missing_files_and_directories_have_errnos(agent: AgentClient, tmp_path: Path) -> None:
    assert agent.call("read", path=str(tmp_path / "nope"))["errno"] == "ENOENT"
    assert agent.call("read", path=str(tmp_path))["errno"] == "EISDIR"
    assert agent.call("stat", path="relative/path")["errno"] == "EINVAL"
    assert agent.call("list", path=str(tmp_path / "nope"))["errno"] == "ENOENT"


def test_stat_and_list_describe_entries_without_following(
    agent: AgentClient, tmp_path: Path
) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"12345")
    os.chmod(tmp_path / "d" / "f", 0o4755)
    (tmp_path / "d" / "link").symlink_to("f")
    st = agent.call("stat", path=str(tmp_path / "d" / "link"))["stat"]
    assert (st["type"], st["target"], st["name"]) == ("symlink", "f", "link")
    followed = agent.call("stat", path=str(tmp_path / "d" / "link"), follow=True)["stat"]
    assert (followed["type"], followed["size"], followed["mode"]) == ("file", 5, 0o4755)
    entries = agent.call("list", path=str(tmp_path / "d"))["entries"]
    assert [(e["name"], e["type"]) for e in entries] == [("f", "file"), ("link", "symlink")]
    assert entries[0]["uid"] == os.getuid() and entries[0]["mtime"] > 0


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o751)
    (root / "sub" / "secret").write_text("s")
    os.chmod(root / "sub" / "secret", 0o600)
    os.chmod(root / "sub", 0o710)
    (root / "link").symlink_to("sub/secret")
    return root


def test_tar_get_keeps_modes_and_symlinks(agent: AgentClient, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    ch = agent.open("tar_get", dir=str(src), names=["."])
    assert ch.wait() == {"ok": True, "files": 4}
    with tarfile.open(fileobj=io.BytesIO(ch.stdout)) as archive:
        members = {m.name.rstrip("/"): m for m in archive.getmembers()}
        assert sorted(members) == ["link", "run.sh", "sub", "sub/secret"]
        assert members["link"].issym() and members["link"].linkname == "sub/secret"
        assert (members["run.sh"].mode, members["sub"].mode) == (0o751, 0o710)
        assert members["sub"].isdir() and members["sub/secret"].mode == 0o600
        handle = archive.extractfile("run.sh")
        assert handle is not None and handle.read() == b"#!/bin/sh\necho hi\n"


def _archive(entries: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for info, data in entries:
            info.size = len(data) if info.isfile() else 0
            archive.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return out.getvalue()


def _put(agent: AgentClient, dest: Path, archive: bytes) -> dict[str, object]:
    ch = agent.open("tar_put", dir=str(dest))
    ch.write(archive)
    ch.eof()
    return ch.wait()


def test_tar_put_extracts_modes_symlinks_and_archives_in_a_row(
    agent: AgentClient, tmp_path: Path
) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        archive.add(_tree(tmp_path / "src"), arcname=".")
    second = _archive([(tarfile.TarInfo("later.txt"), b"second archive")])
    dest = tmp_path / "dest"
    assert _put(agent, dest, out.getvalue() + second) == {"ok": True, "files": 5}
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o751
    assert stat.S_IMODE((dest / "sub").stat().st_mode) == 0o710
    assert stat.S_IMODE((dest / "sub" / "secret").stat().st_mode) == 0o600
    assert os.readlink(dest / "link") == "sub/secret"
    assert (dest / "later.txt").read_text() == "second archive"


def test_tar_put_refuses_names_that_leave_the_directory(agent: AgentClient, tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    for name in ("../outside/evil", f"{outside}/evil", "ok/../../outside/evil"):
        result = _put(agent, dest, _archive([(tarfile.TarInfo(name), b"x")]))
        assert (result["ok"], result["errno"]) == (False, "EINVAL"), name
    assert list(outside.iterdir()) == []


def test_tar_put_never_follows_a_symlink(agent: AgentClient, tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    link = tarfile.TarInfo("escape")
    link.type, link.linkname = tarfile.SYMTYPE, str(outside)
    result = _put(agent, dest, _archive([(link, b""), (tarfile.TarInfo("escape/evil"), b"x")]))
    assert (result["ok"], result["errno"]) == (False, "ENOTDIR")
    assert "never followed" in str(result["error"])
    # A symlink the guest already had is replaced, never written through.
    (dest / "victim").symlink_to(outside / "target")
    assert _put(agent, dest, _archive([(tarfile.TarInfo("victim"), b"new")]))["ok"]
    assert list(outside.iterdir()) == []
    assert (dest / "victim").read_bytes() == b"new" and not (dest / "victim").is_symlink()


def test_tar_put_refuses_what_is_not_a_tar(agent: AgentClient, tmp_path: Path) -> None:
    result = _put(agent, tmp_path / "dest", b"this is not a tar archive" * 40)
    assert (result["ok"], result["errno"]) == (False, "EINVAL")


def test_hard_links_go_out_once_and_come_back_linked(agent: AgentClient, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a").write_bytes(b"shared content")
    os.link(src / "a", src / "b")
    ch = agent.open("tar_get", dir=str(src))
    assert ch.wait()["ok"]
    with tarfile.open(fileobj=io.BytesIO(ch.stdout)) as archive:
        kinds = {m.name: (m.islnk(), m.linkname) for m in archive.getmembers()}
    assert kinds == {"a": (False, ""), "b": (True, "a")}
    dest = tmp_path / "dest"
    assert _put(agent, dest, ch.stdout) == {"ok": True, "files": 2}
    assert (dest / "b").read_bytes() == b"shared content"
    assert (dest / "a").stat().st_ino == (dest / "b").stat().st_ino
