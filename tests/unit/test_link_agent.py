"""AgentLink against the real banger-agent, run on this host with ``--listen unix:PATH``."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import tarfile
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from banger.guest import proto
from banger.guest.link import AgentError, AgentGone, AgentLink, Exited, Output
from banger.guest.linksync import LoopThread, SyncLink
from tests.unit.agent_host import HostAgent
from tests.unit.agent_peer import firecracker_uds

Scenario = Callable[[AgentLink], Awaitable[Any]]


@pytest.fixture
def host_agent(agent_binary: Path, tmp_path: Path) -> Iterator[HostAgent]:
    """banger-agent on ``tmp_path/agent.sock`` (``agent_binary`` is tests/unit/conftest's)."""
    running = HostAgent(agent_binary, tmp_path / "agent.sock").start()
    try:
        yield running
    finally:
        running.kill()


def on_agent(agent: HostAgent, scenario: Scenario, limit: float = 60.0) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(limit):
            async with await AgentLink.connect(agent.socket, timeout=5) as link:
                return await scenario(link)

    return asyncio.run(bounded())


async def collect(session: Any) -> tuple[bytes, bytes, Exited]:
    out = {proto.STDOUT: bytearray(), proto.STDERR: bytearray()}
    async for event in session.events():
        if isinstance(event, Output):
            out[event.stream] += event.data
        else:
            return bytes(out[1]), bytes(out[2]), event
    raise AssertionError("no Exited")


def test_hello_names_the_agent(host_agent: HostAgent) -> None:
    async def scenario(link: AgentLink) -> None:
        assert link.info.version == 1
        assert link.info.pid == host_agent.process.pid  # type: ignore[union-attr]
        assert "exec" in link.info.caps or link.info.caps == ()

    on_agent(host_agent, scenario)


def test_ping_round_trip(host_agent: HostAgent) -> None:
    async def scenario(link: AgentLink) -> float:
        return min([await link.ping() for _ in range(5)])

    assert on_agent(host_agent, scenario) < 0.05


def test_exec_keeps_stdout_and_stderr_apart_and_returns_the_exit_code(
    host_agent: HostAgent,
) -> None:
    async def scenario(link: AgentLink) -> tuple[int | None, bytes, bytes, Exited]:
        session = await link.exec(["sh", "-c", "echo out; echo err >&2; exit 3"])
        return (session.pid, *await collect(session))

    pid, out, err, exited = on_agent(host_agent, scenario)
    assert pid and pid > 1
    assert (out, err) == (b"out\n", b"err\n")
    assert exited == Exited(code=3, signal=None, timed_out=False)


def test_exec_runs_in_cwd_with_env(host_agent: HostAgent, tmp_path: Path) -> None:
    async def scenario(link: AgentLink) -> bytes:
        done = await link.run(
            ["sh", "-c", 'pwd; echo "$GREETING"'], cwd=str(tmp_path), env={"GREETING": "hi"}
        )
        return done.stdout

    assert on_agent(host_agent, scenario) == f"{tmp_path}\nhi\n".encode()


def test_stdin_reaches_the_command_byte_for_byte(host_agent: HostAgent) -> None:
    data = os.urandom(3 << 20)

    async def scenario(link: AgentLink) -> bytes:
        done = await link.run(["cat"], input=data)
        assert done.exited.code == 0
        return done.stdout

    assert on_agent(host_agent, scenario) == data


def test_a_signal_from_the_caller_ends_the_command(host_agent: HostAgent) -> None:
    async def scenario(link: AgentLink) -> Exited:
        session = await link.exec(["sleep", "30"])
        await session.signal(signal.SIGTERM)
        return await session.wait()

    assert on_agent(host_agent, scenario) == Exited(
        code=None, signal=signal.SIGTERM, timed_out=False
    )


def test_a_timeout_kills_the_command_and_says_so(host_agent: HostAgent) -> None:
    async def scenario(link: AgentLink) -> tuple[Exited, float]:
        began = time.monotonic()
        exited = await (await link.exec(["sleep", "30"], timeout=0.5)).wait()
        return exited, time.monotonic() - began

    exited, took = on_agent(host_agent, scenario)
    assert exited.timed_out and exited.signal == signal.SIGKILL and exited.code is None
    assert took < 5


def test_cancel_kills_the_command(host_agent: HostAgent) -> None:
    async def scenario(link: AgentLink) -> Exited:
        session = await link.exec(["sleep", "30"])
        await session.cancel()
        return await session.wait()

    assert on_agent(host_agent, scenario).signal == signal.SIGKILL


def test_a_pty_has_a_size_and_follows_a_resize(host_agent: HostAgent) -> None:
    async def scenario(link: AgentLink) -> bytes:
        script = "tty; stty size; read x; stty size"
        session = await link.exec(["sh", "-c", script], stdin=True, pty=(24, 80))
        seen, resized = bytearray(), False
        async for event in session.events():
            if isinstance(event, Output):
                assert event.stream == proto.STDOUT
                seen += event.data
                if not resized and b"24 80\r\n" in seen:
                    resized = True
                    await session.resize(40, 100)
                    await session.write(b"\n")
            else:
                assert event.code == 0
        return bytes(seen)

    seen = on_agent(host_agent, scenario)
    assert b"/dev/pts/" in seen
    assert seen.index(b"24 80") < seen.index(b"40 100")


def test_a_command_that_does_not_exist_is_not_found(host_agent: HostAgent) -> None:
    async def scenario(link: AgentLink) -> AgentError:
        with pytest.raises(AgentError) as caught:
            await link.exec(["/no/such/command"])
        # The link stays usable.
        assert (await link.run(["true"])).exited.code == 0
        return caught.value

    err = on_agent(host_agent, scenario)
    assert err.errno == "ENOENT" and err.code == "not_found"
    assert "/no/such/command" in err.message or "no such file" in err.message.lower()


def test_50_mb_through_a_slow_consumer_stays_within_a_few_windows(host_agent: HostAgent) -> None:
    total = 50 << 20

    async def scenario(link: AgentLink) -> tuple[int, int, int]:
        session = await link.exec(["head", "-c", str(total), "/dev/zero"])
        got, peak_unread, n = 0, 0, 0
        tracemalloc.start()
        try:
            async for event in session.events():
                if isinstance(event, Output):
                    got += len(event.data)
                    n += 1
                    peak_unread = max(peak_unread, session.channel.unread)
                    if n % 16 == 0:
                        await asyncio.sleep(0.002)  # slower than the agent produces
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return got, peak_unread, peak

    got, peak_unread, peak = on_agent(host_agent, scenario, limit=120)
    assert got == total
    # The consumer was the slower one (the window filled), and the window held the agent back.
    assert proto.INITIAL_WINDOW // 2 < peak_unread <= proto.INITIAL_WINDOW
    # Everything the daemon allocated meanwhile (buffers, frames, chunks): a few windows.
    assert peak < 8 * proto.INITIAL_WINDOW, f"peak {peak} bytes"


def test_concurrent_execs_on_one_link(host_agent: HostAgent) -> None:
    async def scenario(link: AgentLink) -> tuple[list[bytes], float]:
        began = time.monotonic()
        runs = [link.run(["sh", "-c", "sleep 0.3; echo $0", str(i)]) for i in range(8)]
        done = await asyncio.gather(*runs)
        return [d.stdout for d in done], time.monotonic() - began

    outputs, took = on_agent(host_agent, scenario)
    assert outputs == [f"{i}\n".encode() for i in range(8)]
    assert took < 8 * 0.3


def test_files_round_trip_with_mode_stat_and_listing(host_agent: HostAgent, tmp_path: Path) -> None:
    data = os.urandom(1_500_000)
    target = tmp_path / "d" / "f.bin"
    target.parent.mkdir()

    async def scenario(link: AgentLink) -> Any:
        await link.write_file(str(target), data, 0o640)
        back = await link.read_bytes(str(target))
        st = await link.stat(str(target))
        entries = await link.listdir(str(target.parent))
        return back, st, entries

    back, st, entries = on_agent(host_agent, scenario)
    assert back == data
    assert (st.name, st.type, st.size, st.mode & 0o7777) == ("f.bin", "file", len(data), 0o640)
    assert os.stat(target).st_mode & 0o7777 == 0o640
    assert [e.name for e in entries] == ["f.bin"]


def test_reading_a_missing_file_is_not_found(host_agent: HostAgent, tmp_path: Path) -> None:
    async def scenario(link: AgentLink) -> AgentError:
        with pytest.raises(AgentError) as caught:
            await link.read_bytes(str(tmp_path / "missing"))
        with pytest.raises(AgentError):
            await link.write_file(str(tmp_path / "no" / "dir" / "f"), b"x")
        return caught.value

    err = on_agent(host_agent, scenario)
    assert (err.errno, err.code) == ("ENOENT", "not_found")


def test_tar_both_ways_keeps_modes_and_symlinks(host_agent: HostAgent, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin" / "tool").write_bytes(b"#!/bin/sh\n")
    (src / "bin" / "tool").chmod(0o755)
    (src / "link").symlink_to("bin/tool")
    got = bytearray()

    async def scenario(link: AgentLink) -> dict[str, Any]:
        await link.tar_get(str(src), ["bin", "link"], got.extend)
        dest = tmp_path / "dest"
        dest.mkdir()
        return await link.tar_put(str(dest), bytes(got))

    result = on_agent(host_agent, scenario)
    with tarfile.open(fileobj=io.BytesIO(bytes(got))) as tar:
        members = {m.name.rstrip("/"): m for m in tar.getmembers()}
    assert members["bin/tool"].mode & 0o7777 == 0o755
    assert members["link"].issym() and members["link"].linkname == "bin/tool"
    dest = tmp_path / "dest"
    assert (dest / "bin" / "tool").read_bytes() == b"#!/bin/sh\n"
    assert os.stat(dest / "bin" / "tool").st_mode & 0o7777 == 0o755
    assert os.readlink(dest / "link") == "bin/tool"
    assert result["ok"] is True


def test_ports_and_load(host_agent: HostAgent) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        async def scenario(link: AgentLink) -> Any:
            return await link.ports(), await link.load()

        ports, load = on_agent(host_agent, scenario)
    assert any(p.port == port and p.addr == "127.0.0.1" for p in ports), ports
    assert load.mem_total_kib > 0 and load.procs > 0 and load.uptime > 0


def test_killing_the_agent_fails_every_channel_within_a_second(
    host_agent: HostAgent, tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # a read of it waits for a writer that never comes

    async def never_ends() -> AsyncIterator[bytes]:
        yield b"start"
        await asyncio.Event().wait()

    async def scenario(link: AgentLink) -> tuple[list[Any], float]:
        sleeper = await link.exec(["sleep", "5"])
        reader = await link.exec(["cat"], stdin=True)
        waits = [
            asyncio.create_task(sleeper.wait()),
            asyncio.create_task(reader.wait()),
            asyncio.create_task(link.read_bytes(str(fifo))),
            asyncio.create_task(link.write_file(str(tmp_path / "w"), never_ends())),
            asyncio.create_task(link.tar_put(str(tmp_path), never_ends())),
        ]
        await asyncio.sleep(0.2)
        began = time.monotonic()
        host_agent.kill()
        results = await asyncio.gather(*waits, return_exceptions=True)
        return results, time.monotonic() - began

    results, took = on_agent(host_agent, scenario)
    assert [type(r) for r in results] == [AgentGone] * 5, results
    assert took < 1.0


def test_the_sync_facade_from_a_thread(host_agent: HostAgent, tmp_path: Path) -> None:
    payload = os.urandom(700_000)
    (tmp_path / "in.bin").write_bytes(payload)
    with LoopThread() as loop, SyncLink.connect(host_agent.socket, loop=loop) as link:
        assert link.run(["sh", "-c", "echo hi; exit 4"]).stdout == b"hi\n"
        with (tmp_path / "in.bin").open("rb") as source:
            link.write_from(str(tmp_path / "copy.bin"), source, 0o600)
        with (tmp_path / "out.bin").open("wb") as dest:
            assert link.read_into(str(tmp_path / "copy.bin"), dest) == len(payload)
        assert link.stat(str(tmp_path / "copy.bin")).size == len(payload)
    assert (tmp_path / "out.bin").read_bytes() == payload


def test_firecracker_vsock_handshake_reaches_the_agent(
    host_agent: HostAgent, tmp_path: Path
) -> None:
    async def scenario() -> bytes:
        uds = tmp_path / "v.sock"
        async with await firecracker_uds(uds, host_agent.socket, proto.AGENT_VSOCK_PORT):
            link = await AgentLink.connect(uds, vsock_port=proto.AGENT_VSOCK_PORT, timeout=5)
            async with link:
                return (await link.run(["echo", "through vsock"])).stdout

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == b"through vsock\n"


def test_control_requests(host_agent: HostAgent) -> None:
    async def scenario(link: AgentLink) -> tuple[dict[str, Any], dict[str, Any], AgentError]:
        boot, entropy = await link.boot(), await link.add_entropy(64)
        # A host-run agent refuses what would change this machine, and says so.
        with pytest.raises(AgentError) as refused:
            await link.set_clock()
        return boot, entropy, refused.value

    boot, entropy, refused = on_agent(host_agent, scenario)
    assert boot["state"] == "running"
    assert entropy["bytes"] == 64
    assert refused.errno == "EPERM" and "clock" in refused.message


def test_a_newer_link_supersedes_the_older_one(host_agent: HostAgent) -> None:
    """One daemon, one link per VM: a reconnect ends what the old link had running."""

    async def scenario() -> tuple[BaseException | None, bytes]:
        old = await AgentLink.connect(host_agent.socket, timeout=5)
        session = await old.exec(["sleep", "5"])
        async with await AgentLink.connect(host_agent.socket, timeout=5) as new:
            try:
                await asyncio.wait_for(session.wait(), 2)
                ended = None
            except AgentGone as exc:
                ended = exc
            return ended, (await new.run(["echo", "new"])).stdout

    ended, out = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert isinstance(ended, AgentGone)
    assert out == b"new\n"
