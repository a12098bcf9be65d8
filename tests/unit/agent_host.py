"""The real banger-agent, built from its Go source and run on this host.

``build_agent`` compiles it as the image bundle does (``guest.agentbin``);
``HostAgent`` runs it with ``--listen unix:PATH`` and kills it after.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from banger.errors import HostError
from banger.guest import agentbin

# agentbin keys a build by the hash of the sources, so one cache serves
# every session (a second one starts in milliseconds, not ten seconds).
CACHE = Path(tempfile.gettempdir()) / f"banger-test-agent-{os.getuid()}"


def build_agent() -> Path:
    try:
        return agentbin.build_agent(CACHE)
    except HostError as exc:
        pytest.skip(f"cannot build banger-agent here: {exc.message}")


class HostAgent:
    def __init__(self, binary: Path, socket: Path) -> None:
        self.binary = binary
        self.socket = socket
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> HostAgent:
        log_path = self.socket.parent / "agent.log"
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "--listen", f"unix:{self.socket}"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        # The agent says so once it listens (the socket file alone is bound, not listening).
        deadline = time.monotonic() + 10
        while b"channel up" not in log_path.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"banger-agent did not come up: {log_path.read_text()}")
            time.sleep(0.01)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
