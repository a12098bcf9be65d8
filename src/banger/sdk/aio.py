"""``banger.AsyncVM``: ``banger.VM`` for asyncio code.

Every call runs the synchronous client in a worker thread
(``asyncio.to_thread``): the daemon does the waiting, and a thread per call
in flight costs nothing next to a VM. A command's stream is read in one
thread and handed to the event loop chunk by chunk.
"""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from banger.sdk.commands import Chunk, Command, CommandResult
from banger.sdk.files import EntryInfo
from banger.sdk.vm import VM, Progress

if TYPE_CHECKING:
    from banger.api.shapes import Snapshot, Vm
    from banger.api.shapes import Workspace as WorkspaceRecord
    from banger.config import Settings
    from banger.workspace.export import Exported

_END = object()


class AsyncVM:
    """A banger microVM for asyncio: ``await AsyncVM.create(...)`` or ``async with AsyncVM(...)``.

    ```python
    async with banger.AsyncVM(image="debian-bookworm") as vm:
        r = await vm.commands.run("uname -a")
        async for chunk in vm.commands.stream(["make", "test"]):
            print(chunk.text, end="")
    ```

    The arguments are ``banger.VM``'s; the VM is made on ``create`` or on
    entering ``async with``, and deleted on ``kill()`` or on leaving it.
    """

    def __init__(self, image: str | None = None, workspace: str | Path | None = None, **kw: Any):
        self._args = (image, workspace)
        self._kw = kw
        self._vm: VM | None = None

    @classmethod
    async def create(
        cls, image: str | None = None, workspace: str | Path | None = None, **kw: Any
    ) -> AsyncVM:
        """Make the VM (and prepare its workspace) and return it."""
        vm = cls(image, workspace, **kw)
        await vm._start()
        return vm

    @classmethod
    async def connect(
        cls, name: str, *, on_progress: Progress | None = None, settings: Settings | None = None
    ) -> AsyncVM:
        """Attach to VM ``name``, which exists already; leaving ``async with`` keeps it."""
        made = await asyncio.to_thread(VM.connect, name, on_progress=on_progress, settings=settings)
        return cls._wrap(made)

    @classmethod
    def _wrap(cls, made: VM) -> AsyncVM:
        vm = cls()
        vm._vm = made
        return vm

    async def _start(self) -> None:
        if self._vm is None:
            image, workspace = self._args
            self._vm = await asyncio.to_thread(VM, image, workspace, **self._kw)

    @property
    def sync(self) -> VM:
        """The synchronous ``banger.VM`` underneath."""
        if self._vm is None:
            raise RuntimeError("the VM is made by `await AsyncVM.create(...)` or `async with`")
        return self._vm

    @property
    def name(self) -> str:
        return self.sync.name

    @property
    def commands(self) -> AsyncCommands:
        return AsyncCommands(self.sync)

    @property
    def files(self) -> AsyncFiles:
        return AsyncFiles(self.sync)

    @property
    def workspace(self) -> AsyncWorkspace:
        return AsyncWorkspace(self.sync)

    async def info(self) -> Vm:
        return await asyncio.to_thread(lambda: self.sync.info)

    async def fork(self, name: str | None = None, *, keep: bool = False) -> AsyncVM:
        """``VM.fork``: a running copy, deleted with this VM unless ``keep``."""
        return self._wrap(await asyncio.to_thread(self.sync.fork, name, keep=keep))

    async def snapshot(self, name: str | None = None) -> Snapshot:
        return await asyncio.to_thread(self.sync.snapshot, name)

    async def kill(self) -> None:
        await asyncio.to_thread(self.sync.kill)

    async def __aenter__(self) -> AsyncVM:
        await self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._vm is not None:
            await asyncio.to_thread(self._vm.__exit__, exc_type, exc, tb)


class AsyncCommands:
    def __init__(self, vm: VM) -> None:
        self._vm = vm

    async def run(self, cmd: Command, **kw: Any) -> CommandResult:
        """``VM.commands.run``: to its end; exit code, stdout and stderr."""
        return await asyncio.to_thread(self._vm.commands.run, cmd, **kw)

    async def stream(self, cmd: Command, **kw: Any) -> AsyncIterator[Chunk]:
        """``VM.commands.stream``: each chunk as it comes."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[object] = asyncio.Queue()
        stream = self._vm.commands.stream(cmd, **kw)

        def pump() -> None:
            try:
                for chunk in stream:
                    loop.call_soon_threadsafe(queue.put_nowait, chunk)
            except BaseException as exc:  # handed to the reader, raised there
                loop.call_soon_threadsafe(queue.put_nowait, exc)
            loop.call_soon_threadsafe(queue.put_nowait, _END)

        worker = loop.run_in_executor(None, pump)
        while (item := await queue.get()) is not _END:
            if isinstance(item, BaseException):
                await worker
                raise item
            assert isinstance(item, Chunk)
            yield item
        await worker


class AsyncFiles:
    def __init__(self, vm: VM) -> None:
        self._vm = vm

    async def read(self, path: str) -> str:
        return await asyncio.to_thread(self._vm.files.read, path)

    async def read_bytes(self, path: str) -> bytes:
        return await asyncio.to_thread(self._vm.files.read_bytes, path)

    async def write(self, path: str, data: str | bytes, *, mode: int | None = None) -> None:
        await asyncio.to_thread(self._vm.files.write, path, data, mode=mode)

    async def list(self, path: str) -> builtins.list[EntryInfo]:
        return await asyncio.to_thread(self._vm.files.list, path)


class AsyncWorkspace:
    def __init__(self, vm: VM) -> None:
        self._vm = vm

    async def prepare(self, path: str | Path = ".", **kw: Any) -> WorkspaceRecord:
        return await asyncio.to_thread(self._vm.workspace.prepare, path, **kw)

    async def export(self, base_commit: str | None = None) -> Exported:
        return await asyncio.to_thread(self._vm.workspace.export, base_commit)
