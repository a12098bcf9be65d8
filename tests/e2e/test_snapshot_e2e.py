"""Pause and resume, snapshots, forks and restores of real QEMU guests (issue 12)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import ARTIFACTS, BIN, Banger, wait_gone

pytestmark = pytest.mark.e2e

SMALL = ("--vcpus", "1", "--memory", "512", "--work-disk-size", "1G")


def ssh(banger: Banger, name: str, *command: str) -> subprocess.CompletedProcess[str]:
    return banger.run("vm", "ssh", name, "--", *command, timeout=120)


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def vm_dirs() -> set[str]:
    vms = ARTIFACTS / "vms"
    return {p.name for p in vms.iterdir()} if vms.exists() else set()


def qemus() -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"qemu-system" in cmdline and str(ARTIFACTS).encode() in cmdline:
                found.add(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def no_snapshots(banger: Banger):
    """Each test starts and ends with no snapshot (a failed one may leave some)."""

    def clear() -> None:
        for snap in banger.json("vm", "snapshot", "list"):  # type: ignore[union-attr]
            banger.run("vm", "snapshot", "delete", snap["name"])  # type: ignore[index]

    clear()
    yield
    clear()


def test_pause_resume_then_stop_and_kill_of_a_paused_vm(banger: Banger) -> None:
    banger.create("snp-pause", *SMALL)
    paused = banger.run("vm", "pause", "snp-pause")
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout == "paused snp-pause (paused)\n"
    assert banger.json("vm", "show", "snp-pause")["state"] == "paused"  # type: ignore[index]
    listed = banger.run("vm", "list").stdout
    assert "paused" in listed
    refused = ssh(banger, "snp-pause", "true")
    assert refused.returncode != 0
    assert "is paused" in refused.stderr and "banger vm resume snp-pause" in refused.stderr

    resumed = banger.run("vm", "resume", "snp-pause")
    assert resumed.returncode == 0 and resumed.stdout == "resumed snp-pause (running)\n"
    assert ssh(banger, "snp-pause", "echo", "back").stdout == "back\n"

    # A paused VM stops gracefully (resumed to power off) and is killed at once.
    assert banger.run("vm", "pause", "snp-pause").returncode == 0
    stopped = banger.run("vm", "stop", "--timeout", "60", "snp-pause")
    assert stopped.returncode == 0 and "(stopped)" in stopped.stdout, stopped.stderr
    assert banger.run("vm", "start", "snp-pause").returncode == 0
    assert banger.run("vm", "pause", "snp-pause").returncode == 0
    killed = banger.run("vm", "kill", "snp-pause")
    assert killed.returncode == 0 and "(stopped)" in killed.stdout, killed.stderr
    assert banger.run("vm", "resume", "snp-pause").returncode != 0


def test_a_snapshot_forked_twice_keeps_files_and_processes_with_new_identities(
    banger: Banger,
) -> None:
    source = banger.create("snp-src", *SMALL)
    setup = (
        "echo from-the-source > /root/marker;"
        " STATE=held-in-memory-42 setsid sleep 100000 </dev/null >/dev/null 2>&1 &"
        " sleep 0.5; pgrep -x sleep"
    )
    pid = ssh(banger, "snp-src", "sh", "-c", setup).stdout.split()[0]

    made = banger.run("vm", "snapshot", "create", "snp-src", "snp-one")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("snapshot snp-one of snp-src: ")
    snaps = banger.json("vm", "snapshot", "list")
    assert [s["name"] for s in snaps] == ["snp-one"]  # type: ignore[union-attr,index]
    assert ssh(banger, "snp-src", "cat", "/root/marker").stdout == "from-the-source\n"

    banger.created += ["snp-a", "snp-b"]
    forked = banger.run("vm", "fork", "snp-src", "--name", "snp-a", "--name", "snp-b")
    assert forked.returncode == 0, forked.stderr
    # Restored side by side: both VMMs start before either copy has its identity.
    said = forked.stderr
    started = [said.find(f"{n}: starting qemu from the snapshot") for n in ("snp-a", "snp-b")]
    assert min(started) >= 0, said
    assert max(started) < said.find("has its own name, address"), said
    vms = {vm["name"]: vm for vm in banger.json("vm", "list")}  # type: ignore[union-attr,index]
    assert {vms["snp-a"]["state"], vms["snp-b"]["state"]} == {"running"}
    random_bytes = set()
    for name in ("snp-a", "snp-b"):
        vm = vms[name]
        assert vm["snapshot"].startswith("snp-src-")
        assert vm["ip"] != source["ip"] and vm["mac"] != source["mac"]
        before = time.time()
        probe = ssh(
            banger, name, "sh", "-c",
            f"cat /root/marker; hostname; cat /sys/class/net/eth0/address;"
            f" tr '\\0' '\\n' < /proc/{pid}/environ | grep STATE; date +%s.%N;"
            " head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'",
        )  # fmt: skip
        after = time.time()
        lines = probe.stdout.splitlines()
        assert lines[:4] == ["from-the-source", name, vm["mac"], "STATE=held-in-memory-42"]
        assert before - 1 <= float(lines[4]) <= after + 1
        random_bytes.add(lines[5])
    assert len(random_bytes) == 2
    # Each has its own host key (set through the agent), pinned by banger: SSH above used it.
    keys = {
        Path(str(vm["dir"]), "known_hosts").read_text().split()[2]
        for vm in (source, *vms.values())
        if vm["name"] in ("snp-src", "snp-a", "snp-b")
    }
    assert len(keys) == 3
    # Each reaches the other by name through banger's DNS, at its own address.
    for name, other in (("snp-a", "snp-b"), ("snp-b", "snp-a")):
        seen = ssh(banger, name, "sh", "-c", f"getent hosts {other}.vm; ping -c1 -W5 {other}.vm")
        assert seen.returncode == 0, seen.stderr
        assert seen.stdout.split()[0] == vms[other]["ip"]
    # The source runs on, as it was.
    assert ssh(banger, "snp-src", "hostname").stdout == "snp-src\n"
    # The fork's own snapshot is not kept.
    assert [s["name"] for s in banger.json("vm", "snapshot", "list")] == ["snp-one"]  # type: ignore[union-attr,index]

    restored = banger.run("vm", "create", "--name", "snp-c", "--from-snapshot", "snp-one")
    banger.created.append("snp-c")
    assert restored.returncode == 0, restored.stderr
    assert ssh(banger, "snp-c", "hostname").stdout == "snp-c\n"
    assert banger.run("vm", "snapshot", "delete", "snp-one").returncode == 0
    assert ssh(banger, "snp-c", "cat", "/root/marker").stdout == "from-the-source\n"


def _nothing_new(banger: Banger, vms: set[str], dirs: set[str], taps: set[str]) -> None:
    assert {vm["name"] for vm in banger.json("vm", "list")} == vms  # type: ignore[union-attr,index]
    assert vm_dirs() == dirs
    assert {t for t in links() if t.startswith("bgt")} == taps


def test_bad_restores_say_one_line_and_leave_nothing(banger: Banger) -> None:
    banger.create("snp-bad", *SMALL)
    stopped = banger.create("snp-off", "--no-start", "--work-disk-size", "1G")
    refused = banger.run("vm", "snapshot", "create", "snp-off")
    assert refused.returncode != 0
    assert f"VM {stopped['name']!r} is stopped" in refused.stderr
    assert "banger vm start snp-off" in refused.stderr
    assert banger.run("vm", "snapshot", "create", "snp-bad", "snp-b1").returncode == 0

    vms = {"snp-bad", "snp-off"}
    dirs, taps = vm_dirs(), {t for t in links() if t.startswith("bgt")}
    taken = banger.run("vm", "create", "--name", "snp-off", "--from-snapshot", "snp-b1")
    assert taken.returncode != 0 and "already exists" in taken.stderr
    mixed = banger.run("vm", "create", "--from-snapshot", "snp-b1", "--memory", "1024")
    assert mixed.returncode != 0 and "--memory cannot be combined" in mixed.stderr
    _nothing_new(banger, vms, dirs, taps)

    snap = banger.json("vm", "snapshot", "show", "snp-b1")
    memory = Path(snap["dir"]) / "memory"  # type: ignore[index]
    whole = memory.read_bytes()
    memory.write_bytes(whole[: len(whole) // 2])
    truncated = banger.run("vm", "create", "--name", "snp-t", "--from-snapshot", "snp-b1")
    assert truncated.returncode != 0 and "truncated" in truncated.stderr
    assert "banger vm snapshot delete snp-b1" in truncated.stderr
    memory.unlink()
    missing = banger.run("vm", "create", "--name", "snp-t", "--from-snapshot", "snp-b1")
    assert missing.returncode != 0 and "is missing" in missing.stderr
    memory.write_bytes(whole)
    _nothing_new(banger, vms, dirs, taps)

    with sqlite3.connect(ARTIFACTS / "banger.db") as db:
        db.execute("UPDATE snapshots SET banger_version = '0.0.1' WHERE name = 'snp-b1'")
    other = banger.run("vm", "create", "--name", "snp-t", "--from-snapshot", "snp-b1")
    assert other.returncode != 0 and "made by banger 0.0.1" in other.stderr
    assert len(other.stderr.strip().splitlines()) <= 2, other.stderr
    _nothing_new(banger, vms, dirs, taps)
    assert banger.run("vm", "snapshot", "delete", "snp-b1").returncode == 0


def test_a_daemon_killed_mid_restore_leaves_nothing_after_its_next_start(
    banger: Banger,
) -> None:
    banger.create("snp-k", *SMALL)
    assert banger.run("vm", "snapshot", "create", "snp-k", "snp-k1").returncode == 0
    dirs, taps, running = vm_dirs(), {t for t in links() if t.startswith("bgt")}, qemus()
    daemon = int(json.loads(banger.run("daemon", "status", "--json", check=True).stdout)["pid"])
    client = subprocess.Popen(
        [str(BIN / "banger"), "vm", "create", "--name", "snp-half", "--from-snapshot", "snp-k1"],
        env=banger.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # The restore's QEMU is up: stop the daemon dead before the guest gets its identity.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (qemus() - running):
        time.sleep(0.01)
    os.kill(daemon, signal.SIGSTOP)
    os.kill(daemon, signal.SIGKILL)
    assert qemus() - running, "the restore never started its QEMU"
    assert wait_gone(daemon)
    client.wait(60)
    # The next daemon's reconcile removes the half-made VM whole.
    listed = {vm["name"] for vm in banger.json("vm", "list")}  # type: ignore[union-attr,index]
    assert listed == {"snp-k"}
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and qemus() != running:
        time.sleep(0.1)
    assert qemus() == running
    assert vm_dirs() == dirs
    assert {t for t in links() if t.startswith("bgt")} == taps
    assert banger.run("vm", "snapshot", "delete", "snp-k1").returncode == 0
