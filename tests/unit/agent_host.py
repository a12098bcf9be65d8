"""The real banger-agent, built from its Go source and run on this host.

``build_agent`` compiles it once per test session (as the bundle does:
static, no module proxy, caches under the given directory, never HOME);
``HostAgent`` runs it with ``--listen unix:PATH`` and stops it after.
``BANGER_AGENT_SRC`` points at another checkout's agent source.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from banger import proc

SOURCE = Path(__file__).resolve().parents[2] / "src" / "banger" / "guest" / "agent"


def agent_source() -> Path:
    return Path(os.environ.get("BANGER_AGENT_SRC") or SOURCE)


def go_binary() -> str | None:
    return proc.which("go") or next(
        (str(p) for p in sorted(Path("/usr/lib").glob("go*/bin/go")) if p.exists()), None
    )


def build_agent(out: Path) -> Path:
    source = agent_source()
    go = go_binary()
    if not (source / "go.mod").exists():
        pytest.skip(f"no agent source at {source}")
    if go is None:
        pytest.skip("no Go toolchain (apt-get install golang-go)")
    binary = out / "banger-agent"
    env = {
        "CGO_ENABLED": "0",
        "GOPROXY": "off",
        "GOFLAGS": "-mod=mod",
        # Go's build cache is content-addressed and safe to share: a second
        # session builds in a second instead of ten.
        "GOCACHE": str(Path(tempfile.gettempdir()) / f"banger-test-gocache-{os.getuid()}"),
        "GOPATH": str(out / "gopath"),
        "HOME": str(out),
    }
    proc.run(
        [go, "build", "-trimpath", "-ldflags", "-s -w", "-o", binary, "."],
        cwd=source,
        env=proc.clean_env(env),
        timeout=300,
    )
    return binary


class HostAgent:
    def __init__(self, binary: Path, socket: Path) -> None:
        self.binary = binary
        self.socket = socket
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> HostAgent:
        log = (self.socket.parent / "agent.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, "--listen", f"unix:{self.socket}"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"banger-agent did not listen on {self.socket}")
            time.sleep(0.01)
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
