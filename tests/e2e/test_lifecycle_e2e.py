"""One VM through its whole life, and a daemon that dies under running VMs."""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from .conftest import ARTIFACTS, BIN, BRIDGE, Banger, wait_gone

pytestmark = pytest.mark.e2e


def ssh(banger: Banger, name: str, *command: str) -> subprocess.CompletedProcess[str]:
    return banger.run("vm", "ssh", name, "--", *command)


def test_one_vm_through_every_command(banger: Banger):
    vm = banger.create("e2e-life", "--vcpus", "1", "--memory", "512", "--work-disk-size", "1G")
    assert vm["state"] == "running" and vm["work_disk_bytes"] == 1 << 30

    # The work disk is /root and survives a stop/start; the overlay keeps / writes too.
    assert (
        ssh(
            banger, "e2e-life", "sh", "-c", "echo kept > /root/note; echo sys > /etc/note"
        ).returncode
        == 0
    )
    mounts = ssh(banger, "e2e-life", "sh", "-c", "grep ' /root ' /proc/mounts").stdout
    assert "ext4" in mounts

    stop = banger.run("vm", "stop", "--timeout", "60", "e2e-life")
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout == "stopped e2e-life (stopped)\n"
    assert stages(stop.stderr) == ["stop", "network"], stop.stderr
    shown = banger.json("vm", "show", "e2e-life")
    assert shown["state"] == "stopped" and shown["pid"] is None  # type: ignore[index]
    assert shown["tap"] not in _links()  # type: ignore[index]

    assert (
        banger.run("vm", "set", "e2e-life", "--memory", "640", "--work-disk-size", "2G").returncode
        == 0
    )
    start = banger.run("vm", "start", "e2e-life")
    assert start.returncode == 0, start.stderr
    # Its stages as they happen on stderr (issue 16.5: it was 15 s of silence), the result
    # alone on stdout.
    assert start.stdout == "started e2e-life (running)\n"
    # Ready when banger's agent answers over its channel, not by SSH polling.
    assert stages(start.stderr) == ["network", "boot", "agent"], start.stderr
    assert "e2e-life's agent answered after" in start.stderr
    assert ssh(banger, "e2e-life", "cat", "/root/note", "/etc/note").stdout.split() == [
        "kept",
        "sys",
    ]
    mem_kib = int(
        ssh(banger, "e2e-life", "sh", "-c", "grep MemTotal /proc/meminfo").stdout.split()[1]
    )
    assert 500 * 1024 < mem_kib <= 640 * 1024
    df = ssh(banger, "e2e-life", "df", "-B1", "--output=size", "/root").stdout.split()
    assert int(df[-1]) > 1_500_000_000

    # Inspecting it. Into a pipe the console comes without escapes or \r; --raw keeps them.
    logs = banger.run("vm", "logs", "e2e-life")
    assert "banger-init: switching root" in logs.stdout
    piped = raw_run(banger, "vm", "logs", "e2e-life")
    assert b"banger-init: switching root" in piped
    assert b"\r" not in piped and b"\x1b" not in piped
    assert b"\r\n" in raw_run(banger, "vm", "logs", "--raw", "e2e-life")
    stats = banger.json("vm", "stats", "e2e-life")
    assert stats["host"]["rss_bytes"] > 0 and stats["guest"]["mem_total_bytes"] > 0  # type: ignore[index]
    assert any(d["mount"] == "/root" for d in stats["guest"]["disks"])  # type: ignore[index]
    ports = banger.json("vm", "ports", "e2e-life")
    ssh_port = [p for p in ports if p["port"] == 22 and p["proto"] == "tcp"]  # type: ignore[union-attr]
    # One row per listener, and an endpoint that works from this host: the address,
    # or NAME.vm where the host resolves banger's names.
    assert len(ssh_port) == 1, ports
    host, _, port = str(ssh_port[0]["endpoint"]).rpartition(":")
    assert port == "22" and socket.gethostbyname(host) == vm["ip"]
    assert ssh_port[0]["process"] == "sshd"
    health = banger.run("vm", "health", "e2e-life")
    assert health.returncode == 0, health.stdout
    ping = banger.json("vm", "ping", "e2e-life")
    assert ping["reachable"] is True  # type: ignore[index]

    restart = banger.run("vm", "restart", "-q", "e2e-life")
    assert restart.returncode == 0, restart.stderr
    assert restart.stderr == "" and restart.stdout == "restarted e2e-life (running)\n"
    assert ssh(banger, "e2e-life", "cat", "/root/note").stdout.strip() == "kept"

    pid = banger.json("vm", "show", "e2e-life")["pid"]  # type: ignore[index]
    kill = banger.run("vm", "kill", "--signal", "KILL", "e2e-life")
    assert kill.returncode == 0, kill.stderr
    assert stages(kill.stderr) == ["stop", "network"], kill.stderr
    assert "] stop: killing qemu (pid " in kill.stderr
    assert wait_gone(int(pid))
    assert banger.json("vm", "show", "e2e-life")["state"] == "stopped"  # type: ignore[index]

    # prune without a terminal wants --force, and then deletes stopped VMs only.
    refused = banger.run("vm", "prune")
    assert refused.returncode != 0 and "--force" in refused.stderr
    pruned = banger.run("vm", "prune", "--force")
    assert pruned.returncode == 0 and "e2e-life" in pruned.stdout
    assert stages(pruned.stderr) == ["delete", "network", "disks"], pruned.stderr
    assert banger.json("vm", "list") == []
    banger.created.remove("e2e-life")


@pytest.mark.slow  # ~30 s; tests/e2e/test_reliability_kill_e2e.py kills bangerd at every stage
def test_vms_survive_a_killed_daemon(banger: Banger):
    banger.create("e2e-survivor")
    status = banger.json("daemon", "status")
    os.kill(int(status["pid"]), signal.SIGKILL)  # type: ignore[index]
    assert wait_gone(int(status["pid"]))  # type: ignore[index]
    # The next command starts a new daemon, which finds the VM still running.
    listed = banger.json("vm", "list")
    assert [(v["name"], v["state"]) for v in listed] == [("e2e-survivor", "running")]  # type: ignore[union-attr]
    assert ssh(banger, "e2e-survivor", "hostname").stdout.strip() == "e2e-survivor"
    assert banger.json("daemon", "status")["pid"] != status["pid"]  # type: ignore[index]


def test_reconcile_marks_dead_vms_and_removes_orphan_taps(banger: Banger):
    vm = banger.create("e2e-orphan")
    banger.run("daemon", "stop", check=True)
    os.kill(int(vm["pid"]), signal.SIGKILL)  # type: ignore[arg-type]
    assert wait_gone(int(vm["pid"]))  # type: ignore[arg-type]
    shown = banger.json("vm", "show", "e2e-orphan")
    assert shown["state"] == "stopped"  # type: ignore[index]
    log = (banger.home / "logs" / "bangerd.log").read_text()
    assert "reconcile: e2e-orphan: its VMM is gone; marked stopped" in log
    assert f"removed tap {vm['tap']}" in log
    assert vm["tap"] not in _links()


def stages(stderr: str) -> list[str]:
    """The stage names of a command's progress lines (``[  1.2s] boot: starting ...``)."""
    return [
        line.split("] ", 1)[1].split(":", 1)[0]
        for line in stderr.splitlines()
        if re.match(r"\[ *\d+\.\ds\] ", line)
    ]


def raw_run(banger: Banger, *args: str) -> bytes:
    """A command's stdout as bytes: text mode would turn \r\n into \n itself."""
    return subprocess.run(
        [str(BIN / "banger"), *args],
        env=banger.env,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=True,
    ).stdout


def _links(master: str | None = None) -> set[str]:
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    return {
        link["ifname"] for link in json.loads(out) if master is None or link.get("master") == master
    }


def _banger_state(banger: Banger) -> dict[str, object]:
    """Everything banger could leak on the host, as comparable values."""
    taps = sorted(n for n in _links(master=BRIDGE) if n.startswith("bgt"))
    qemus = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if b"qemu" in cmdline and str(ARTIFACTS).encode() in cmdline:
                qemus.append(entry.name)
    mounts = [
        line for line in Path("/proc/mounts").read_text().splitlines() if str(ARTIFACTS) in line
    ]
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    nft = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    db = sqlite3.connect(banger.home / "banger.db")
    return {
        "taps": taps,
        "qemu": qemus,
        "mounts": mounts,
        "loops": [line for line in loops.splitlines() if str(ARTIFACTS) in line],
        "nft": [line for line in nft.splitlines() if f"banger_{BRIDGE}" in line],
        "leases": db.execute("SELECT COUNT(*) FROM leases").fetchone()[0],
        "vm_dirs": sorted(p.name for p in (banger.home / "vms").glob("*")),
    }


def test_after_every_vm_is_deleted_nothing_remains(banger: Banger):
    empty = {
        "taps": [],
        "qemu": [],
        "mounts": [],
        "loops": [],
        "nft": [],
        "leases": 0,
        "vm_dirs": [],
    }
    assert _banger_state(banger) == empty
    banger.create("e2e-leak-a", "--nat")
    banger.create("e2e-leak-b")
    during = _banger_state(banger)
    assert len(during["taps"]) == 2 and len(during["qemu"]) == 2 and during["leases"] == 2
    assert banger.run("vm", "delete", "e2e-leak-a", "e2e-leak-b").returncode == 0
    assert _banger_state(banger) == empty


def test_two_creates_with_one_name_one_wins(banger: Banger):
    banger.created.append("e2e-race")
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda _: banger.run("vm", "create", "--name", "e2e-race"), [0, 1]))
    codes = sorted(r.returncode for r in results)
    assert codes[0] == 0 and codes[1] != 0
    loser = next(r for r in results if r.returncode != 0)
    assert "error: a VM named 'e2e-race' already exists" in loser.stderr
    assert [v["name"] for v in banger.json("vm", "list")] == ["e2e-race"]  # type: ignore[union-attr]


def test_reconcile_kills_the_vmm_of_a_vm_the_store_forgot(banger: Banger):
    vm = banger.create("e2e-forgotten")
    banger.run("daemon", "stop", check=True)
    # As if a delete died half-way: row and directory gone, the VMM still running,
    # its address still leased (this connection does not cascade deletes).
    db = sqlite3.connect(banger.home / "banger.db")
    with db:
        db.execute("DELETE FROM vms WHERE name = 'e2e-forgotten'")
    shutil.rmtree(str(vm["dir"]))
    banger.created.clear()
    assert banger.json("vm", "list") == []
    assert wait_gone(int(vm["pid"]))  # type: ignore[arg-type]
    log = (banger.home / "logs" / "bangerd.log").read_text()
    assert f"killed VMM pid {vm['pid']} of a deleted VM" in log
    assert f"released {vm['ip']}, leased to a VM that no longer exists" in log
    assert db.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0
    assert vm["tap"] not in _links()


@pytest.mark.slow  # a second image made from a VM: over 100 s under emulation
def test_promote_a_vm_into_an_image(banger: Banger):
    banger.create("e2e-base")
    setup = "echo tuned > /etc/banger-e2e && echo mine > /root/dotfile && mkdir -p /opt/tool"
    assert banger.run("vm", "ssh", "e2e-base", "--", "sh", "-c", setup).returncode == 0
    promoted = banger.run("image", "promote", "e2e-base", "e2e-promoted")
    assert promoted.returncode == 0, promoted.stderr
    try:
        image = banger.json("image", "show", "e2e-promoted")
        assert image["source"] == "vm:e2e-base"  # type: ignore[index]
        check = "cat /etc/banger-e2e /root/dotfile && test -d /opt/tool && hostname"
        result = banger.run(
            "vm", "run", "--image", "e2e-promoted", "--name", "e2e-child", "--", "sh", "-c", check
        )
        assert result.returncode == 0, result.stderr
        # The image carries the setup, not the source VM's identity.
        assert result.stdout.split() == ["tuned", "mine", "e2e-child"]
    finally:
        banger.run("vm", "delete", "e2e-base")
        banger.created.clear()
        assert banger.run("image", "delete", "e2e-promoted").returncode == 0
