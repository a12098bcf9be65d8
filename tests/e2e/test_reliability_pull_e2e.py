"""kill -9 of bangerd at each step of an OCI `image pull`, then the same pull again.

The image comes from a registry on 127.0.0.1 and has three layers of
incompressible data, so each step (resolving, applying a layer, writing the
ext4) lasts long enough for the kill to land inside it. After each kill the
next command starts a daemon that sweeps: no image is registered, the
images directory holds no half-made tree, nothing leaks (the leak probe,
plus no orphaned child of the killed daemon still writing in banger's home),
and the same pull then succeeds.

A re-pull of a manifest flattened before spends its time in one step of its
own, the ``reuse`` stage: hard-linking the cached image directory into the new
image's staging directory, one link per file. Its image keeps a checkout's
worth of small files in /root (the work seed), so that step lasts over a
tenth of a second and the kill lands while its ``cp`` runs (seen running,
not assumed). After it the flat cache's entry is as it was, file for file,
and the next re-pull links it again.
"""

from __future__ import annotations

import io
import os
import re
import signal
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import BRIDGE, Banger
from .killer import at_stage, daemon_pid, dead, kill_during
from .leakprobe import argvs, leaks, processes
from .registry import add_layer, registry, skip_reason, umoci_image

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

NAME = "rel-pull"
LAYER_MIB = 24


def _layer(n: int):  # type: ignore[no-untyped-def]
    def edit(rootfs: Path) -> None:
        (rootfs / "data").mkdir(exist_ok=True)
        (rootfs / "data" / f"blob{n}.bin").write_bytes(os.urandom(LAYER_MIB << 20))
        (rootfs / "etc").mkdir(exist_ok=True)
        (rootfs / "etc" / f"layer{n}").write_text(f"{n}\n")

    return edit


@pytest.fixture(scope="module")
def three_layers(banger_env: Banger, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("rel-pull")
    layout = work / "layout"
    umoci_image(layout, "1", [_layer(n) for n in range(3)])
    with registry(work / "registry") as reg:
        yield reg.push(layout, "1", "rel/three")


def _kill_at(banger: Banger, line: re.Pattern[str], argv: list[str]) -> tuple[int, str]:
    """Run ``banger ARGV``; SIGKILL bangerd as soon as stderr shows ``line``."""
    pid = daemon_pid(banger)
    return kill_during(banger, argv, lambda text: bool(line.search(text)), lambda: pid, timeout=60)


def _ancestors() -> set[int]:
    """This test's own process and the ones that started it (flock, the shell...)."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def _workers_in(home: Path) -> list[str]:
    """Processes working on files under banger's home other than its own (mkfs, cp...)."""
    found, mine = [], _ancestors()
    for pid, cmdline in processes().items():
        if pid in mine:
            continue
        ours = any(p in cmdline for p in ("qemu-system", "bangerd", "banger-helper"))
        if f"{home}/" in cmdline and not ours:
            found.append(f"pid {pid}: {cmdline[:160]}")
    return found


def _settle(home: Path, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := _workers_in(home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


# Each step the pull reports: its stage line, a layer being applied while the
# next downloads, and the ext4 being written from the flattened tree.
KILL_POINTS = {
    "pull-stage": re.compile(r"^\[ *\d+\.\ds\] pull: "),
    "applying-layer": re.compile(r"applying layer 2/3 "),
    "writing-ext4": re.compile(r"writing the ext4 disk"),
}


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_a_daemon_killed_while_pulling_registers_nothing_and_the_pull_succeeds_after(
    banger: Banger, three_layers: str, point: str
) -> None:
    images = banger.home / "images"
    # Cold each time: no blob and no flattened disk kept from the last case.
    banger.run("image", "delete", NAME)
    assert banger.run("image", "cache", "prune").returncode == 0
    pull = ["image", "pull", three_layers, "--name", NAME]
    log = banger.home / "logs" / "bangerd.log"
    logged = log.stat().st_size if log.exists() else 0

    code, err = _kill_at(banger, KILL_POINTS[point], pull)
    assert code != 0
    assert f"the daemon stopped while pulling image {NAME}" in err, err
    assert "an unfinished pull registers nothing, so pull again" in err

    listed = banger.run("image", "list", "--json")  # a new daemon: its sweep runs first
    assert listed.returncode == 0, listed.stderr
    assert NAME not in listed.stdout
    # The kill landed inside the pull: the new daemon's sweep removed its work.
    with log.open("rb") as f:
        f.seek(logged)
        swept = f.read().decode(errors="replace")
    assert re.search(rf"sweep: removed {images}/\.?{NAME}[.,]", swept), swept[-2000:]
    assert _settle(banger.home) == []
    assert not (images / NAME).exists()
    assert [p.name for p in images.iterdir() if p.name.startswith(".")] == []
    assert leaks(banger.home, banger.runtime, BRIDGE) == []

    again = banger.run(*pull, timeout=600)
    assert again.returncode == 0, again.stderr
    shown = banger.json("image", "show", NAME)
    rootfs = Path(str(shown["rootfs"]))  # type: ignore[index]
    assert rootfs.is_file() and rootfs.stat().st_size > 3 * (LAYER_MIB << 20)
    assert banger.run("image", "delete", NAME).returncode == 0
    assert leaks(banger.home, banger.runtime, BRIDGE) == []


REPULL = "rel-repull"
BASE = "rel-repull-base"
# 6,000 files in /root: linking them lasts over 0.1 s here, and the kill lands ~10 ms in.
SEED_DIRS, SEED_FILES = 20, 300


def _checkout() -> bytes:
    """A layer of SEED_DIRS x SEED_FILES small files under /root/src (tar, built here:
    umoci takes seconds to diff that many)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for name in ["root", "root/src", *(f"root/src/d{d}" for d in range(SEED_DIRS))]:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o700 if name == "root" else 0o755
            tar.addfile(info)
        for d in range(SEED_DIRS):
            for n in range(SEED_FILES):
                data = f"int f{d}_{n};\n".encode()
                info = tarfile.TarInfo(f"root/src/d{d}/f{n}.c")
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture(scope="module")
def seeded(banger_env: Banger, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An image with a big /root, pulled once as BASE: its flattened disk is cached (and in
    use, so the cold cases' `image cache prune` keeps it)."""
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("rel-repull")
    umoci_image(work / "layout", "base", [])
    add_layer(work / "layout", "base", "1", _checkout())
    with registry(work / "registry") as reg:
        ref = reg.push(work / "layout", "1", "rel/seeded")
        banger_env.run("image", "delete", BASE)
        pulled = banger_env.run("image", "pull", ref, "--name", BASE, timeout=900)
        assert pulled.returncode == 0, pulled.stderr
        yield ref
        banger_env.run("image", "delete", BASE)


def _flat_entry(banger: Banger, image: str) -> Path:
    """The flat cache's entry whose disk ``image`` links."""
    rootfs = Path(str(banger.json("image", "show", image)["rootfs"]))  # type: ignore[index]
    ino = rootfs.stat().st_ino
    for disk in (banger.home / "cache" / "flat").glob("*/image/rootfs.ext4"):
        if disk.stat().st_ino == ino:
            return disk.parent.parent
    raise AssertionError(f"no flat cache entry links {rootfs}")


def _state(entry: Path) -> dict[str, tuple[int, int, int, int, int]]:
    """Every file of a cache entry as a re-pull must leave it: same inode, links, bytes, times."""
    out = {}
    for path in sorted(entry.rglob("*")):
        st = path.lstat()
        out[str(path.relative_to(entry))] = (
            st.st_ino, st.st_mode, st.st_size, st.st_nlink, st.st_mtime_ns
        )  # fmt: skip
    return out


def _linker(staging: str, timeout: float = 5) -> int:
    """The pid of the `cp --link` placing the cached image in ``staging``, once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, argv in argvs().items():
            if argv[0] == b"cp" and b"--link" in argv and any(staging.encode() in a for a in argv):
                return pid
        time.sleep(0.005)
    raise AssertionError(f"no cp linking into {staging}* ran")


@pytest.mark.parametrize("outlived", [False, True], ids=["linking", "linker-outlives-it"])
def test_a_daemon_killed_while_a_re_pull_links_the_cached_disk_leaves_the_cache_whole(
    banger: Banger, seeded: str, outlived: bool
) -> None:
    """Killed inside the ``reuse`` stage; with ``outlived`` its orphaned cp is held
    (SIGSTOP) so the new daemon finds it still linking and must stop it first."""
    images = banger.home / "images"
    banger.run("image", "delete", REPULL)
    entry = _flat_entry(banger, BASE)
    before = _state(entry)
    log = banger.home / "logs" / "bangerd.log"
    logged = log.stat().st_size if log.exists() else 0
    pull = ["image", "pull", seeded, "--name", REPULL]
    daemon, linker = daemon_pid(banger), []

    def victim() -> int:
        linker.append(_linker(f"{images}/.{REPULL}.build-"))
        if outlived:
            os.kill(linker[0], signal.SIGSTOP)
        return daemon

    code, err = kill_during(banger, pull, at_stage("reuse"), victim, timeout=60)
    assert code != 0
    assert f"the daemon stopped while pulling image {REPULL}" in err, err
    assert "applying layer" not in err

    listed = banger.json("image", "list")  # a new daemon: its sweep runs first
    assert REPULL not in [image["name"] for image in listed]  # type: ignore[attr-defined]
    with log.open("rb") as f:
        f.seek(logged)
        swept = f.read().decode(errors="replace")
    # Killed before the staged image was renamed into place: the hidden staging went.
    assert re.search(rf"sweep: removed {images}/\.{REPULL}\.build-", swept), swept[-2000:]
    if outlived:
        assert f"sweep: killed pid {linker[0]}, " in swept, swept[-2000:]
    assert dead(linker[0])
    assert _settle(banger.home) == []
    assert not (images / REPULL).exists()
    assert [p.name for p in images.iterdir() if p.name.startswith(".")] == []
    assert leaks(banger.home, banger.runtime, BRIDGE) == []
    # The entry is untouched: every file still there, linked by the cache and BASE only.
    assert _state(entry) == before

    started = time.monotonic()
    again = banger.run(*pull, timeout=600)
    took = time.monotonic() - started
    assert again.returncode == 0, again.stderr
    assert re.search(r"\] reuse: ", again.stderr) and "applying layer" not in again.stderr
    rootfs = Path(str(banger.json("image", "show", REPULL)["rootfs"]))  # type: ignore[index]
    assert rootfs.stat().st_ino == (entry / "image" / "rootfs.ext4").stat().st_ino
    assert took < 20, f"the re-pull after the kill took {took:.1f}s"
    assert banger.run("image", "delete", REPULL).returncode == 0
    assert _state(entry) == before
    assert leaks(banger.home, banger.runtime, BRIDGE) == []
