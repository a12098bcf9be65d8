"""``AgentLink`` for code that runs in a thread, outside the event loop.

bangerd does its blocking VM work in worker threads while the link's reader
lives on the daemon's loop; ``SyncLink`` runs each request on that loop and
waits for it in the calling thread. A caller without a loop of its own (a
benchmark, a script) gets one from ``LoopThread``. Files on the host are
read and written in the loop's executor, never on the loop itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from types import TracebackType
from typing import IO, Any, TypeVar

from banger.guest import proto
from banger.guest.channel import AgentError
from banger.guest.exec import Completed
from banger.guest.link import AgentInfo, AgentLink, wait_ready
from banger.guest.ops import ListeningPort, Load, Stat

T = TypeVar("T")

_CALL_TIMEOUT = 60.0
_READ_SIZE = 4 * proto.DATA_CHUNK


class LoopThread:
    """An event loop running in a daemon thread, for as long as the ``with`` block."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="agent-link", daemon=True
        )

    def __enter__(self) -> asyncio.AbstractEventLoop:
        self._thread.start()
        return self.loop

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


def _on(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("SyncLink called from its own event loop; use the AgentLink there")
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result(timeout)
    except concurrent.futures.TimeoutError:
        future.cancel()
        raise AgentError.timeout("the request", timeout or 0) from None


async def _file_chunks(source: IO[bytes]) -> AsyncIterator[bytes]:
    while chunk := await asyncio.to_thread(source.read, _READ_SIZE):
        yield chunk


class SyncLink:
    """The blocking twin of an ``AgentLink`` living on ``loop``."""

    def __init__(self, link: AgentLink, loop: asyncio.AbstractEventLoop) -> None:
        self.link = link
        self.loop = loop

    @classmethod
    def connect(
        cls,
        path: str | os.PathLike[str],
        *,
        loop: asyncio.AbstractEventLoop,
        vsock_port: int | None = None,
        timeout: float = 5.0,
    ) -> SyncLink:
        link = _on(loop, AgentLink.connect(path, vsock_port=vsock_port, timeout=timeout), None)
        return cls(link, loop)

    @classmethod
    def wait_ready(
        cls,
        path: str | os.PathLike[str],
        *,
        loop: asyncio.AbstractEventLoop,
        vsock_port: int | None = None,
        timeout: float,
        alive: Callable[[], bool],
    ) -> SyncLink:
        """``guest.link.wait_ready`` from a thread (``alive`` is called on the loop)."""
        ready = wait_ready(path, vsock_port=vsock_port, timeout=timeout, alive=alive)
        return cls(_on(loop, ready, None), loop)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = _CALL_TIMEOUT) -> T:
        return _on(self.loop, coro, timeout)

    @property
    def info(self) -> AgentInfo:
        return self.link.info

    @property
    def closed(self) -> bool:
        return self.link.closed

    def close(self) -> None:
        if not self.loop.is_closed():
            self._run(self.link.close(), 10)

    def __enter__(self) -> SyncLink:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def call(
        self, op: str, args: Mapping[str, Any] | None = None, *, timeout: float = 30.0
    ) -> dict[str, Any]:
        return self._run(self.link.call(op, args, timeout=timeout), None)

    def run(
        self,
        argv: list[str],
        *,
        input: bytes | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Completed:
        """Run ``argv`` in the guest to its end (``timeout`` is the guest's, enforced there)."""
        coro = self.link.run(argv, input=input, cwd=cwd, env=env, timeout=timeout)
        return self._run(coro, None)

    def read_bytes(self, path: str) -> bytes:
        return self._run(self.link.read_bytes(path), None)

    def read_into(self, path: str, dest: IO[bytes]) -> int:
        """Copy guest file ``path`` into the open host file ``dest``; the bytes copied."""

        async def copy() -> int:
            size = 0
            async for chunk in self.link.read_file(path):
                await asyncio.to_thread(dest.write, chunk)
                size += len(chunk)
            return size

        return self._run(copy(), None)

    def write_bytes(self, path: str, data: bytes, mode: int = 0o644) -> dict[str, Any]:
        return self._run(self.link.write_file(path, data, mode), None)

    def write_from(self, path: str, source: IO[bytes], mode: int = 0o644) -> dict[str, Any]:
        """Write the open host file ``source`` (from where it stands) to guest ``path``."""
        return self._run(self.link.write_file(path, _file_chunks(source), mode), None)

    def tar_get_into(self, dir: str, names: list[str], dest: IO[bytes]) -> dict[str, Any]:
        async def sink(chunk: bytes) -> None:
            await asyncio.to_thread(dest.write, chunk)

        return self._run(self.link.tar_get(dir, names, sink), None)

    def tar_put_from(self, dir: str, source: IO[bytes]) -> dict[str, Any]:
        return self._run(self.link.tar_put(dir, _file_chunks(source)), None)

    def stat(self, path: str, *, follow: bool = True) -> Stat:
        return self._run(self.link.stat(path, follow=follow))

    def listdir(self, path: str) -> list[Stat]:
        return self._run(self.link.listdir(path))

    def ports(self) -> list[ListeningPort]:
        return self._run(self.link.ports())

    def load(self) -> Load:
        return self._run(self.link.load())

    def boot(self, wait: float = 0.0) -> dict[str, Any]:
        return self._run(self.link.boot(wait), None)

    def poweroff(self) -> None:
        self._run(self.link.poweroff())

    def set_identity(
        self,
        *,
        hostname: str | None = None,
        ip: str | None = None,
        gateway: str | None = None,
        mac: str | None = None,
        host_key: tuple[str, str] | None = None,
    ) -> dict[str, Any]:
        coro = self.link.set_identity(
            hostname=hostname, ip=ip, gateway=gateway, mac=mac, host_key=host_key
        )
        return self._run(coro)

    def set_clock(self, unix_ns: int | None = None) -> dict[str, Any]:
        return self._run(self.link.set_clock(unix_ns))

    def add_entropy(self, n: int = 256) -> dict[str, Any]:
        return self._run(self.link.add_entropy(n))
