"""kill -9 of bangerd at each step of an OCI `image pull`, then the same pull again.

The image comes from a registry on 127.0.0.1 and has three layers of
incompressible data, so each step (resolving, applying a layer, writing the
ext4) lasts long enough for the kill to land inside it. After each kill the
next command starts a daemon that sweeps: no image is registered, the
images directory holds no half-made tree, nothing leaks (the leak probe,
plus no orphaned child of the killed daemon still writing in banger's home),
and the same pull then succeeds.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import BRIDGE, Banger
from .killer import daemon_pid, kill_during
from .leakprobe import leaks
from .registry import registry, skip_reason, umoci_image

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
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in mine:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        ours = any(p in cmdline for p in ("qemu-system", "bangerd", "banger-helper"))
        if f"{home}/" in cmdline and not ours:
            found.append(f"pid {entry.name}: {cmdline[:160]}")
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
