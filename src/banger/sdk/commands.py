"""``vm.commands``: run a command in the VM, to its end or chunk by chunk.

Each command is one exec operation of the daemon (``POST /vms/NAME/exec``)
through banger's guest agent: its output arrives as the operation's events
(stdout and stderr apart), its end as the operation's result. A string is a
shell line (``sh -c``), a list is an argv run as it is.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from banger.errors import NotFound

if TYPE_CHECKING:
    from banger.api.client import Client
    from banger.api.shapes import Operation

Command = str | Sequence[str]
"""A shell line (run with ``sh -c``) or an argv (run as it is, no shell)."""

# What a shell answers for a command it cannot find, and timeout(1)'s code.
NOT_FOUND, TIMED_OUT = 127, 124


@dataclass(frozen=True)
class CommandResult:
    """How a command ended, with all it wrote.

    ``exit_code`` is a shell's ``$?``: the command's own code, 124 when
    ``timeout`` killed it, 128+N when signal N did, 127 when the guest has
    no such command (``stderr`` then says so).
    """

    exit_code: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        """True when the command exited 0."""
        return self.exit_code == 0


@dataclass(frozen=True)
class Chunk:
    """A piece of a running command's output, as it came."""

    stream: Literal["stdout", "stderr"]
    data: bytes

    @property
    def text(self) -> str:
        """``data`` decoded as UTF-8 (a character cut between chunks shows as U+FFFD)."""
        return self.data.decode(errors="replace")


class CommandStream:
    """The output of a running command, chunk by chunk; ``result`` once it has ended.

    ```python
    stream = vm.commands.stream(["make", "test"])
    for chunk in stream:
        print(chunk.stream, chunk.text, end="")
    print(stream.result.exit_code)
    ```
    """

    def __init__(self, chunks: Iterator[Chunk | CommandResult]) -> None:
        self._chunks = chunks
        self._result: CommandResult | None = None

    def __iter__(self) -> Iterator[Chunk]:
        for item in self._chunks:
            if isinstance(item, CommandResult):
                self._result = item
            else:
                yield item

    @property
    def result(self) -> CommandResult:
        """How the command ended (its output is in the chunks, not repeated here)."""
        if self._result is None:
            raise RuntimeError("the command's result comes once its stream has been read")
        return self._result


def argv_of(command: Command) -> list[str]:
    if isinstance(command, str):
        return ["sh", "-c", command]
    return list(command)


class Commands:
    """Run commands in one VM, as root."""

    def __init__(self, conn: Client, vm: str) -> None:
        self._conn = conn
        self._vm = vm
        self._home: str | None = None

    def run(
        self,
        cmd: Command,
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | bytes | None = None,
        on_stdout: Callable[[str], None] | None = None,
        on_stderr: Callable[[str], None] | None = None,
    ) -> CommandResult:
        """Run ``cmd`` to its end and return its exit code, stdout and stderr.

        A non-zero exit is a result, not an error: check ``exit_code``.

        Args:
            cmd: a shell line (``"pytest -q"``) or an argv (``["make", "test"]``).
            timeout: seconds until the command and its children are killed.
            cwd: where it runs; default: the workspace when one was
                prepared, else /root.
            env: variables to add to its environment.
            stdin: its whole standard input (none by default).
            on_stdout, on_stderr: called with each piece of output as it comes
                (as E2B's), besides its collection in the result.
        """
        out: list[bytes] = []
        err: list[bytes] = []
        result = CommandResult(exit_code=0, stdout="", stderr="")
        for item in self._exec(cmd, timeout=timeout, cwd=cwd, env=env, stdin=stdin):
            if isinstance(item, CommandResult):
                result = item
            else:
                (out if item.stream == "stdout" else err).append(item.data)
                report = on_stdout if item.stream == "stdout" else on_stderr
                if report is not None:
                    report(item.text)
        return CommandResult(
            exit_code=result.exit_code,
            stdout=b"".join(out).decode(errors="replace"),
            stderr=b"".join(err).decode(errors="replace") + result.stderr,
            timed_out=result.timed_out,
        )

    def stream(
        self,
        cmd: Command,
        *,
        timeout: float | None = None,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: str | bytes | None = None,
    ) -> CommandStream:
        """Start ``cmd`` and yield its stdout and stderr chunks as they come.

        The arguments are ``run``'s; the exit code is the stream's
        ``result`` once it has been read to its end.
        """
        return CommandStream(self._exec(cmd, timeout=timeout, cwd=cwd, env=env, stdin=stdin))

    def default_cwd(self) -> str:
        """The workspace's directory in the guest when one was prepared, /root otherwise."""
        if self._home is None:
            from banger.workspace.access import find_workspace

            ws = find_workspace(self._conn, self._vm)
            self._home = ws.guest_path if ws is not None else "/root"
        return self._home

    def set_default_cwd(self, path: str) -> None:
        self._home = path

    def _exec(
        self,
        cmd: Command,
        *,
        timeout: float | None,
        cwd: str | None,
        env: Mapping[str, str] | None,
        stdin: str | bytes | None,
    ) -> Iterator[Chunk | CommandResult]:
        from banger.api.shapes import ExecRequest

        argv = argv_of(cmd)
        given = stdin.encode() if isinstance(stdin, str) else stdin
        body = ExecRequest(
            argv=argv,
            cwd=cwd or self.default_cwd(),
            env=dict(env or {}),
            stdin=base64.b64encode(given).decode() if given is not None else None,
            timeout=timeout,
        )
        op = self._conn.start("POST", f"/vms/{self._vm}/exec", body)
        try:
            final = yield from self._events(op)
            done = self._conn.outcome(op, final)
        except NotFound as exc:
            # The VM was found when the exec started: this is the guest saying it
            # has no such command. A shell's answer: a line on stderr and 127.
            yield CommandResult(exit_code=NOT_FOUND, stdout="", stderr=f"banger: {exc.message}\n")
            return
        yield _result_of(done)

    def _events(self, op: Operation) -> Generator[Chunk, None, Operation | None]:
        """The exec's output as chunks; returns the operation as its last event carried it."""
        from banger.api.client import ended
        from banger.api.shapes import EventType

        final: Operation | None = None
        for event in self._conn.events(op):
            if event.type == EventType.OUTPUT and event.data:
                stream: Literal["stdout", "stderr"] = "stderr" if event.stream == 2 else "stdout"
                yield Chunk(stream, base64.b64decode(event.data))
            final = ended(event) or final
        return final


def _result_of(done: Operation) -> CommandResult:
    from banger.api.shapes import ExecResult

    res = ExecResult.from_json(done.result or {})
    if res.exit is not None:
        code = res.exit
    elif res.timed_out:
        code = TIMED_OUT
    else:
        code = 128 + (res.signal or 0)
    return CommandResult(exit_code=code, stdout="", stderr="", timed_out=res.timed_out)
