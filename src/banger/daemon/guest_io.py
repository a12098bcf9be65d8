"""Exec and file transfers through a VM's guest agent, for the API's routes.

The routes speak to clients (a websocket, an operation's events); this module
speaks to the agent through the seam below: ``AgentSource.link(vm)`` gives the
VM's ``AgentLink`` (banger.guest.link) or None when its image has no agent.
The Protocols name only what is used here (``banger.daemon.agents.Agents``
and ``AgentLink`` satisfy them), so the routes can be tested with a real link
to an agent run on the host, whatever else serves it.

Ownership: an exec started for a websocket belongs to that websocket; when
the client goes, the exec is cancelled (its process group killed) and nothing
else is touched. An exec operation belongs to the daemon, like every other
operation, and runs to its end whoever follows it.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

from banger.api.models import ExecRequest, ExecResult, Vm, VmState
from banger.daemon.operations import Progress
from banger.errors import BangerError, Conflict, NotFound
from banger.guest.exec import Exited, Output


class ExecSession(Protocol):
    @property
    def pid(self) -> int | None: ...
    async def write(self, data: bytes) -> None: ...
    async def close_stdin(self) -> None: ...
    async def signal(self, signum: int) -> None: ...
    async def resize(self, rows: int, cols: int) -> None: ...
    async def cancel(self) -> None: ...
    def events(self) -> AsyncIterator[Output | Exited]: ...


class StreamChannel(Protocol):
    async def send(self, data: bytes) -> None: ...
    async def send_eof(self) -> None: ...
    def output(self) -> AsyncIterator[bytes]: ...
    async def result(self, timeout: float | None = None) -> dict[str, Any]: ...
    async def cancel(self) -> None: ...


class Link(Protocol):
    @property
    def info(self) -> Any: ...

    async def exec(
        self,
        argv: list[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bool = False,
        pty: tuple[int, int] | None = None,
        timeout: float | None = None,
    ) -> ExecSession: ...

    async def open(self, op: str, args: Mapping[str, Any] | None = None) -> StreamChannel: ...


class AgentSource(Protocol):
    async def link(self, vm: Vm) -> Link | None: ...


async def link_of(agents: AgentSource | None, vm: Vm) -> Link:
    """VM ``vm``'s agent link, or an error saying why there is none and what works instead."""
    if vm.state != VmState.RUNNING:
        raise Conflict(
            f"VM {vm.name} is {vm.state}, not running",
            hint=f"start it with `banger vm start {vm.name}`",
        )
    link = await agents.link(vm) if agents is not None else None
    if link is None:
        raise NotFound(
            f"VM {vm.name} has no banger agent to run commands through",
            hint=f"its image runs without one; `banger vm ssh {vm.name} -- CMD` works over SSH",
        )
    return link


def result_of(exited: Exited) -> ExecResult:
    return ExecResult(exit=exited.code, signal=exited.signal, timed_out=bool(exited.timed_out))


class CommandRefused(NotFound):
    """The agent could not start the command; ``errno`` is its reason (ENOENT)."""

    def __init__(self, message: str, *, hint: str, errno: str) -> None:
        super().__init__(message, hint=hint)
        self.errno = errno


def exec_error(exc: BangerError, argv: Sequence[str], vm: str) -> BangerError:
    """The agent's refusal of an exec, as a user reads it: ENOENT is 'command not found'."""
    if getattr(exc, "errno", None) == "ENOENT":
        return CommandRefused(
            f"{argv[0]}: command not found in VM {vm}",
            hint=f"look for it with `banger vm exec {vm} -- sh -c 'command -v {argv[0]}'`",
            errno="ENOENT",
        )
    return exc


async def start_exec(link: Link, req: ExecRequest, vm: str, *, stdin: bool) -> ExecSession:
    pty = (req.pty.rows, req.pty.cols) if req.pty is not None else None
    env = dict(req.env)
    if req.pty is not None:
        env.setdefault("TERM", req.pty.term)
    try:
        session = await link.exec(
            req.argv, cwd=req.cwd, env=env, stdin=stdin, pty=pty, timeout=req.timeout
        )
    except BangerError as exc:
        raise exec_error(exc, req.argv, vm) from exc
    return session


async def run_exec_operation(
    link: Link, req: ExecRequest, vm: str, progress: Progress
) -> dict[str, Any]:
    """An exec as an operation: output as events, the exit in its result."""
    given = base64.b64decode(req.stdin) if req.stdin is not None else None
    session = await start_exec(link, req, vm, stdin=given is not None)
    if given is not None:
        if given:
            await session.write(given)
        await session.close_stdin()
    progress.stage("running", " ".join(req.argv)[:200])
    result = ExecResult()
    try:
        async for event in session.events():
            if isinstance(event, Output):
                progress.output(event.stream, event.data)
            else:
                result = result_of(event)
    except BangerError as exc:
        raise exec_error(exc, req.argv, vm) from exc
    progress.exit(describe(result))
    return result.model_dump(mode="json")


def describe(result: ExecResult) -> str:
    if result.timed_out:
        return "timed out"
    if result.signal is not None:
        return f"killed by signal {result.signal}"
    return f"exit {result.exit}"
