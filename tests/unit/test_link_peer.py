"""AgentLink against a scripted peer: what a real agent cannot be made to do on purpose."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from banger.errors import VmmError
from banger.guest import proto
from banger.guest.link import AgentError, AgentGone, AgentLink, AgentVersionError, wait_ready
from banger.guest.linksync import LoopThread, SyncLink
from tests.unit.agent_peer import Peer, Request, firecracker_uds


def run(scenario: Callable[[], Awaitable[Any]], limit: float = 20.0) -> Any:
    async def bounded() -> Any:
        async with asyncio.timeout(limit):
            return await scenario()

    return asyncio.run(bounded())


async def hang(request: Request) -> None:
    await request.cancelled.wait()
    await request.close({"ok": False, "error": "cancelled", "errno": "ECANCELED"})


async def started_then_hang(request: Request) -> None:
    await request.event({"started": {"pid": 42}})
    await hang(request)


def test_hello_reports_the_agent(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Peer(tmp_path / "a.sock", {}) as peer:
            async with await AgentLink.connect(tmp_path / "a.sock", timeout=2) as link:
                assert (link.info.version, link.info.agent, link.info.pid) == (1, "peer", 1)
            assert peer.hellos[0]["min"] == proto.VERSION_MIN
            assert peer.hellos[0]["max"] == proto.VERSION_MAX

    run(scenario)


@pytest.mark.parametrize(
    ("versions", "theirs", "hint"),
    [((2, 3), "2-3", "upgrade banger"), ((0, 0), "0-0", "banger image pull")],
)
def test_a_version_refused_says_who_speaks_what(
    tmp_path: Path, versions: tuple[int, int], theirs: str, hint: str
) -> None:
    async def scenario() -> None:
        async with Peer(tmp_path / "a.sock", {}, versions=versions):
            with pytest.raises(AgentVersionError) as caught:
                await AgentLink.connect(tmp_path / "a.sock", timeout=2)
            return caught.value

    err = run(scenario)
    assert (
        err.message == f"the guest agent speaks protocol versions {theirs}, this banger speaks 1-1"
    )
    assert hint in err.hint


def test_stale_bytes_of_an_earlier_connection_are_skipped(tmp_path: Path) -> None:
    """The tail of a frame, a whole stale frame and an old session's ERROR, then the HELLO."""
    stale_half = proto.data(7, proto.STDOUT, b"z" * 300)[150:]
    stale_whole = proto.data(9, proto.STDERR, b"\x00" * 64)
    stale_error = proto.encode_json(0, proto.Kind.ERROR, {"error": "framing"})
    preamble = stale_half + stale_whole + stale_error

    async def load(request: Request) -> None:
        await request.close({"ok": True, "procs": 5})

    async def scenario() -> int:
        async with (
            Peer(tmp_path / "a.sock", {"load": load}, preamble=preamble),
            await AgentLink.connect(tmp_path / "a.sock", timeout=3) as link,
        ):
            return (await link.load()).procs

    assert run(scenario) == 5


def test_an_unanswered_hello_is_sent_again(tmp_path: Path) -> None:
    async def scenario() -> int:
        async with (
            Peer(tmp_path / "a.sock", {}, deaf=1) as peer,
            await AgentLink.connect(tmp_path / "a.sock", timeout=3),
        ):
            return len(peer.hellos)

    assert run(scenario) == 2


def test_nothing_listening_is_agent_gone(tmp_path: Path) -> None:
    async def scenario() -> None:
        with pytest.raises(AgentGone, match="cannot reach the guest agent"):
            await AgentLink.connect(tmp_path / "none.sock", timeout=1)

    run(scenario)


def test_a_lost_link_fails_every_open_channel_within_a_second(tmp_path: Path) -> None:
    handlers = {"exec": started_then_hang, "read": hang, "load": hang}

    async def scenario() -> float:
        async with Peer(tmp_path / "a.sock", handlers) as peer:
            link = await AgentLink.connect(tmp_path / "a.sock", timeout=2)
            session = await link.exec(["sleep", "100"])
            assert session.pid == 42

            async def read() -> bytes:
                return await link.read_bytes("/etc/hostname")

            waits = [
                asyncio.create_task(session.wait()),
                asyncio.create_task(read()),
                asyncio.create_task(link.call("load", timeout=60)),
            ]
            await asyncio.sleep(0.2)
            began = time.monotonic()
            peer.drop()
            results = await asyncio.gather(*waits, return_exceptions=True)
            took = time.monotonic() - began
            assert [type(r) for r in results] == [AgentGone] * 3, results
            assert "closed the link" in str(results[0])
            assert results[0].hint and "banger vm logs" in results[0].hint
            # And the link refuses new work at once rather than hang on it.
            with pytest.raises(AgentGone):
                await link.call("load")
            assert link.closed
            assert "closed the link" in (await link.wait_closed()).message
            return took

    assert run(scenario) < 1.0


def test_an_agent_that_stops_answering_is_found_out_by_the_keepalive(tmp_path: Path) -> None:
    """A hung agent behind virtio-serial leaves the socket open; pings notice."""

    async def scenario() -> tuple[BaseException, float]:
        async with Peer(tmp_path / "a.sock", {"exec": started_then_hang}) as peer:
            link = await AgentLink.connect(tmp_path / "a.sock", timeout=2, keepalive=0.2)
            assert await link.ping() < 0.5
            session = await link.exec(["sleep", "100"])
            peer.muted = True
            began = time.monotonic()
            with pytest.raises(AgentGone) as gone:
                await session.wait()
            return gone.value, time.monotonic() - began

    gone, took = run(scenario)
    assert "did not answer for 0.4 s" in gone.message
    assert took < 1.5


def test_a_call_that_outlives_its_timeout_is_cancelled(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with (
            Peer(tmp_path / "a.sock", {"ports": hang}) as peer,
            await AgentLink.connect(tmp_path / "a.sock", timeout=2) as link,
        ):
            with pytest.raises(AgentError, match=r"did not finish ports within 0\.2 s") as err:
                await link.call("ports", timeout=0.2)
            assert err.value.errno == "ETIMEDOUT"
            await asyncio.wait_for(peer.requests[0].cancelled.wait(), 2)

    run(scenario)


def test_an_agent_that_overruns_its_window_loses_the_link(tmp_path: Path) -> None:
    async def flood(request: Request) -> None:
        await request.send(proto.STDOUT, b"x" * (proto.INITIAL_WINDOW * 2), obey_window=False)

    async def scenario() -> None:
        async with Peer(tmp_path / "a.sock", {"read": flood}):
            link = await AgentLink.connect(tmp_path / "a.sock", timeout=2)
            channel = await link.open("read", {"path": "/x"})
            with pytest.raises(AgentGone, match="overran the window"):
                await channel.result(5)

    run(scenario)


def test_unread_output_stays_within_the_window(tmp_path: Path) -> None:
    """A slow consumer of 8 MiB never holds more than a window per stream."""
    total = 8 << 20

    async def produce(request: Request) -> None:
        await request.event({"started": {"pid": 7}})
        await asyncio.gather(
            request.send(proto.STDOUT, b"o" * total), request.send(proto.STDERR, b"e" * total)
        )
        await request.close({"ok": True, "exit": 0})

    async def scenario() -> tuple[int, int]:
        async with (
            Peer(tmp_path / "a.sock", {"exec": produce}),
            await AgentLink.connect(tmp_path / "a.sock", timeout=2) as link,
        ):
            session = await link.exec(["yes"])
            peak, got = 0, 0
            async for event in session.events():
                peak = max(peak, session.channel.unread)
                if hasattr(event, "data"):
                    got += len(event.data)
                    await asyncio.sleep(0)  # let the agent refill
            assert event.code == 0  # type: ignore[union-attr]
            return peak, got

    peak, got = run(scenario)
    assert got == 2 * total
    assert peak <= 2 * proto.INITIAL_WINDOW


def test_input_waits_for_the_agents_credit(tmp_path: Path) -> None:
    received: list[bytes] = []

    async def sink(request: Request) -> None:
        received.append(await request.read_input())
        await request.close({"ok": True, "size": len(received[0])})

    async def scenario() -> dict[str, Any]:
        async with (
            Peer(tmp_path / "a.sock", {"write": sink}),
            await AgentLink.connect(tmp_path / "a.sock", timeout=2) as link,
        ):
            chunks = (bytes([i]) * 100_000 for i in range(30))
            return await link.write_file("/root/f", chunks, 0o600)

    assert run(scenario) == {"ok": True, "size": 3_000_000}
    assert received[0] == b"".join(bytes([i]) * 100_000 for i in range(30))


def test_firecracker_connect_handshake(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with Peer(tmp_path / "a.sock", {}):
            server = await firecracker_uds(tmp_path / "v.sock", tmp_path / "a.sock", 1024)
            async with server:
                link = await AgentLink.connect(tmp_path / "v.sock", vsock_port=1024, timeout=2)
                assert link.info.agent == "peer"
                await link.close()
                with pytest.raises(AgentGone, match="nothing answers on vsock port 52"):
                    await AgentLink.connect(tmp_path / "v.sock", vsock_port=52, timeout=2)

    run(scenario)


def test_wait_ready_connects_once_the_agent_listens(tmp_path: Path) -> None:
    async def scenario() -> float:
        began = time.monotonic()

        async def late() -> None:
            await asyncio.sleep(0.5)
            async with Peer(tmp_path / "a.sock", {}):
                await asyncio.sleep(3)

        task = asyncio.create_task(late())
        link = await wait_ready(tmp_path / "a.sock", timeout=5, alive=lambda: True)
        took = time.monotonic() - began
        await link.close()
        task.cancel()
        return took

    assert 0.5 <= run(scenario) < 1.5


def test_wait_ready_stops_when_the_vm_dies(tmp_path: Path) -> None:
    deadline = time.monotonic() + 0.3

    async def scenario() -> None:
        with pytest.raises(VmmError, match="the VM stopped before its guest agent answered"):
            await wait_ready(
                tmp_path / "a.sock", timeout=30, alive=lambda: time.monotonic() < deadline
            )

    began = time.monotonic()
    run(scenario)
    assert time.monotonic() - began < 1.0


def test_wait_ready_gives_up_after_its_timeout(tmp_path: Path) -> None:
    async def scenario() -> None:
        # Accepts and never says hello: a guest whose agent is not up yet.
        server = await asyncio.start_unix_server(lambda r, w: None, str(tmp_path / "a.sock"))
        async with server:
            with pytest.raises(VmmError, match="did not answer within 1 s") as err:
                await wait_ready(tmp_path / "a.sock", timeout=1, alive=lambda: True, attempt=0.3)
            assert "did not say hello" in err.value.message

    run(scenario)


def test_sync_link_waits_for_the_agent_from_a_thread(tmp_path: Path) -> None:
    async def load(request: Request) -> None:
        await request.close({"ok": True, "loadavg": [0.5, 0.25, 0.125], "procs": 3})

    with LoopThread() as loop:
        peer = Peer(tmp_path / "a.sock", {"load": load})
        asyncio.run_coroutine_threadsafe(peer.__aenter__(), loop).result(5)
        try:
            with SyncLink.wait_ready(
                tmp_path / "a.sock", loop=loop, timeout=5, alive=lambda: True
            ) as link:
                assert link.load().loadavg == (0.5, 0.25, 0.125)

                async def from_the_loop() -> None:
                    link.load()

                with pytest.raises(RuntimeError, match="its own event loop"):
                    asyncio.run_coroutine_threadsafe(from_the_loop(), loop).result(5)
        finally:
            asyncio.run_coroutine_threadsafe(peer.__aexit__(), loop).result(5)
