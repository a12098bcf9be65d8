"""The real banger-agent, built from its Go source and run on this host.

``HostAgent`` runs the binary of the ``agent_binary`` fixture with
``--listen unix:PATH`` and can kill it as a crash would.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


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
