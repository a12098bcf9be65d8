"""API routes into a running guest through banger's agent: exec and file transfers.

``POST /vms/NAME/exec`` runs a command as an operation: its output arrives as
``output`` events on the operation's stream, its end as an ``exit`` event and
the operation's result. ``/vms/NAME/exec/ws`` is the interactive form, a
websocket:

- the client sends the request first, as JSON text (an ``ExecRequest``);
- the daemon answers ``{"started": {"pid": N}}``, or a final error;
- binary messages are one stream byte and data, both ways: 0 stdin (client
  to daemon), 1 stdout, 2 stderr (daemon to client);
- the client's text messages are controls: ``{"signal": N}``, ``{"resize":
  [rows, cols]}``, ``{"eof": 0}`` (stdin ends);
- the daemon's last message is ``{"exit": N}``, ``{"signal": N, "timed_out":
  B}`` or ``{"error": ..., "hint": ..., "code": ..., "errno": ...}``, then it
  closes.

A client that drops cancels its exec (the websocket owns it); nothing else.
``/vms/NAME/files/ws`` moves a file or a tar stream the same way: a
``TransferRequest``, binary stream 0 in / 1 out, ``{"eof": 0}``, and a final
``{"ok": true, ...}`` or error.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, ValidationError

from banger.api.models import (
    ExecRequest,
    ExecResult,
    GuestAccess,
    Operation,
    TransferRequest,
    Vm,
)
from banger.daemon.guest_io import (
    AgentSource,
    ExecSession,
    StreamChannel,
    link_of,
    result_of,
    run_exec_operation,
    start_exec,
)
from banger.daemon.hints import invalid_request, with_hint
from banger.daemon.operations import Operations
from banger.daemon.vms import VmService
from banger.errors import BangerError, UserError
from banger.guest.exec import Output

log = logging.getLogger("banger.daemon")

STDIN, STDOUT = 0, 1
M = TypeVar("M", bound=BaseModel)
# What sending to a websocket whose client left raises (uvicorn's
# ClientDisconnected is an OSError; Starlette raises the others).
_GONE = (WebSocketDisconnect, OSError, RuntimeError)


def error_message(exc: BangerError) -> dict[str, Any]:
    exc = with_hint(exc)
    return {
        "error": exc.message,
        "hint": exc.hint,
        "code": exc.code,
        "errno": getattr(exc, "errno", None),
    }


async def first_request(ws: WebSocket, model: type[M]) -> M:
    message = await ws.receive()
    text = message.get("text")
    if text is None:
        raise UserError(
            "the first message must be the request as JSON text",
            hint='e.g. {"argv": ["uname", "-a"]} (exec/ws), {"op": "read", "path": P} (files/ws)',
        )
    try:
        return model.model_validate_json(text)
    except ValidationError as exc:
        body = invalid_request(exc.errors())
        raise UserError(body.message, hint=body.hint, field=body.field) from exc


async def finish(ws: WebSocket, final: dict[str, Any]) -> None:
    """Send the last message and close; a client already gone hears nothing, which is fine."""
    try:
        await ws.send_text(json.dumps(final))
        await ws.close()
    except _GONE:  # the client went away first
        log.debug("websocket client left before its final message")


def controls(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


async def feed_exec(ws: WebSocket, session: ExecSession) -> None:
    """The client's side into the session; returns when the client goes (then cancel)."""
    stdin_open = True
    while True:
        try:
            message = await ws.receive()
        except _GONE:
            return
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        try:
            if data:
                if data[0] == STDIN and stdin_open:
                    await session.write(data[1:])
                continue
            stdin_open = await _control(session, controls(message.get("text") or ""), stdin_open)
        except BangerError as exc:
            # The process closed its stdin or ended; its end arrives through events().
            log.debug("exec input not delivered: %s", exc.message)
            stdin_open = stdin_open and not data


async def _control(session: ExecSession, control: dict[str, Any], stdin_open: bool) -> bool:
    """Apply one control message; whether stdin is still open after it."""
    try:
        if "signal" in control:
            await session.signal(int(control["signal"]))
        elif "resize" in control:
            rows, cols = control["resize"]
            await session.resize(int(rows), int(cols))
        elif "eof" in control and stdin_open:
            await session.close_stdin()
            return False
    except (TypeError, ValueError):
        log.info("ignored a malformed exec control message: %s", control)
    return stdin_open


async def relay_exec(ws: WebSocket, session: ExecSession, vm: str, argv: list[str]) -> None:
    """The session's output to the client, then its end; the client leaving cancels it."""
    ended = asyncio.Event()

    async def feed() -> None:
        await feed_exec(ws, session)
        if not ended.is_set():
            log.info("exec client of %s left; cancelling %s", vm, argv[0])
            await _quietly(session.cancel())

    feeder = asyncio.create_task(feed())
    final: dict[str, Any] = {}
    try:
        async for event in session.events():
            if isinstance(event, Output):
                await ws.send_bytes(bytes([event.stream]) + event.data)
            else:
                final = exit_message(result_of(event))
    except BangerError as exc:
        final = error_message(exc)
    except _GONE:  # the client went away mid-send
        log.info("exec client of %s left mid-output; cancelling %s", vm, argv[0])
        await _quietly(session.cancel())
        return
    finally:
        ended.set()
        feeder.cancel()
    await finish(ws, final)


def exit_message(result: ExecResult) -> dict[str, Any]:
    if result.signal is None and not result.timed_out:
        return {"exit": result.exit}
    return {"signal": result.signal, "timed_out": result.timed_out}


async def _quietly(cancel: Awaitable[None]) -> None:
    try:
        await cancel
    except BangerError as exc:  # the link is gone: so is what it ran
        log.debug("cancel: %s", exc.message)


def _agent_args(req: TransferRequest) -> dict[str, Any]:
    if req.op in ("read", "write"):
        if not req.path:
            raise UserError(
                f"{req.op} needs a path", hint='e.g. {"op": "read", "path": "/etc/os-release"}'
            )
        args: dict[str, Any] = {"path": req.path}
        if req.op == "write":
            args["mkdirs"] = req.mkdirs
            if req.mode is not None:
                args["mode"] = req.mode
        return args
    if not req.dir:
        raise UserError(f"{req.op} needs a dir", hint='e.g. {"op": "tar_put", "dir": "/root"}')
    if req.op == "tar_get":
        if not req.names:
            raise UserError("tar_get needs names under dir", hint='e.g. "names": ["src"]')
        return {"dir": req.dir, "names": req.names}
    return {"dir": req.dir}


async def feed_transfer(ws: WebSocket, channel: StreamChannel) -> bool:
    """The client's input into the channel until its EOF; False when the client left."""
    while True:
        try:
            message = await ws.receive()
        except _GONE:
            return False
        if message["type"] == "websocket.disconnect":
            return False
        data = message.get("bytes")
        if data:
            if data[0] == STDIN:
                await channel.send(data[1:])
        elif "eof" in controls(message.get("text") or ""):
            await channel.send_eof()
            return True


async def relay_transfer(ws: WebSocket, channel: StreamChannel, inbound: bool) -> None:
    """Output to the client, input from it, then the agent's result; a client leaving cancels."""
    ended = asyncio.Event()

    async def feed() -> None:
        try:
            complete = await feed_transfer(ws, channel)
        except BangerError as exc:  # the agent refused mid-way; its CLOSE says why
            log.debug("transfer input stopped: %s", exc.message)
            return
        if not complete and not ended.is_set():
            log.info("transfer client left; cancelling it")
            await _quietly(channel.cancel())

    feeder = asyncio.create_task(feed()) if inbound else None
    try:
        async for chunk in channel.output():
            await ws.send_bytes(bytes([STDOUT]) + chunk)
        final = {"ok": True, **(await channel.result())}
    except BangerError as exc:
        final = error_message(exc)
    except _GONE:  # the client went away mid-send
        log.info("transfer client left mid-output; cancelling it")
        await _quietly(channel.cancel())
        return
    finally:
        ended.set()
        if feeder is not None:
            feeder.cancel()
    await finish(ws, final)


def guest_routes(vms: VmService, agents: AgentSource | None, ops: Operations) -> APIRouter:
    router = APIRouter(tags=["guest"])

    async def vm_of(name: str) -> Vm:
        return await asyncio.to_thread(vms.running, name)

    @router.get("/vms/{name}/guest")
    async def guest_access(name: str) -> GuestAccess:
        """Whether VM NAME's agent answers (exec and files go through it), and its SSH target."""
        vm = await vm_of(name)
        link = await agents.link(vm) if agents is not None else None
        if link is None:
            ssh = await asyncio.to_thread(vms.ssh_target, name)
            return GuestAccess(vm=vm.name, channel=False, ssh=ssh)
        info = getattr(link, "info", None)
        about = info if isinstance(info, dict) else getattr(info, "__dict__", None)
        return GuestAccess(vm=vm.name, channel=True, agent=about)

    @router.post("/vms/{name}/exec", status_code=202)
    async def exec_operation(name: str, req: ExecRequest) -> Operation:
        """Run a command in VM NAME as an operation; follow its output on its events."""
        vm = await vm_of(name)
        link = await link_of(agents, vm)
        return ops.start_async(
            "vm.exec", vm.name, lambda p: run_exec_operation(link, req, vm.name, p)
        )

    @router.websocket("/vms/{name}/exec/ws")
    async def exec_ws(ws: WebSocket, name: str) -> None:
        await ws.accept()
        try:
            req = await first_request(ws, ExecRequest)
            vm = await vm_of(name)
            session = await start_exec(await link_of(agents, vm), req, vm.name, stdin=True)
        except BangerError as exc:
            await finish(ws, error_message(exc))
            return
        await ws.send_text(json.dumps({"started": {"pid": session.pid}}))
        await relay_exec(ws, session, vm.name, req.argv)

    @router.websocket("/vms/{name}/files/ws")
    async def files_ws(ws: WebSocket, name: str) -> None:
        await ws.accept()
        try:
            req = await first_request(ws, TransferRequest)
            args = _agent_args(req)
            link = await link_of(agents, await vm_of(name))
            channel: StreamChannel = await link.open(req.op, args)
        except BangerError as exc:
            await finish(ws, error_message(exc))
            return
        await ws.send_text(json.dumps({"started": {}}))
        await relay_transfer(ws, channel, inbound=req.op in ("write", "tar_put"))

    return router
