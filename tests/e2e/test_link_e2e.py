"""AgentLink over a real VM's virtio-serial port (QEMU, software emulation).

The VM is created through banger (ready when its agent answers); with the
daemon stopped (the VM runs on), the test takes the port's socket itself:
commands, files and tar go through the link, and killing the agent in the
guest ends the link with a clear error while SSH still works.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import statistics
import subprocess
import tarfile
import time

import pytest

from banger.guest.link import AgentGone, AgentLink, Exited, Output, wait_ready

from .conftest import BIN, Banger

# Slow (a VM and 8 MiB each way under emulation); test_channel_e2e covers the same in make test.
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _tar(files: dict[str, tuple[bytes, int]], link: tuple[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo(link[0])
        info.type, info.linkname = tarfile.SYMTYPE, link[1]
        tar.addfile(info)
    return buf.getvalue()


async def _exercise(link: AgentLink) -> dict[str, float]:
    numbers: dict[str, float] = {}
    done = await link.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (done.stdout, done.stderr, done.exited.code) == (b"out\n", b"err\n", 3)

    rounds = []
    for _ in range(20):
        began = time.monotonic()
        assert (await link.run(["true"])).exited.code == 0
        rounds.append(time.monotonic() - began)
    numbers["exec_true_ms"] = statistics.median(rounds) * 1000
    numbers["ping_ms"] = statistics.median([await link.ping() for _ in range(20)]) * 1000

    session = await link.exec(["sleep", "30"])
    await session.signal(signal.SIGTERM)
    assert await session.wait() == Exited(code=None, signal=signal.SIGTERM, timed_out=False)
    timed = await (await link.exec(["sleep", "30"], timeout=1)).wait()
    assert timed.timed_out

    session = await link.exec(["sh", "-c", "tty; stty size"], pty=(30, 90))
    seen = b"".join([e.data async for e in session.events() if isinstance(e, Output)])
    assert b"/dev/pts/" in seen and b"30 90" in seen

    blob = os.urandom(8 << 20)
    began = time.monotonic()
    await link.write_file("/root/blob", blob, 0o600)
    numbers["write_mb_s"] = len(blob) / (time.monotonic() - began) / 1e6
    began = time.monotonic()
    assert await link.read_bytes("/root/blob") == blob
    numbers["read_mb_s"] = len(blob) / (time.monotonic() - began) / 1e6
    assert (await link.stat("/root/blob")).mode & 0o777 == 0o600

    tree = _tar({"d/tool": (b"#!/bin/sh\n", 0o755), "d/notes": (b"n\n", 0o600)}, ("d/l", "tool"))
    await link.tar_put("/root/in", tree)
    got = bytearray()
    await link.tar_get("/root/in", ["d"], got.extend)
    with tarfile.open(fileobj=io.BytesIO(bytes(got))) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["d/tool"].mode & 0o777 == 0o755 and members["d/notes"].mode & 0o777 == 0o600
    assert members["d/l"].issym() and members["d/l"].linkname == "tool"

    # The agent answered before the image's own init finished: wait for it,
    # then its SSH server listens.
    began = time.monotonic()
    boot = await link.boot(wait=150)
    numbers["boot_wait_s"] = time.monotonic() - began
    assert boot["init"] == "systemd" and boot["state"] in ("running", "degraded"), boot
    assert any(p.port == 22 for p in await link.ports())
    assert (await link.load()).mem_total_kib > 0
    return numbers


def test_the_link_over_virtio_serial(banger: Banger) -> None:
    began = time.monotonic()
    banger.create("e2e-link")  # ready when the agent answers the daemon
    vm = banger.json("vm", "show", "e2e-link")
    sock = banger.home / "vms" / str(vm["id"]) / "agent.sock"  # type: ignore[index]
    # QEMU serves the port's socket to one client at a time: the daemon lets go
    # of it when it stops (the VM keeps running), and this test takes it.
    banger.run("daemon", "stop", check=True)

    async def scenario() -> tuple[float, dict[str, float], float]:
        link = await wait_ready(sock, timeout=60, alive=lambda: True, keepalive=1.0)
        ready = time.monotonic() - began
        numbers = await _exercise(link)
        # The agent dies in the guest: behind virtio-serial the socket stays
        # open, so the keepalive is what ends the link (not a hang).
        pid = link.info.pid
        waiting = await link.exec(["sleep", "60"])
        killer = f"sleep 0.3; kill -9 {pid}"
        await link.run(["sh", "-c", f"setsid sh -c '{killer}' </dev/null >/dev/null 2>&1 &"])
        died = time.monotonic()
        with pytest.raises(AgentGone):
            await waiting.wait()
        return ready, numbers, time.monotonic() - died

    ready, numbers, noticed = asyncio.run(asyncio.wait_for(scenario(), 300))
    print(
        f"created and linked after {ready:.1f} s; "
        f"exec true {numbers['exec_true_ms']:.1f} ms; read {numbers['read_mb_s']:.1f} MB/s, "
        f"write {numbers['write_mb_s']:.1f} MB/s; systemd done {numbers['boot_wait_s']:.1f} s "
        f"after the tests began; agent death noticed in {noticed:.1f} s"
    )
    assert noticed < 8  # keepalive 1 s: a ping after 1 s of silence, lost after 2 more
    assert banger.run("vm", "ssh", "e2e-link", "--", "true").returncode == 0
    # The same file through SSH, for scale (what `vm cp` is measured against).
    began = time.monotonic()
    ssh = subprocess.run(
        [str(BIN / "banger"), "vm", "ssh", "e2e-link", "--", "cat", "/root/blob"],
        env=banger.env,
        capture_output=True,
        check=True,
    )
    ssh_s = time.monotonic() - began
    print(
        f"ping {numbers['ping_ms']:.1f} ms; `vm ssh -- cat` of the same 8 MiB: "
        f"{len(ssh.stdout) / ssh_s / 1e6:.1f} MB/s including the SSH handshake"
    )
