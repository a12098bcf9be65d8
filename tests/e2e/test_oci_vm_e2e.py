"""A registry image with no init and no SSH server becomes a VM banger can use."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Banger
from .registry import registry, skip_reason, umoci_image

pytestmark = pytest.mark.e2e


def _busybox_rootfs(busybox: Path) -> callable:  # type: ignore[valid-type]
    def edit(rootfs: Path) -> None:
        (rootfs / "bin").mkdir(parents=True, exist_ok=True)
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        for applet in ("sh", "cat", "echo", "ls", "hostname", "uname", "ps"):
            os.symlink("busybox", rootfs / "bin" / applet)
        (rootfs / "etc").mkdir(exist_ok=True)
        (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (rootfs / "root").mkdir(mode=0o700, exist_ok=True)
        (rootfs / "root" / ".profile").write_text("export FROM_IMAGE=1\n")

    return edit


@pytest.fixture(scope="module")
def bare_image(banger_env: Banger, image: str, tmp_path_factory) -> Iterator[str]:
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    busybox = next((banger_env.home / "kernels").glob("*/busybox"))
    work = tmp_path_factory.mktemp("oci-vm")
    layout = work / "layout"
    umoci_image(layout, "1", [_busybox_rootfs(busybox)])
    with registry(work / "registry") as reg:
        yield reg.push(layout, "1", "bare/busybox")


def test_a_bare_busybox_image_boots_and_runs_commands(banger: Banger, bare_image: str):
    pulled = banger.run("image", "pull", bare_image, "--name", "e2e-bare", timeout=900)
    assert pulled.returncode == 0, pulled.stderr
    assert re.search(r"layer [0-9a-f]{12}: .* done", pulled.stderr)
    shown = banger.json("image", "show", "e2e-bare")
    assert shown["source"].startswith(f"oci:{bare_image}@sha256:")  # type: ignore[index]
    assert shown["config"]["cmd"] == ["/bin/sh"]  # type: ignore[index]
    assert shown["config"]["env"] == ["A=1"] and shown["config"]["working_dir"] == "/srv"  # type: ignore[index]
    assert shown["init"] == "/.banger/agent"  # type: ignore[index]
    assert Path(shown["rootfs"]).is_file()  # type: ignore[index, arg-type]
    try:
        result = banger.run(
            "vm", "run", "--image", "e2e-bare", "--", "sh", "-c", "echo hi from $(hostname); exit 4"
        )
        assert result.returncode == 4, result.stderr
        assert result.stdout.startswith("hi from ")
        # The image's /root became the work disk's seed.
        vm = banger.create("e2e-bare-vm", "--image", "e2e-bare")
        seeded = banger.run("vm", "ssh", "e2e-bare-vm", "--", "cat", "/root/.profile")
        assert seeded.stdout == "export FROM_IMAGE=1\n", seeded.stderr
        refused = banger.run("image", "delete", "e2e-bare")
        assert refused.returncode != 0 and "used by VM(s) e2e-bare-vm" in refused.stderr
        assert banger.run("vm", "delete", str(vm["name"])).returncode == 0
        banger.created.clear()
    finally:
        deleted = banger.run("image", "delete", "e2e-bare")
    assert deleted.returncode == 0, deleted.stderr
    assert not Path(shown["rootfs"]).exists()  # type: ignore[index, arg-type]


def test_a_re_pull_links_the_disk_made_before(banger: Banger, bare_image: str):
    first = banger.run("image", "pull", bare_image, "--name", "e2e-flat-1", timeout=900)
    assert first.returncode == 0, first.stderr
    try:
        started = time.monotonic()
        second = banger.run("image", "pull", bare_image, "--name", "e2e-flat-2", timeout=900)
        took = time.monotonic() - started
        assert second.returncode == 0, second.stderr
        assert "was flattened before with these options: reusing it" in second.stderr
        assert "applying layer" not in second.stderr
        one, two = (banger.json("image", "show", n) for n in ("e2e-flat-1", "e2e-flat-2"))
        assert one["source"] == two["source"] and one["init"] == two["init"]  # type: ignore[index]
        assert one["config"] == two["config"]  # type: ignore[index]
        # The same disk, linked: no second copy on the host.
        ino = {os.stat(str(i["rootfs"])).st_ino for i in (one, two)}  # type: ignore[index]
        assert len(ino) == 1, took
        # Another size is another disk.
        resized = banger.run(
            "image", "pull", bare_image, "--name", "e2e-flat-3", "--size", "2G", timeout=900
        )
        assert resized.returncode == 0, resized.stderr
        assert "reusing it" not in resized.stderr
    finally:
        for name in ("e2e-flat-1", "e2e-flat-2", "e2e-flat-3"):
            banger.run("image", "delete", name)


def test_cache_prune_reports_one_line(banger: Banger, bare_image: str):
    line = (
        r"across \d+ blob\(s\) in \S+; {0} \S+ \S+ across \d+ flattened image\(s\) no image uses\n"
    )
    dry = banger.run("image", "cache", "prune", "--dry-run")
    assert dry.returncode == 0
    assert re.fullmatch(r"would free \S+ \S+ " + line.format("would free"), dry.stdout)
    real = banger.run("image", "cache", "prune")
    assert re.fullmatch(r"freed \S+ \S+ " + line.format("freed"), real.stdout)
    again = banger.run("image", "cache", "prune")
    assert again.stdout.startswith("freed 0 B across 0 blob(s)")
    assert "freed 0 B across 0 flattened image(s)" in again.stdout
