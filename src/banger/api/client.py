"""The client for bangerd: typed requests and answers over the daemon's unix socket.

Every answer is read into the shape its route declares (``banger.api.shapes``,
derived from the daemon's models, importing nothing but the standard library);
every failure reaches the caller as a ``BangerError``: the daemon's own
``{code, message, hint}``, or ``DaemonUnavailable`` when the socket fails.
Starting the daemon on demand lives here too, so every command gets it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from banger import rundir
from banger.api import transport
from banger.api.shapes import Event, EventType, Operation, OpState
from banger.config import Settings
from banger.errors import BangerError, DaemonUnavailable, from_dict

S = TypeVar("S")


class Body(Protocol):
    def to_json(self) -> dict[str, Any]: ...


# Reads one answer: a shape's ``from_json``.
Reader = Callable[[dict[str, Any]], S]

START_TIMEOUT = 15.0


class DaemonLost(DaemonUnavailable):
    """The daemon went away in the middle of an answer (it crashed, or was stopped)."""


def check_socket_dir(settings: Settings) -> None:
    """Refuse a runtime directory someone else could have planted a socket in."""
    if os.path.lexists(settings.runtime_dir):
        rundir.check_private_dir(settings.runtime_dir, rundir.trusted_owners(settings))


class Client:
    def __init__(self, settings: Settings, *, timeout: float = 60.0) -> None:
        self.settings = settings
        self.timeout = timeout
        self._dir_checked = False

    def _check_dir(self) -> None:
        # Before the first request: a socket is only as trustworthy as its directory.
        if not self._dir_checked:
            check_socket_dir(self.settings)
            self._dir_checked = True

    def close(self) -> None:
        """Nothing stays open between requests; kept so callers can say when they are done."""

    def _open(
        self, method: str, path: str, body: Body | None, timeout: float | None
    ) -> transport.Response:
        data = json.dumps(body.to_json()).encode() if body is not None else None
        self._check_dir()
        try:
            resp = transport.request(str(self.settings.socket), method, path, data, timeout=timeout)
        except transport.ConnectionLost as exc:
            raise self._lost(f"{method} {path}", exc) from exc
        except transport.TransportError as exc:
            raise DaemonUnavailable(
                f"bangerd is not answering on {self.settings.socket} ({exc})",
                hint="start it with `banger daemon start`; its log is in "
                f"{self.settings.log_dir / 'bangerd.log'}",
            ) from exc
        if resp.status >= 400:
            with resp:
                raise _error_of(resp.status, self._body(resp, f"{method} {path}"))
        return resp

    def _body(self, resp: transport.Response, what: str) -> bytes:
        try:
            return resp.read()
        except transport.TransportError as exc:
            raise self._lost(what, exc) from exc

    def _lost(self, what: str, exc: Exception) -> DaemonLost:
        return DaemonLost(
            f"bangerd stopped answering during {what} ({exc})",
            hint="see `banger daemon status`; its log is in "
            f"{self.settings.log_dir / 'bangerd.log'}",
        )

    def call(self, method: str, path: str, body: Body | None = None) -> Any:
        """The JSON answer of one request."""
        with self._open(method, path, body, self.timeout) as resp:
            return json.loads(self._body(resp, f"{method} {path}"))

    def get(self, path: str, read: Reader[S]) -> S:
        return read(self.call("GET", path))

    def get_list(self, path: str, read: Reader[S]) -> list[S]:
        return [read(item) for item in self.call("GET", path)]

    def send(self, method: str, path: str, body: Body | None, read: Reader[S]) -> S:
        return read(self.call(method, path, body))

    def start(self, method: str, path: str, body: Body | None = None) -> Operation:
        """Ask for long work; the daemon answers at once with its operation."""
        return self.send(method, path, body, Operation.from_json)

    def ping(self) -> bool:
        self._check_dir()
        try:
            with transport.request(str(self.settings.socket), "GET", "/status", timeout=2.0) as r:
                r.read()
        except transport.TransportError:
            return False
        return True

    def stream(self, path: str) -> Iterator[bytes]:
        """A streamed response body, chunk by chunk, as it arrives."""
        with self._open("GET", path, None, None) as resp:
            try:
                yield from resp.chunks()
            except transport.TransportError as exc:
                raise self._lost(f"GET {path}", exc) from exc

    def events(self, op: Operation) -> Iterator[Event]:
        path = f"/operations/{op.id}/events"
        with self._open("GET", path, None, None) as resp:
            try:
                for line in resp.lines():
                    if line.strip():
                        yield Event.from_json(json.loads(line))
            except transport.TransportError as exc:
                raise self._lost(f"{op.kind} {op.target}", exc) from exc

    def follow(self, op: Operation, on_event: Callable[[Event], None]) -> Operation:
        """Follow an operation to its end; raise its error if it failed."""
        final: Operation | None = None
        for event in self.events(op):
            on_event(event)
            final = ended(event) or final
        return self.outcome(op, final)

    def outcome(self, op: Operation, final: Operation | None) -> Operation:
        """How ``op`` ended (``final``, from its last event, or asked for); raise its error."""
        if final is None:
            final = self.get(f"/operations/{op.id}", Operation.from_json)
        if final.state == OpState.FAILED and final.error is not None:
            raise from_dict(final.error.to_json())
        return final


def ended(event: Event) -> Operation | None:
    """The operation as its last event carries it; None for every event before."""
    if event.type in (EventType.DONE, EventType.FAILED):
        return event.operation
    return None


def _error_of(status: int, raw: bytes) -> BangerError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict) or "message" not in body:
        text = raw[:200].decode(errors="replace")
        body = {"code": "internal", "message": f"HTTP {status}: {text}"}
    return from_dict(body)


def bangerd_argv() -> list[str]:
    from banger import proc

    sibling = Path(sys.executable).parent / "bangerd"
    if sibling.exists():
        return [str(sibling)]
    found = proc.which("bangerd")
    if found:
        return [found]
    return [sys.executable, "-m", "banger.daemon"]


def start_daemon(settings: Settings) -> None:
    """Start bangerd detached (it outlives this CLI) and wait until it answers."""
    from banger import proc

    settings.log_dir.mkdir(parents=True, exist_ok=True)
    rundir.ensure_private_dir(settings.runtime_dir, rundir.trusted_owners(settings))
    env = {k: v for k, v in os.environ.items() if k.startswith("BANGER_") or k.startswith("XDG_")}
    child = proc.spawn(bangerd_argv(), stdout=settings.log_dir / "bangerd.log", env=env)
    client = Client(settings)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if client.ping():
            return
        if child.poll() is not None:
            break
        time.sleep(0.05)
    raise DaemonUnavailable(
        "bangerd did not start",
        hint=f"see its log: {settings.log_dir / 'bangerd.log'}",
    )


def connect(settings: Settings, *, autostart: bool = True) -> Client:
    client = Client(settings)
    if not client.ping():
        if settings.mode == "system":
            # systemd owns an installed daemon; a second one started here would
            # run as whoever typed the command.
            raise DaemonUnavailable(
                f"the installed bangerd is not answering on {settings.socket}",
                hint="see `banger system status`; start it with `sudo banger system restart`",
            )
        if not autostart:
            raise DaemonUnavailable(
                f"bangerd is not running (no answer on {settings.socket})",
                hint="start it with `banger daemon start`",
            )
        start_daemon(settings)
    return client
