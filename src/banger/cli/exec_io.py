"""``vm exec`` through banger's agent: this terminal's streams, signals and size to the guest.

Without ``-t``, stdin, stdout and stderr pass through apart and byte for byte,
and Ctrl-C (SIGINT), SIGTERM and SIGHUP reach the guest's process group as
themselves; the exit code is the command's (127 for a command the guest
does not have, 124 for ``--timeout``, 128+N for a signal). With ``-t`` the
guest process gets a terminal: this one goes raw, keys (Ctrl-C included) go
to the guest as bytes, and window size changes follow.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from banger.workspace.agent_channel import AgentChannel, AgentProcess

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


@contextmanager
def forwarding(child: AgentProcess, tty: bool) -> Iterator[None]:
    """Signals to this CLI go to the guest's process instead of ending the CLI."""

    def forward(signum: int, _frame: Any) -> None:
        child.send_control({"signal": signum})

    def resize(_signum: int, _frame: Any) -> None:
        rows, cols = terminal_size()
        child.send_control({"resize": [rows, cols]})

    previous: dict[signal.Signals, Any] = {}
    for sig in FORWARDED:
        previous[sig] = signal.signal(sig, forward)
    if tty:
        previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, resize)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def terminal_size() -> tuple[int, int]:
    try:
        size = os.get_terminal_size(sys.stdout.fileno())
    except OSError:
        return 24, 80
    return size.lines, size.columns


@contextmanager
def raw_terminal(active: bool) -> Iterator[None]:
    """This terminal in raw mode while the guest's pty has it; restored whatever happens."""
    if not active or not sys.stdin.isatty():
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def run_command(
    channel: AgentChannel,
    argv: Sequence[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    tty: bool,
    timeout: float | None,
) -> int:
    """Run ``argv`` in the guest with this process's streams; its exit code."""
    pty = terminal_size() if tty else None
    # Held from before the start until the handlers are in: a Ctrl-C as the
    # command starts is forwarded to it, not taken as the CLI's own.
    signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
    try:
        child = channel.start(
            argv, cwd=cwd, env=env, stdin=None, stdout=None, stderr=None, pty=pty, timeout=timeout
        )
        with forwarding(child, tty), raw_terminal(tty):
            signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
            code = child.wait()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    if child.final.get("timed_out"):
        click.echo(f"banger: {argv[0]} timed out after {timeout:g}s and was killed", err=True)
    return code
