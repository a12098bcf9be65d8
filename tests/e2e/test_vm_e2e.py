"""Real VMs under QEMU: what a user sees from the CLI."""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from .conftest import BRIDGE, SUBNET, Banger, wait_gone

pytestmark = pytest.mark.e2e


def links() -> set[str]:
    out = subprocess.run(["ip", "-j", "link"], capture_output=True, text=True, check=True).stdout
    return {link["ifname"] for link in json.loads(out)}


def test_vm_run_prints_output_and_propagates_exit_code(banger: Banger):
    result = banger.run(
        "vm", "run", "--", "sh", "-c", "echo hello from $(hostname); uname -s; exit 3"
    )
    assert result.returncode == 3, result.stderr
    assert "hello from " in result.stdout
    assert "Linux" in result.stdout
    # Progress and the spec line go to stderr, the command's output alone to stdout.
    assert f"IP {SUBNET.rsplit('.', 2)[0]}." in result.stderr
    # Without --keep the VM is gone afterwards.
    assert banger.json("vm", "list") == []


def test_vm_run_keeps_arguments_intact(banger: Banger):
    result = banger.run("vm", "run", "-q", "--", "printf", "%s|", "two words", "$HOME", "a;b")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "two words|$HOME|a;b|"


@pytest.mark.slow  # ~25 s; the parallel creates of the reliability suite cover addresses
def test_two_vms_at_once_get_different_addresses_and_both_answer(banger: Banger):
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        vms = list(pool.map(lambda n: banger.create(n), ["e2e-a", "e2e-b"]))
    ips = {vm["ip"] for vm in vms}
    assert len(ips) == 2
    assert all(ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(SUBNET) for ip in ips)
    for vm in vms:
        result = banger.run("vm", "ssh", str(vm["name"]), "--", "hostname")
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == vm["name"]
        # No host key prompt or "Permanently added" noise: the key is pinned.
        assert result.stderr == ""
    # And they reach each other over the bridge.
    b = vms[1]
    ping = banger.run("vm", "ssh", "e2e-a", "--", "ping", "-c", "1", "-W", "5", str(b["ip"]))
    assert ping.returncode == 0, ping.stdout + ping.stderr
    listed = {vm["name"]: vm for vm in banger.json("vm", "list")}  # type: ignore[union-attr]
    assert listed["e2e-a"]["state"] == "running" and listed["e2e-b"]["state"] == "running"


def test_delete_leaves_no_tap_process_lease_disk_or_socket(banger: Banger):
    vm = banger.create("e2e-gone")
    tap, pid, vm_dir = str(vm["tap"]), int(vm["pid"]), Path(str(vm["dir"]))
    assert tap in links()
    assert Path(f"/proc/{pid}").exists()
    assert (vm_dir / "overlay.ext4").exists()

    result = banger.run("vm", "delete", "e2e-gone")
    assert result.returncode == 0, result.stderr
    assert tap not in links()
    assert wait_gone(pid)
    assert not vm_dir.exists()
    db = sqlite3.connect(banger.home / "banger.db")
    assert db.execute("SELECT COUNT(*) FROM leases").fetchone()[0] == 0
    assert db.execute("SELECT COUNT(*) FROM vms").fetchone()[0] == 0
    assert not list(banger.runtime.glob("**/vmm.sock"))
    # The bridge is shared and stays; only banger's own links exist besides it.
    assert BRIDGE in links()


@pytest.mark.slow  # ~19 s under emulation; make test-all runs it
def test_the_guest_writes_to_its_overlay_not_the_image(banger: Banger):
    image = banger.json("image", "show", "debian-bookworm")
    rootfs = Path(image["rootfs"])  # type: ignore[index]
    before = rootfs.stat().st_mtime_ns
    banger.create("e2e-cow")
    result = banger.run(
        "vm", "ssh", "e2e-cow", "--", "sh", "-c", "echo data > /etc/scratch && cat /etc/scratch"
    )
    assert result.stdout.strip() == "data", result.stderr
    assert rootfs.stat().st_mtime_ns == before
