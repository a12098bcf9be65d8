"""The default image under QEMU boots through banger-agent and still answers SSH.

The test talks to the agent itself over the VM's real virtio-serial port
(the unix socket QEMU listens on in the VM's run directory), with the same
small client the unit tests use: a command, files, readiness, the image's
own boot state, and a second connection after the first hung up.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest

from tests.agent_driver import AgentClient

from .conftest import Banger

pytestmark = pytest.mark.e2e

CHANNEL_LINE = "banger-agent: channel up"


def _agent_socket(banger: Banger, vm: dict[str, object]) -> Path:
    return banger.home / "vms" / str(vm["id"]) / "agent.sock"


def test_default_image_boots_through_the_agent_and_still_answers_ssh(banger: Banger) -> None:
    vm = banger.create("e2e-agent")
    ssh = banger.run("vm", "ssh", "e2e-agent", "--", "true")
    assert ssh.returncode == 0, ssh.stderr
    logs = banger.run("vm", "logs", "e2e-agent", check=True).stdout
    assert CHANNEL_LINE in logs

    client = AgentClient(_agent_socket(banger, vm))
    hello = client.start()
    assert hello["version"] == 1 and "exec" in hello["caps"]
    ch = client.run(["sh", "-c", "echo out; echo err >&2; hostname; exit 3"])
    assert ch.closed == {"ok": True, "exit": 3}
    assert ch.stdout == b"out\ne2e-agent\n" and ch.stderr == b"err\n"
    assert client.run(["no-such-command"]).closed["errno"] == "ENOENT"  # type: ignore[index]
    assert client.call("read", path="/etc/hostname")["ok"]

    rounds = []
    for _ in range(9):
        started = time.monotonic()
        assert client.run(["true"]).closed == {"ok": True, "exit": 0}
        rounds.append(time.monotonic() - started)
    print(f"exec true over virtio-serial: median {statistics.median(rounds) * 1000:.1f} ms")

    boot = client.call("boot", wait=90, timeout=120)
    assert boot["init"] == "systemd" and boot["state"] in ("running", "degraded"), boot
    ports = client.call("ports")["ports"]
    assert any(p["port"] == 22 and p.get("process") == "sshd" for p in ports), ports

    # The host hangs up; the next connection syncs a fresh session.
    client.close()
    again = AgentClient(_agent_socket(banger, vm))
    again.start()
    assert again.run(["echo", "again"]).stdout == b"again\n"
    again.close()
