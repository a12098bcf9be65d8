"""bangerd and the guest agent over the real channel: QEMU's virtio-serial port.

Readiness is the agent's HELLO, before the image's own init has finished;
stop, `vm ports` and `vm stats` go through the agent; an image without the
agent still works over SSH; a killed agent is a clear error while `vm ssh`
goes on working.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import Banger

pytestmark = pytest.mark.e2e

AGENT_ANSWERED = re.compile(r"(\S+)'s agent answered after ([0-9.]+)s")
INIT_DONE = re.compile(r"'s init \((\w+)\) is (\w+) after ([0-9.]+)s")
# Every banger-agent process in the guest, by its command name (no pkill in minbase).
KILL_AGENT = (
    'for p in /proc/[0-9]*; do [ "$(cat $p/comm 2>/dev/null)" = banger-agent ]'
    " && kill -9 ${p#/proc/}; done; true"
)


def create(banger: Banger, name: str, *extra: str) -> str:
    banger.created.append(name)
    result = banger.run("vm", "create", "--name", name, "--vcpus", "1", *extra)
    assert result.returncode == 0, result.stderr
    return result.stderr


def ssh(banger: Banger, name: str, command: str) -> str:
    result = banger.run("vm", "ssh", name, "--", "sh", "-c", command)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_default_image_is_ready_when_its_agent_answers(banger: Banger) -> None:
    stages = create(banger, "e2e-ch")
    assert "agent: waiting for banger's agent" in stages
    assert "ssh: waiting" not in stages  # no SSH polling for an image with the channel
    answered = AGENT_ANSWERED.search(stages)
    assert answered is not None and answered.group(1) == "e2e-ch", stages
    assert "banger-agent: channel up" in banger.run("vm", "logs", "e2e-ch").stdout
    # `vm ssh` right away works: it waits for the image's own SSH server, which
    # systemd may still be starting.
    state = ssh(banger, "e2e-ch", "systemctl is-system-running || true").strip()
    assert state in ("initializing", "starting", "running", "degraded"), state

    ports = banger.json("vm", "ports", "e2e-ch")
    assert any(p["port"] == 22 and p["proto"] == "tcp" for p in ports), ports  # type: ignore[union-attr]
    stats = banger.json("vm", "stats", "e2e-ch")
    guest = stats["guest"]  # type: ignore[index]
    assert 0 < guest["mem_available_bytes"] < guest["mem_total_bytes"]
    assert len(guest["load"]) == 3
    assert {"/", "/root"} <= {d["mount"] for d in guest["disks"]}
    health = banger.json("vm", "health", "e2e-ch")
    assert health["checks"]["agent"]["ok"], health  # type: ignore[index]

    stop = banger.run("vm", "stop", "e2e-ch")
    assert stop.returncode == 0, stop.stderr
    assert "e2e-ch's agent is powering it off" in stop.stderr
    assert "e2e-ch powered off" in stop.stderr
    assert banger.json("vm", "show", "e2e-ch")["state"] == "stopped"  # type: ignore[index]


def test_wait_boot_waits_for_the_images_init_after_the_agent(banger: Banger) -> None:
    stages = create(banger, "e2e-wb", "--wait-boot")
    assert AGENT_ANSWERED.search(stages), stages
    done = INIT_DONE.search(stages)
    assert done is not None, stages
    init, state, after = done.group(1), done.group(2), float(done.group(3))
    assert (init, state) in (("systemd", "running"), ("systemd", "degraded")), stages
    # The agent answered well before systemd was done: the VM took commands first.
    assert after > 1.0, stages
    assert ssh(banger, "e2e-wb", "systemctl is-system-running || true").strip() in (
        "running",
        "degraded",
    )


@pytest.mark.slow  # ~40 s; tests/unit/test_agents.py covers an agent gone
def test_a_killed_agent_is_a_clear_error_and_ssh_still_works(banger: Banger) -> None:
    create(banger, "e2e-ka")
    ssh(banger, "e2e-ka", KILL_AGENT)
    ports = banger.run("vm", "ports", "e2e-ka")
    assert ports.returncode != 0
    assert "banger's agent in VM 'e2e-ka' does not answer" in ports.stderr
    assert "`banger vm ssh e2e-ka` still works" in ports.stderr
    assert ssh(banger, "e2e-ka", "echo still here").strip() == "still here"
    # Stop falls back to SSH and the VMM.
    stop = banger.run("vm", "stop", "--timeout", "20", "e2e-ka")
    assert stop.returncode == 0, stop.stderr
    assert banger.json("vm", "show", "e2e-ka")["state"] == "stopped"  # type: ignore[index]


def test_an_image_without_the_agent_works_over_ssh(banger: Banger) -> None:
    base = banger.json("image", "show", "debian-bookworm")
    rootfs = Path(str(base["rootfs"]))  # type: ignore[index]
    # The same disk registered as is boots the image's own systemd, no banger-agent:
    # the record says channel 0, as for any image of an older banger.
    banger.run("image", "delete", "e2e-noagent")
    registered = banger.run("image", "register", "e2e-noagent", str(rootfs))
    assert registered.returncode == 0, registered.stderr
    try:
        assert banger.json("image", "show", "e2e-noagent")["channel"] == 0  # type: ignore[index]
        stages = create(banger, "e2e-na", "--image", "e2e-noagent")
        assert "ssh: waiting for the guest to accept SSH" in stages
        assert "e2e-na answered SSH after" in stages
        assert "agent:" not in stages
        assert ssh(banger, "e2e-na", "echo over ssh").strip() == "over ssh"
        ports = banger.json("vm", "ports", "e2e-na")
        assert any(p["port"] == 22 for p in ports), ports  # type: ignore[union-attr]
        stats = banger.json("vm", "stats", "e2e-na")
        assert stats["guest"]["mem_total_bytes"] > 0  # type: ignore[index]
        # Its forks could not get their own identity and entropy: refused, nothing made.
        fork = banger.run("vm", "fork", "e2e-na")
        assert fork.returncode != 0
        assert "VM 'e2e-na' has no banger agent" in fork.stderr and "hint:" in fork.stderr
        assert [vm["name"] for vm in banger.json("vm", "list")] == ["e2e-na"]  # type: ignore[index, union-attr]
        assert banger.json("vm", "snapshot", "list") == []
        stop = banger.run("vm", "stop", "e2e-na")
        assert stop.returncode == 0, stop.stderr
        assert "agent is powering it off" not in stop.stderr
        assert banger.json("vm", "show", "e2e-na")["state"] == "stopped"  # type: ignore[index]
    finally:
        banger.run("vm", "delete", "e2e-na")
        banger.run("image", "delete", "e2e-noagent")
