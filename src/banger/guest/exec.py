"""A command running in the guest through its agent (``exec`` of ``guest.proto``).

``start_exec`` returns once the agent has started the process (its pid is
known) or has said why it could not (``AgentError``, ``errno`` ENOENT for a
command that does not exist). Its output then arrives as ``Output`` events,
stdout (stream 1) and stderr (stream 2) apart and in the order the agent
read them, and ends with one ``Exited``. Output nobody reads holds the
process back (the agent's window), it is never buffered without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from banger.guest import proto
from banger.guest.channel import AgentError, Channel, Chunk

if TYPE_CHECKING:
    from banger.guest.link import AgentLink


@dataclass(frozen=True)
class Output:
    stream: int  # proto.STDOUT or proto.STDERR (a pty's output is all STDOUT)
    data: bytes


@dataclass(frozen=True)
class Exited:
    code: int | None  # the exit status, or None when a signal ended the process
    signal: int | None
    timed_out: bool

    @classmethod
    def from_close(cls, result: Mapping[str, Any]) -> Exited:
        code, sig = result.get("exit"), result.get("signal")
        return cls(
            code=int(code) if code is not None else None,
            signal=int(sig) if sig is not None else None,
            timed_out=bool(result.get("timed_out", False)),
        )

    @property
    def status(self) -> int:
        """A shell's ``$?``: the exit code, or 128 + the signal."""
        if self.code is not None:
            return self.code
        return 128 + (self.signal or 0)


@dataclass(frozen=True)
class Completed:
    """What ``AgentLink.run`` collected from a command that ran to its end."""

    exited: Exited
    stdout: bytes
    stderr: bytes


class ExecSession:
    """A started process; made by ``AgentLink.exec``."""

    def __init__(self, channel: Channel, pid: int | None) -> None:
        self.channel = channel
        self.pid = pid
        self._exited: Exited | None = None

    async def write(self, data: bytes) -> None:
        """Bytes for the process's stdin (the exec was started with ``stdin=True``)."""
        await self.channel.send(data)

    async def close_stdin(self) -> None:
        await self.channel.send_eof()

    async def signal(self, number: int) -> None:
        """Send signal ``number`` to the process's group."""
        await self.channel.control({"signal": int(number)})

    async def resize(self, rows: int, cols: int) -> None:
        """Tell the process's pty its new size (an exec started with ``pty``)."""
        await self.channel.control({"resize": [int(rows), int(cols)]})

    async def cancel(self) -> None:
        """Kill the process group; ``Exited`` still follows."""
        await self.channel.cancel()

    async def events(self) -> AsyncIterator[Output | Exited]:
        """``Output`` as it arrives, then one ``Exited``; ``AgentGone`` if the link dies first."""
        if self._exited is None:
            async for item in self.channel.items():
                if isinstance(item, Chunk) and item.data:
                    yield Output(item.stream, item.data)
            self._exited = Exited.from_close(await self.channel.result())
        yield self._exited

    async def wait(self) -> Exited:
        """Wait for the end, dropping output nobody read."""
        async for event in self.events():
            if isinstance(event, Exited):
                return event
        raise AssertionError("events() ends with Exited")

    async def __aenter__(self) -> ExecSession:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        # A caller that leaves early owns the process: it does not outlive the block.
        if not self.channel.done:
            await self.channel.cancel()


async def start_exec(
    link: AgentLink,
    argv: list[str],
    *,
    cwd: str | None,
    env: Mapping[str, str] | None,
    stdin: bool,
    pty: tuple[int, int] | None,
    timeout: float | None,
    start_timeout: float,
) -> ExecSession:
    if not argv:
        raise AgentError("exec needs a command to run", errno="EINVAL")
    args: dict[str, Any] = {"argv": [str(a) for a in argv], "stdin": stdin}
    if cwd is not None:
        args["cwd"] = cwd
    if env:
        args["env"] = dict(env)
    if pty is not None:
        args["pty"] = {"rows": int(pty[0]), "cols": int(pty[1])}
        if env and "TERM" in env:
            args["pty"]["term"] = env["TERM"]
    if timeout is not None:
        args["timeout"] = timeout
    channel = await link.open("exec", args)
    event = await channel.first_event(start_timeout)
    if event is None:
        # The agent closed the request without starting it; result() says why.
        result = await channel.result()
        return _finished(channel, result)
    started = event.get("started")
    pid = started.get("pid") if isinstance(started, dict) else None
    return ExecSession(channel, int(pid) if pid is not None else None)


def _finished(channel: Channel, result: dict[str, Any]) -> ExecSession:
    session = ExecSession(channel, None)
    session._exited = Exited.from_close(result)
    return session


async def run(
    link: AgentLink,
    argv: list[str],
    *,
    input: bytes | None = None,
    cwd: str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Completed:
    """Run ``argv`` to its end and collect its output (in memory: for small outputs)."""
    session = await link.exec(argv, cwd=cwd, env=env, stdin=input is not None, timeout=timeout)
    out: dict[int, bytearray] = {proto.STDOUT: bytearray(), proto.STDERR: bytearray()}
    exited: Exited | None = None
    async with session, asyncio.TaskGroup() as group:
        if input is not None:
            # Fed beside the reading: a command that writes before it reads
            # would otherwise wait on us while we wait on it.
            group.create_task(_feed(session, input))
        async for event in session.events():
            if isinstance(event, Output):
                out[event.stream] += event.data
            else:
                exited = event
    assert exited is not None
    return Completed(exited, bytes(out[proto.STDOUT]), bytes(out[proto.STDERR]))


async def _feed(session: ExecSession, data: bytes) -> None:
    try:
        await session.write(data)
        await session.close_stdin()
    except AgentError as exc:
        if exc.errno != "EPIPE":  # the command ended without reading it all
            raise
