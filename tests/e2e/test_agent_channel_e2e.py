"""The default image under QEMU boots through banger-agent and still answers SSH.

The test talks to the agent itself over the VM's real virtio-serial port
(the unix socket QEMU listens on in the VM's run directory), with the same
small client the unit tests use: a command, files, readiness, the image's
own boot state, and a second connection after the first hung up.
"""

from __future__ import annotations

import base64
import json
import os
import statistics
import time
from pathlib import Path

import pytest

from tests.agent_driver import AgentClient

from .conftest import Banger

pytestmark = pytest.mark.e2e

CHANNEL_LINE = "banger-agent: channel up"


def _agent_socket(vm: dict[str, object]) -> Path:
    return Path(str(vm["dir"])) / "agent.sock"


def _wait_log(banger: Banger, name: str, text: str, timeout: float = 5) -> str:
    deadline = time.monotonic() + timeout
    while True:
        logs = banger.run("vm", "logs", name, check=True).stdout
        if text in logs or time.monotonic() > deadline:
            return logs
        time.sleep(0.2)


def test_default_image_boots_through_the_agent_and_still_answers_ssh(banger: Banger) -> None:
    vm = banger.create("e2e-agent")
    ssh = banger.run("vm", "ssh", "e2e-agent", "--", "true")
    assert ssh.returncode == 0, ssh.stderr
    logs = banger.run("vm", "logs", "e2e-agent", check=True).stdout
    assert CHANNEL_LINE in logs

    # QEMU serves the port's socket to one client at a time, and the daemon holds
    # it: stopped, it lets go (the VM runs on) and the test speaks to the agent.
    banger.run("daemon", "stop", check=True)
    client = AgentClient(_agent_socket(vm))
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
    rounds = []
    for _ in range(9):
        started = time.monotonic()
        assert client.call("load")["ok"]
        rounds.append(time.monotonic() - started)
    print(f"load (no process) over virtio-serial: median {statistics.median(rounds) * 1000:.1f} ms")

    # The clock and the entropy pool, as after a snapshot restore.
    ahead = time.time_ns() + 3600 * 10**9
    assert client.call("clock", unix_ns=ahead) == {"ok": True}
    guest_now = int(client.run(["date", "+%s"]).stdout)
    assert abs(guest_now - ahead // 10**9) < 30
    assert client.call("clock", unix_ns=time.time_ns()) == {"ok": True}
    seed = base64.b64encode(os.urandom(256)).decode()
    # Credited, and the CRNG reseeded from it at once (the guest runs Linux 6.1).
    assert client.call("entropy", data=seed) == {"ok": True, "bytes": 256, "reseeded": True}

    boot = client.call("boot", wait=90, timeout=120)
    assert boot["init"] == "systemd" and boot["state"] in ("running", "degraded"), boot
    ports = client.call("ports")["ports"]
    assert any(p["port"] == 22 and p.get("process") == "sshd" for p in ports), ports

    read = client.open("read", path="/.banger/image.json")
    assert read.wait()["ok"]
    assert json.loads(read.stdout)["channel"] == 1
    image = banger.json("image", "show", "debian-bookworm")
    assert isinstance(image, dict) and image["config"]["channel"] == 1, image

    # The VM's own host key again through identity: OpenSSH's listener gets
    # SIGHUP, rereads it and still answers with the key banger pinned.
    keys = {}
    for suffix in ("", ".pub"):
        read = client.open("read", path=f"/etc/ssh/ssh_host_ed25519_key{suffix}")
        assert read.wait()["ok"]
        keys[suffix] = read.stdout.decode()
    result = client.call("identity", host_key={"private": keys[""], "public": keys[".pub"]})
    # took_ms: how long each part took, which varies.
    assert (result["ok"], result["changed"], result["announced"]) == (True, ["host_key"], False)
    deadline = time.monotonic() + 15
    ssh = banger.run("vm", "ssh", "e2e-agent", "--", "true")
    while ssh.returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
        ssh = banger.run("vm", "ssh", "e2e-agent", "--", "true")
    assert ssh.returncode == 0, ssh.stderr

    # The host hangs up (the agent notices); the next connection syncs a fresh session.
    client.close()
    assert "the host hung up" in _wait_log(banger, "e2e-agent", "the host hung up")
    again = AgentClient(_agent_socket(vm))
    again.start()
    assert again.run(["echo", "again"]).stdout == b"again\n"
    again.close()
