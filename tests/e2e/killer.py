"""SIGKILL a banger process at a chosen moment of a command: the reliability tests' one way.

The moment is a line the CLI prints on stderr (a stage like ``[  0.1s] network: ...``, or
any progress text); the victim is asked for its pid only then (a VMM started by that very
command has none before).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from .conftest import BIN, Banger

STAGE = re.compile(r"^\[ *\d+\.\ds\] (\w[\w-]*): ")


def at_stage(stage: str) -> Callable[[str], bool]:
    """The CLI's progress line that starts ``stage``."""

    def starts(line: str) -> bool:
        match = STAGE.match(line)
        return match is not None and match.group(1) == stage

    return starts


def daemon_pid(banger: Banger) -> int:
    return int(banger.json("daemon", "status")["pid"])  # type: ignore[index]


def dead(pid: int, timeout: float = 10) -> bool:
    """Gone, or a zombie its parent has not reaped yet (the daemon's own helper)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def kill_during(
    banger: Banger,
    argv: Sequence[str],
    when: Callable[[str], bool],
    victim: Callable[[], int | None],
    *,
    freeze: float = 0.0,
    timeout: float = 300,
) -> tuple[int, str]:
    """Run ``banger ARGV``; SIGKILL ``victim()`` at the first stderr line ``when`` accepts.

    ``freeze`` stops the victim first for that long, so the work's next request to
    it is in flight (sent, unanswered) when the kill lands. (exit code, stderr)
    """
    child = subprocess.Popen(
        [str(BIN / "banger"), *argv], env=banger.env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stderr is not None
    seen: list[str] = []
    for line in child.stderr:
        seen.append(line)
        if when(line):
            pid = victim()
            assert pid is not None, "".join(seen)
            if freeze:
                os.kill(pid, signal.SIGSTOP)
                time.sleep(freeze)
            os.kill(pid, signal.SIGKILL)
            assert dead(pid)
            break
    else:
        child.wait()
        pytest.fail(f"the moment to kill never came: {''.join(seen)}")
    rest = child.stderr.read()
    return child.wait(timeout=timeout), "".join(seen) + rest
