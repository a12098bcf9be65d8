"""The CLI's client for bangerd: httpx over the daemon's unix socket.

Starting the daemon on demand lives here too, so every command gets it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from banger import proc
from banger.api.models import Event, EventType, Operation, OpState
from banger.config import Settings
from banger.errors import BangerError, DaemonUnavailable, from_dict

START_TIMEOUT = 15.0


class Client:
    def __init__(self, settings: Settings, *, timeout: float = 60.0) -> None:
        self.settings = settings
        transport = httpx.HTTPTransport(uds=str(settings.socket))
        self._http = httpx.Client(transport=transport, base_url="http://bangerd", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, *, json_body: Any = None) -> Any:
        try:
            resp = self._http.request(method, path, json=json_body)
        except (httpx.ConnectError, httpx.RemoteProtocolError, FileNotFoundError) as exc:
            raise DaemonUnavailable(
                f"bangerd is not answering on {self.settings.socket}",
                hint="start it with `banger daemon start`; its log is in "
                f"{self.settings.log_dir / 'bangerd.log'}",
            ) from exc
        if resp.status_code >= 400:
            raise _error_of(resp)
        return resp.json()

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json_body=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def ping(self) -> bool:
        try:
            self._http.get("/status", timeout=2.0)
        except (httpx.HTTPError, OSError):
            return False
        return True

    def stream(self, path: str) -> Iterator[bytes]:
        """A streamed response body, chunk by chunk, as it arrives."""
        try:
            with self._http.stream("GET", path, timeout=None) as resp:
                if resp.status_code >= 400:
                    resp.read()
                    raise _error_of(resp)
                yield from resp.iter_raw()
        except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
            raise DaemonUnavailable(
                f"bangerd stopped answering on {self.settings.socket}",
                hint="see `banger daemon status`",
            ) from exc

    def events(self, op_id: str) -> Iterator[Event]:
        with self._http.stream("GET", f"/operations/{op_id}/events", timeout=None) as resp:
            if resp.status_code >= 400:
                resp.read()
                raise _error_of(resp)
            for line in resp.iter_lines():
                if line.strip():
                    yield Event.model_validate_json(line)

    def follow(self, op: Operation, on_event: Callable[[Event], None]) -> Operation:
        """Follow an operation to its end; raise its error if it failed."""
        final: Operation | None = None
        for event in self.events(op.id):
            on_event(event)
            if event.type in (EventType.DONE, EventType.FAILED):
                final = event.operation
        if final is None:
            final = Operation.model_validate(self.get(f"/operations/{op.id}"))
        if final.state == OpState.FAILED and final.error is not None:
            raise from_dict(final.error.model_dump())
        return final


def _error_of(resp: httpx.Response) -> BangerError:
    try:
        body = resp.json()
    except (json.JSONDecodeError, ValueError):
        body = {"code": "internal", "message": f"HTTP {resp.status_code}: {resp.text[:200]}"}
    if not isinstance(body, dict) or "message" not in body:
        body = {"code": "internal", "message": f"HTTP {resp.status_code}: {body}"}
    return from_dict(body)


def bangerd_argv() -> list[str]:
    sibling = Path(sys.executable).parent / "bangerd"
    if sibling.exists():
        return [str(sibling)]
    found = proc.which("bangerd")
    if found:
        return [found]
    return [sys.executable, "-m", "banger.daemon"]


def start_daemon(settings: Settings) -> None:
    """Start bangerd detached (it outlives this CLI) and wait until it answers."""
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    settings.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = {k: v for k, v in os.environ.items() if k.startswith("BANGER_") or k.startswith("XDG_")}
    child = proc.spawn(bangerd_argv(), stdout=settings.log_dir / "bangerd.log", env=env)
    client = Client(settings)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if client.ping():
                return
            if child.poll() is not None:
                break
            time.sleep(0.05)
    finally:
        client.close()
    raise DaemonUnavailable(
        "bangerd did not start",
        hint=f"see its log: {settings.log_dir / 'bangerd.log'}",
    )


def connect(settings: Settings, *, autostart: bool = True) -> Client:
    client = Client(settings)
    if not client.ping():
        if not autostart:
            client.close()
            raise DaemonUnavailable(
                f"bangerd is not running (no answer on {settings.socket})",
                hint="start it with `banger daemon start`",
            )
        start_daemon(settings)
    return client
