"""Warm start on real QEMU guests: an image's boot snapshot saved, restored, refused (issue 12).

The session's daemon boots cold (conftest sets BANGER_WARM_START=0); this
module runs its own daemon with warm start on, over the same home, and
stops it after so the next module's daemon is the session's again.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ARTIFACTS, Banger

pytestmark = pytest.mark.e2e

SMALL = ("--vcpus", "1", "--memory", "512", "--work-disk-size", "1G")
IMAGE = "debian-bookworm"


def boots(banger: Banger, image: str = IMAGE) -> list[dict[str, object]]:
    shown = banger.json("image", "show", image)
    assert isinstance(shown, dict)
    return list(shown["boot_snapshots"])


def clear_boot_snapshots() -> None:
    """Start from an image without boot snapshots (an earlier run leaves its own)."""
    db = sqlite3.connect(ARTIFACTS / "banger.db")
    with db:
        db.execute("DELETE FROM snapshots WHERE kind = 'boot'")
    db.close()
    for path in (ARTIFACTS / "images").glob("*/boot-snapshots"):
        shutil.rmtree(path)


@pytest.fixture(scope="module")
def warm(banger_env: Banger, image: str) -> Iterator[Banger]:
    banger_env.run("daemon", "stop", check=True)
    clear_boot_snapshots()
    env = {**banger_env.env, "BANGER_WARM_START": "1"}
    warm = Banger(env=env, home=banger_env.home, runtime=banger_env.runtime)
    yield warm
    for vm in warm.json("vm", "list"):  # type: ignore[union-attr]
        warm.run("vm", "delete", vm["name"])  # type: ignore[index]
    warm.run("daemon", "stop")


def timed_create(banger: Banger, name: str, *extra: str) -> tuple[float, str]:
    started = time.monotonic()
    result = banger.run("vm", "create", "--name", name, *extra)
    took = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    return took, result.stderr


def sh(banger: Banger, name: str, line: str) -> tuple[int, str]:
    result = banger.run("vm", "exec", name, "--", "sh", "-c", line, timeout=120)
    return result.returncode, result.stdout


def test_the_first_create_saves_a_boot_snapshot_and_the_next_restores_it(warm: Banger) -> None:
    cold_s, first = timed_create(warm, "wrm-one", *SMALL)
    assert f"saved image {IMAGE}'s boot snapshot" in first, first
    [boot] = boots(warm)
    key = boot["key"]
    assert isinstance(key, dict)
    assert (key["memory_mib"], key["vcpus"], key["vmm"]) == ("512", "1", "qemu")
    assert Path(str(boot["dir"])).is_dir() and int(str(boot["size_bytes"])) > 0
    # Written in the first VM after its boot: not in the boot snapshot.
    assert sh(warm, "wrm-one", "echo mine > /root/after-boot")[0] == 0

    warm_s, second = timed_create(warm, "wrm-two", *SMALL)
    print(f"cold create {cold_s:.1f}s (with the save), warm create {warm_s:.1f}s")
    assert f"from image {IMAGE}'s boot snapshot" in second, second
    assert "saved image" not in second and "agent answered" not in second
    assert warm_s < cold_s
    one, two = warm.json("vm", "show", "wrm-one"), warm.json("vm", "show", "wrm-two")
    assert isinstance(one, dict) and isinstance(two, dict)
    assert two["boot_snapshot"] is True and two["snapshot"] == boot["name"]
    assert one["boot_snapshot"] is False and one["snapshot"] == ""
    assert one["ip"] != two["ip"] and one["mac"] != two["mac"]
    assert sh(warm, "wrm-two", "hostname") == (0, "wrm-two\n")
    assert sh(warm, "wrm-two", "test -e /root/after-boot")[0] != 0
    assert sh(warm, "wrm-one", "cat /root/after-boot") == (0, "mine\n")
    listed = warm.run("vm", "list").stdout
    assert "boot snapshot" in listed
    shown = warm.run("vm", "show", "wrm-two").stdout
    assert f"image {IMAGE}'s boot snapshot" in shown
    assert warm.run("vm", "delete", "wrm-one", "wrm-two").returncode == 0


def test_cold_boots_and_another_memory_boots_and_saves_saying_why_once(warm: Banger) -> None:
    _, cold = timed_create(warm, "wrm-cold", "--cold", *SMALL)
    assert "agent answered" in cold and "boot snapshot" not in cold, cold
    assert warm.json("vm", "show", "wrm-cold")["boot_snapshot"] is False  # type: ignore[index]
    assert warm.run("vm", "delete", "wrm-cold").returncode == 0

    bigger = ("--vcpus", "1", "--memory", "640", "--work-disk-size", "1G")
    _, changed = timed_create(warm, "wrm-big", *bigger)
    why = f"image {IMAGE}'s boot snapshot was made with another memory 512 MiB -> 640 MiB"
    assert changed.count(why) == 1, changed
    assert "booting, and saving a new one" in changed
    # Another shape is not stale: both stay, and the cache prune keeps them.
    assert sorted(b["key"]["memory_mib"] for b in boots(warm)) == ["512", "640"]  # type: ignore[index]
    assert warm.run("image", "cache", "prune").returncode == 0
    assert len(boots(warm)) == 2
    assert warm.run("vm", "delete", "wrm-big").returncode == 0


def test_a_truncated_boot_snapshot_falls_back_to_a_boot_and_is_removed(warm: Banger) -> None:
    [small] = [b for b in boots(warm) if b["key"]["memory_mib"] == "512"]  # type: ignore[index]
    memory = Path(str(small["dir"])) / "memory"
    assert memory.is_file()
    with memory.open("r+b") as handle:
        handle.truncate(memory.stat().st_size // 2)
    _, fell = timed_create(warm, "wrm-fall", *SMALL)
    assert fell.count("boot snapshot could not be restored") == 1, fell
    assert "truncated" in fell and "agent answered" in fell
    assert sh(warm, "wrm-fall", "hostname") == (0, "wrm-fall\n")
    assert warm.json("vm", "show", "wrm-fall")["boot_snapshot"] is False  # type: ignore[index]
    assert [b["key"]["memory_mib"] for b in boots(warm)] == ["640"]  # type: ignore[index]
    assert not Path(str(small["dir"])).exists()
    assert warm.run("vm", "delete", "wrm-fall").returncode == 0


def test_image_delete_removes_its_boot_snapshots(warm: Banger) -> None:
    """A copy of the image, registered and marked as banger's (its disk has the agent)."""
    source = warm.json("image", "show", IMAGE)
    assert isinstance(source, dict)
    copy = ARTIFACTS / "wrm-copy.ext4"
    subprocess.run(["cp", "--sparse=always", source["rootfs"], copy], check=True)
    try:
        registered = warm.run("image", "register", "wrm-copy", str(copy))
        assert registered.returncode == 0, registered.stderr
        db = sqlite3.connect(ARTIFACTS / "banger.db")
        with db:
            db.execute(
                "UPDATE images SET channel = ?, config = ?, work_seed = ?, init = ?"
                " WHERE name = 'wrm-copy'",
                (
                    source["channel"],
                    json.dumps(source["config"]),
                    source["work_seed"],
                    source["init"],
                ),
            )
        db.close()
        _, made = timed_create(warm, "wrm-copy-vm", "--image", "wrm-copy", *SMALL)
        assert "saved image wrm-copy's boot snapshot" in made, made
        [boot] = boots(warm, "wrm-copy")
        assert Path(str(boot["dir"])).is_dir()
        assert warm.run("vm", "delete", "wrm-copy-vm").returncode == 0
        deleted = warm.run("image", "delete", "wrm-copy")
        assert deleted.returncode == 0, deleted.stderr
        assert not (ARTIFACTS / "images" / "wrm-copy").exists()
        db = sqlite3.connect(ARTIFACTS / "banger.db")
        rows = db.execute("SELECT name FROM snapshots WHERE image = 'wrm-copy'").fetchall()
        db.close()
        assert rows == []
    finally:
        warm.run("image", "delete", "wrm-copy")
        copy.unlink(missing_ok=True)
