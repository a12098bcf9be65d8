"""The text form of records: what a person reads in `show` and `list`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from banger.api import shapes
from banger.cli import render

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)

VM = {
    "id": "3f2a9c01d4",
    "name": "dev",
    "image": "debian-bookworm",
    "state": "running",
    "vcpus": 1,
    "memory_mib": 2048,
    "overlay_bytes": 4294967296,
    "work_disk_bytes": 8 << 30,
    "nat": True,
    "ip": "10.77.0.2",
    "tap": "bgt3f2a9c01d4",
    "mac": "02:00:0a:4d:00:02",
    "vmm": "qemu",
    "dir": "/var/lib/banger/vms/3f2a9c01d4",
    "created_at": (NOW - timedelta(minutes=3)).isoformat(),
    "pid": 4242,
}


def test_vm_show_speaks_sizes_yes_no_and_ages():
    fields = dict(render.vm_fields(VM, NOW))
    assert fields["memory"] == "2048 MiB"
    assert fields["system overlay"] == "4.0 GiB"
    assert fields["work disk (/root)"] == "8.0 GiB"
    assert fields["outside access"].startswith("yes")
    assert fields["created"] == "3 min ago (2026-12-01 11:57 UTC)"
    assert fields["VMM pid"] == "4242"
    text = "\n".join(f"{label} {text}" for label, text in render.vm_fields(VM, NOW))
    assert "4294967296" not in text and "True" not in text


def test_a_stopped_vm_without_nat():
    fields = dict(render.vm_fields({**VM, "nat": False, "pid": None, "state": "stopped"}, NOW))
    assert fields["outside access"].startswith("no")
    assert fields["VMM pid"] == "not running"


def test_unknown_fields_still_show_under_their_name():
    fields = dict(render.vm_fields({**VM, "balloon": None, "paused": False}, NOW))
    assert fields["balloon"] == "-" and fields["paused"] == "no"


def test_list_row_matches_show():
    row = dict(zip(render.VM_HEADERS, render.vm_row(shapes.Vm.from_json(VM), NOW), strict=True))
    assert row["MEMORY"] == "2048 MiB" and row["NAT"] == "yes" and row["CREATED"] == "3 min ago"


def test_ages():
    def ago(**kw: float) -> str:
        return render.age((NOW - timedelta(**kw)).isoformat(), NOW)

    assert ago(seconds=2) == "just now"
    assert ago(seconds=42) == "42 s ago"
    assert ago(minutes=59) == "59 min ago"
    assert ago(hours=5) == "5 h ago"
    assert ago(days=1) == "1 day ago"
    assert ago(days=12) == "12 days ago"
    assert ago(days=90) == "2026-09-02"
    assert render.age("not a time", NOW) == "not a time"
    assert render.age("2026-12-01T11:59:00", NOW) == "1 min ago"  # naive means UTC


def test_image_show_labels_and_config():
    image = {
        "name": "alpine",
        "kernel": "debian-bookworm-cloud",
        "rootfs": "/x/rootfs.ext4",
        "size_bytes": 3 << 30,
        "source": "docker.io/library/alpine:3.20",
        "created_at": (NOW - timedelta(days=2)).isoformat(),
        "work_seed": "",
        "init": "",
        "config": {"entrypoint": None, "cmd": ["/bin/sh"], "env": ["PATH=/bin"], "user": ""},
    }
    fields = dict(render.image_fields(image, NOW))
    assert fields["disk size"] == "3.0 GiB"
    assert fields["created"].startswith("2 days ago")
    assert fields["init"] == "the image's own"
    assert fields["command"] == "/bin/sh" and fields["environment"] == "PATH=/bin"
    assert "entrypoint" not in fields and "user" not in fields and "config" not in fields
    assert render.image_row(shapes.Image.from_json(image), NOW)[2:] == (
        "3.0 GiB",
        "docker.io/library/alpine:3.20",
        "current",
        "2 days ago",
    )
    assert "guest agent" not in fields


def test_an_outdated_image_says_how_to_make_it_again():
    image = {
        "name": "deb9p",
        "kernel": "debian-bookworm-generic",
        "rootfs": "/x/rootfs.ext4",
        "size_bytes": 1 << 30,
        "source": "catalog:debian-bookworm",
        "created_at": NOW.isoformat(),
        "agent_outdated": True,
    }
    line = dict(render.image_fields(image, NOW))["guest agent"]
    assert line.startswith("outdated: made by another version of banger")
    assert line.endswith(
        "remake it: `banger image delete deb9p` then"
        " `banger image pull debian-bookworm --name deb9p --kernel-ref debian-bookworm-generic`"
    )
    oci = dict(image, source="oci:127.0.0.1:5000/team/dev:1@sha256:abc", name="dev")
    assert "`banger image pull 127.0.0.1:5000/team/dev:1 --name dev --kernel-ref" in (
        render.agent_outdated_line(oci)
    )
    row = render.image_row(shapes.Image.from_json(image), NOW)
    assert row[4] == "outdated"
    registered = shapes.Image.from_json(dict(image, source="file:/x.ext4", agent_outdated=False))
    assert render.image_row(registered, NOW)[4] == "none"


def test_kernel_show():
    kernel = {
        "name": "k",
        "version": "6.1.0-28-cloud-amd64",
        "dir": "/k",
        "vmlinuz": "/k/vmlinuz",
        "initrd": "/k/initrd.img",
        "source": "debian",
        "created_at": NOW.isoformat(),
    }
    assert dict(render.kernel_fields(kernel, NOW))["initramfs"] == "/k/initrd.img"
    assert render.kernel_row(shapes.Kernel.from_json(kernel), NOW)[-1] == "just now"


def test_health_checks_read_as_phrases():
    assert render.check_detail("vmm", {"ok": True, "pid": 4242}) == "pid 4242"
    assert render.check_detail("vmm", {"ok": False, "pid": None}) == "not running"
    assert render.check_detail("ssh", {"ok": True, "ms": 12.3}) == "answered in 12.3 ms"
    assert render.check_detail("ssh", {"ok": False, "error": "timed out"}) == "timed out"
    assert render.check_detail("init", {"ok": True, "state": "running"}) == (
        "the guest's init says 'running'"
    )
