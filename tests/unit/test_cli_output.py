"""What `show`, `list` and `health` print for people, and that --json stays the wire record."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from banger.cli import common
from banger.cli.main import cli

CREATED = (datetime.now(UTC) - timedelta(minutes=3, seconds=5)).isoformat(timespec="seconds")
VM = {
    "id": "3f2a9c01d4",
    "name": "dev",
    "image": "debian-bookworm",
    "state": "running",
    "vcpus": 1,
    "memory_mib": 2048,
    "overlay_bytes": 4294967296,
    "work_disk_bytes": 8589934592,
    "snapshot": "",
    "boot_snapshot": False,
    "nat": True,
    "ip": "10.77.0.2",
    "tap": "bgt3f2a9c01d4",
    "mac": "02:00:0a:4d:00:02",
    "vmm": "qemu",
    "dir": "/var/lib/banger/vms/3f2a9c01d4",
    "created_at": CREATED,
    "pid": 4242,
    "forward_ports": "off",
    "forwards": [],
    "mounts": [],
}
IMAGE = {
    "name": "debian-bookworm",
    "kernel": "debian-bookworm-cloud",
    "rootfs": "/images/debian-bookworm/rootfs.ext4",
    "size_bytes": 1610612736,
    "source": "catalog",
    "created_at": CREATED,
    "work_seed": "",
    "init": "",
    "config": {},
}
HEALTH = {
    "name": "dev",
    "state": "running",
    "healthy": True,
    "checks": {
        "vmm": {"ok": True, "pid": 4242},
        "ssh": {"ok": True, "ms": 12.5},
        "init": {"ok": True, "state": "running"},
    },
}
ANSWERS: dict[str, Any] = {
    "/vms": [VM],
    "/vms/dev": VM,
    "/images": [IMAGE],
    "/images/debian-bookworm": IMAGE,
    "/vms/dev/health": HEALTH,
}


class Answers:
    """The client's read side, answering from the records above."""

    def get(self, path: str, read: Any) -> Any:
        return read(ANSWERS[path])

    def get_list(self, path: str, read: Any) -> list[Any]:
        return [read(item) for item in ANSWERS[path]]


@pytest.fixture(autouse=True)
def daemon(monkeypatch):
    @contextmanager
    def client(*, autostart: bool = True):
        yield Answers()

    monkeypatch.setattr(common, "client", client)
    # "3 min ago" from when the test runs, not from when the module was imported
    # (a long suite runs this one many minutes after collecting it).
    monkeypatch.setattr(
        common, "now", lambda: datetime.fromisoformat(CREATED) + timedelta(minutes=3, seconds=5)
    )


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_vm_show_is_for_people():
    out = run("vm", "show", "dev")
    lines = {line.split("  ")[0]: line.split("  ", 1)[1].strip() for line in out.splitlines()}
    assert lines["memory"] == "2048 MiB"
    assert lines["system overlay"] == "4.0 GiB"
    assert lines["outside access"] == "yes (NAT to the outside)"
    assert lines["created"].startswith("3 min ago (")
    assert "4294967296" not in out and "True" not in out and "overlay_bytes" not in out


def test_vm_show_json_is_the_record_unchanged():
    assert json.loads(run("vm", "show", "dev", "--json")) == VM


def test_vm_list_has_ages_and_sizes():
    out = run("vm", "list")
    header, row = out.splitlines()
    assert header.split() == [
        "NAME",
        "STATE",
        "IP",
        "IMAGE",
        "VCPUS",
        "MEMORY",
        "NAT",
        "FROM",
        "CREATED",
    ]
    assert "2048 MiB" in row and "3 min ago" in row and CREATED not in row
    assert json.loads(run("vm", "ls", "--json")) == [VM]


def test_image_show_and_list():
    out = run("image", "show", "debian-bookworm")
    assert "disk size" in out and "1.5 GiB" in out and "the image's own" in out
    assert "1610612736" not in out and "config" not in out
    assert "3 min ago" in run("image", "list")


def test_health_reads_as_phrases():
    out = run("vm", "health", "dev")
    assert out.splitlines() == [
        "dev: healthy (running)",
        "  ok   vmm: pid 4242",
        "  ok   ssh: answered in 12.5 ms",
        "  ok   init: the guest's init says 'running'",
    ]
