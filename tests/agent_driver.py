"""A small synchronous host side of banger.guest.proto, for driving banger-agent in tests.

Single-threaded on purpose: every frame is read by ``pump``, in order, so a
test can say exactly what it granted and what arrived. The daemon's real
client is asynchronous (banger/guest/link.py); this one only has to be
obviously correct.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from banger.guest import proto
from banger.guest.proto import Frame, Kind


@dataclass
class Channel:
    id: int
    client: AgentClient
    out: dict[int, bytearray] = field(default_factory=lambda: {1: bytearray(), 2: bytearray()})
    eofs: set[int] = field(default_factory=set)
    events: list[dict[str, Any]] = field(default_factory=list)
    closed: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    credit: int = proto.INITIAL_WINDOW  # what the agent lets us send on stream 0
    unread: dict[int, int] = field(default_factory=lambda: {1: 0, 2: 0})

    def write(self, data: bytes, timeout: float = 30) -> None:
        """Stream 0, within the agent's credit; waits for WINDOW frames as needed."""
        view = memoryview(data)
        deadline = time.monotonic() + timeout
        while view:
            while self.credit <= 0:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"channel {self.id}: no credit for stream 0")
                self.client.pump(deadline - time.monotonic())
            n = min(len(view), self.credit, proto.DATA_CHUNK)
            self.client.send(proto.data(self.id, proto.STDIN, bytes(view[:n])))
            self.credit -= n
            view = view[n:]

    def eof(self) -> None:
        self.client.send(proto.eof(self.id, proto.STDIN))

    def control(self, **value: Any) -> None:
        self.client.send(proto.encode_json(self.id, Kind.CONTROL, value))

    def cancel(self) -> None:
        self.client.send(proto.encode(self.id, Kind.CANCEL))

    def grant(self, stream: int, increment: int) -> None:
        self.client.send(proto.window(self.id, stream, increment))

    def wait(self, timeout: float = 30) -> dict[str, Any]:
        """Frames until CLOSE (or a channel ERROR); returns the CLOSE payload."""
        deadline = time.monotonic() + timeout
        while self.closed is None and self.error is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"channel {self.id}: no CLOSE within {timeout}s")
            self.client.pump(left)
        if self.error is not None:
            raise AssertionError(f"channel {self.id}: ERROR {self.error}")
        assert self.closed is not None
        return self.closed

    def wait_event(self, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while not self.events:
            self.client.pump(deadline - time.monotonic())
        return self.events[0]

    @property
    def stdout(self) -> bytes:
        return bytes(self.out[1])

    @property
    def stderr(self) -> bytes:
        return bytes(self.out[2])


class AgentClient:
    """One connection to an agent's unix socket."""

    def __init__(self, path: Path, *, auto_grant: bool = True) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(str(path))
        self.decoder = proto.Decoder()
        self.channels: dict[int, Channel] = {}
        self.control: list[Frame] = []  # channel 0's frames
        self.next_id = 1
        # Grant the agent more output credit as soon as its DATA arrives.
        self.auto_grant = auto_grant

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def pump(self, timeout: float) -> list[Frame]:
        """Read what arrives within ``timeout`` (at least one recv) and route it."""
        self.sock.settimeout(max(timeout, 0.001))
        try:
            chunk = self.sock.recv(1 << 20)
        except TimeoutError:
            return []
        if not chunk:
            raise ConnectionError("the agent closed the connection")
        frames = self.decoder.feed(chunk)
        for frame in frames:
            self._route(frame)
        return frames

    def _route(self, frame: Frame) -> None:
        if frame.channel == 0:
            self.control.append(frame)
            return
        ch = self.channels.get(frame.channel)
        if ch is None:
            raise AssertionError(f"a frame for unknown channel {frame.channel}: {frame}")
        if frame.kind is Kind.DATA:
            stream, chunk = frame.stream()
            ch.out[stream] += chunk
            if self.auto_grant:
                self.send(proto.window(ch.id, stream, len(chunk)))
            else:
                ch.unread[stream] += len(chunk)
        elif frame.kind is Kind.EOF:
            ch.eofs.add(frame.stream()[0])
        elif frame.kind is Kind.WINDOW:
            stream, increment = frame.window()
            assert stream == proto.STDIN
            ch.credit += increment
        elif frame.kind is Kind.EVENT:
            ch.events.append(frame.json())
        elif frame.kind is Kind.CLOSE:
            ch.closed = frame.json()
        elif frame.kind is Kind.ERROR:
            ch.error = frame.json()
        else:
            raise AssertionError(f"unexpected {frame.kind.name} on channel {frame.channel}")

    def next_control(self, timeout: float = 10) -> Frame:
        deadline = time.monotonic() + timeout
        while not self.control:
            if time.monotonic() > deadline:
                raise TimeoutError("nothing on channel 0")
            self.pump(deadline - time.monotonic())
        return self.control.pop(0)

    def hello(self, lo: int = proto.VERSION_MIN, hi: int = proto.VERSION_MAX) -> Frame:
        self.send(proto.encode_json(0, Kind.HELLO, {"min": lo, "max": hi, "host": "tests"}))
        return self.next_control()

    def start(self) -> dict[str, Any]:
        """SYNC and a successful HELLO; returns the agent's HELLO."""
        self.send(proto.SYNC)
        answer = self.hello()
        assert answer.kind is Kind.HELLO, answer
        return answer.json()

    def start_retrying(self, timeout: float, every: float = 0.5) -> dict[str, Any]:
        """SYNC and HELLO again and again until answered: the guest kernel drops
        what the host sends before the agent has opened its serial port."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send(proto.SYNC)
            self.send(proto.encode_json(0, Kind.HELLO, {"min": 1, "max": 1, "host": "tests"}))
            until = time.monotonic() + every
            while time.monotonic() < until:
                self.pump(until - time.monotonic())
                for frame in self.control:
                    if frame.kind is Kind.HELLO:
                        self.control.clear()
                        return frame.json()
        raise TimeoutError(f"no HELLO from the agent within {timeout}s")

    def open(self, op: str, **request: Any) -> Channel:
        return self.open_raw(json.dumps({"op": op, **request}).encode())

    def open_raw(self, payload: bytes) -> Channel:
        ch = Channel(self.next_id, self)
        self.channels[ch.id] = ch
        self.next_id += 2
        self.send(proto.encode(ch.id, Kind.OPEN, payload))
        return ch

    def call(self, op: str, timeout: float = 30, **request: Any) -> dict[str, Any]:
        return self.open(op, **request).wait(timeout)

    def run(
        self, argv: list[str], stdin: bytes | None = None, wait: float = 30, **request: Any
    ) -> Channel:
        """An exec to its end: input sent and closed, output collected."""
        ch = self.open("exec", argv=argv, stdin=stdin is not None, **request)
        if stdin is not None:
            ch.write(stdin)
            ch.eof()
        ch.wait(wait)
        return ch


GO_CACHE = Path(tempfile.gettempdir()) / f"banger-test-agent-{os.getuid()}"


def build_agent() -> Path:
    """banger-agent built from this tree's source (the Go cache is kept between runs)."""
    from banger.guest import agentbin

    return agentbin.build_agent(GO_CACHE)


@contextmanager
def running_agent(
    binary: Path, workdir: Path, *, prefix: tuple[str, ...] = (), args: tuple[str, ...] = ()
) -> Iterator[Path]:
    """banger-agent listening on a unix socket in ``workdir``; yields the socket's path.

    ``prefix`` runs it under another program (``ip netns exec NS``)."""
    sock = workdir / "agent.sock"
    log = (workdir / "agent.log").open("wb")
    proc = subprocess.Popen(
        [*prefix, str(binary), "--listen", f"unix:{sock}", *args],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((workdir / "agent.log").read_text())
            time.sleep(0.01)
        yield sock
    finally:
        proc.kill()
        proc.wait()
        log.close()


def go_missing() -> bool:
    return shutil.which("go") is None
