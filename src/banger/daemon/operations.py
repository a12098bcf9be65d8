"""Long work as operations: staged, persisted, followed as an event stream.

The work itself runs in a worker thread; clients follow its events over
HTTP. A client that goes away stops reading, nothing more: the operation
carries on and its outcome is in the store.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from banger.api.models import ErrorBody, Event, EventType, Operation, OpState
from banger.daemon.hints import disk_full, with_hint
from banger.errors import BangerError
from banger.store import Store

log = logging.getLogger("banger.daemon")


def dump(model: BaseModel) -> dict[str, Any]:
    """An operation's result: the model as JSON-ready data."""
    return model.model_dump(mode="json")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Progress:
    """What a running operation reports through; safe to call from any thread."""

    def __init__(self, run: OperationRun) -> None:
        self._run = run

    def stage(self, stage: str, message: str = "") -> None:
        self._run.emit(EventType.STAGE, stage=stage, message=message)

    def info(self, message: str) -> None:
        self._run.emit(EventType.INFO, stage=self._run.op.stage, message=message)

    def output(self, stream: int, data: bytes) -> None:
        """An exec's output; kept (to replay for late followers) up to OUTPUT_KEPT bytes."""
        self._run.emit_output(stream, data)

    def exit(self, message: str) -> None:
        self._run.emit(EventType.EXIT, stage=self._run.op.stage, message=message)


# An exec operation's output held for its followers; past it, output is
# dropped with one INFO event saying so (the websocket streams without a cap).
OUTPUT_KEPT = 64 << 20


class OperationRun:
    def __init__(self, op: Operation, loop: asyncio.AbstractEventLoop, store: Store) -> None:
        self.op = op
        self.events: list[Event] = []
        self._output_kept = 0
        self._loop = loop
        self._store = store
        self._lock = threading.Lock()
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def finished(self) -> bool:
        return self.op.state != OpState.RUNNING

    def emit(self, type_: EventType, *, stage: str = "", message: str = "") -> None:
        with self._lock:
            if type_ == EventType.STAGE:
                self.op = self.op.model_copy(update={"stage": stage})
                log.info("%s %s: %s %s", self.op.kind, self.op.target, stage, message)
            event = Event(
                seq=len(self.events),
                type=type_,
                stage=stage,
                message=message,
                time=time.time(),
                operation=self.op if type_ in (EventType.DONE, EventType.FAILED) else None,
            )
            self.events.append(event)
        self._loop.call_soon_threadsafe(self._wake)

    def emit_output(self, stream: int, data: bytes) -> None:
        if self._output_kept >= OUTPUT_KEPT:
            return
        self._output_kept += len(data)
        if self._output_kept >= OUTPUT_KEPT:
            self.emit(EventType.INFO, message=f"output past {OUTPUT_KEPT >> 20} MiB is dropped")
            return
        with self._lock:
            event = Event(
                seq=len(self.events),
                type=EventType.OUTPUT,
                stage=self.op.stage,
                time=time.time(),
                stream=stream,
                data=base64.b64encode(data).decode(),
            )
            self.events.append(event)
        self._loop.call_soon_threadsafe(self._wake)

    def finish(self, result: dict[str, Any] | None, error: BangerError | None) -> None:
        with self._lock:
            update: dict[str, Any] = {"finished_at": now_iso()}
            if error is None:
                update.update(state=OpState.SUCCEEDED, result=result)
            else:
                update.update(state=OpState.FAILED, error=ErrorBody(**error.to_dict()))
            self.op = self.op.model_copy(update=update)
        self._store.save_operation(self.op)
        if error is None:
            self.emit(EventType.DONE, stage=self.op.stage, message="done")
        else:
            self.emit(EventType.FAILED, stage=self.op.stage, message=error.message)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def follow(self, start: int = 0) -> AsyncIterator[Event]:
        index = start
        while True:
            with self._lock:
                fresh = self.events[index:]
            for event in fresh:
                yield event
            index += len(fresh)
            if fresh and fresh[-1].type in (EventType.DONE, EventType.FAILED):
                return
            fut: asyncio.Future[None] = self._loop.create_future()
            self._waiters.append(fut)
            with self._lock:
                pending = len(self.events) > index
            if not pending:
                await fut


Work = Callable[[Progress], dict[str, Any] | None]
# Work that runs on the daemon's loop (it talks to a guest agent) instead of a thread.
AsyncWork = Callable[[Progress], Awaitable[dict[str, Any] | None]]


class Operations:
    def __init__(self, store: Store, max_workers: int = 32, home: Path | None = None) -> None:
        # Named in a full-disk error when the failing write does not say where it was.
        self._home = home
        self._store = store
        # Operations wait on slow guests for minutes; their own pool keeps them
        # from starving quick requests that use the loop's default executor.
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="op")
        self._runs: dict[str, OperationRun] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, kind: str, target: str, work: Work) -> Operation:
        """Start ``work`` in a worker thread and return its operation at once."""
        return self._begin(kind, target, lambda run: self._execute(run, work))

    def start_async(self, kind: str, target: str, work: AsyncWork) -> Operation:
        """Start ``work`` on the loop and return its operation at once."""
        return self._begin(kind, target, lambda run: self._execute_async(run, work))

    def _begin(
        self, kind: str, target: str, execute: Callable[[OperationRun], Coroutine[Any, Any, None]]
    ) -> Operation:
        loop = asyncio.get_running_loop()
        op = Operation(
            id=uuid.uuid4().hex[:12],
            kind=kind,
            target=target,
            state=OpState.RUNNING,
            created_at=now_iso(),
        )
        self._store.save_operation(op)
        run = OperationRun(op, loop, self._store)
        self._runs[op.id] = run
        task = loop.create_task(execute(run))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return op

    async def _execute(self, run: OperationRun, work: Work) -> None:
        loop = asyncio.get_running_loop()
        await self._conclude(run, loop.run_in_executor(self._pool, work, Progress(run)))

    async def _execute_async(self, run: OperationRun, work: AsyncWork) -> None:
        await self._conclude(run, work(Progress(run)))

    async def _conclude(self, run: OperationRun, outcome: Awaitable[dict[str, Any] | None]) -> None:
        try:
            result = await outcome
        except Exception as exc:
            full = disk_full(exc, run.op.kind, run.op.target, self._home)
            if full is not None:
                log.warning("%s %s failed: %s (%s)", run.op.kind, run.op.target, full.message, exc)
                err: BangerError = full
            elif isinstance(exc, BangerError):
                log.warning("%s %s failed: %s", run.op.kind, run.op.target, exc.message)
                err = with_hint(exc)
            else:
                log.exception("%s %s crashed", run.op.kind, run.op.target)
                err = BangerError(
                    f"internal error: {exc}", hint="see the daemon log; run with --debug"
                )
            await asyncio.to_thread(run.finish, None, err)
        else:
            await asyncio.to_thread(run.finish, result, None)

    def get(self, op_id: str) -> Operation:
        run = self._runs.get(op_id)
        return run.op if run else self._store.get_operation(op_id)

    def run_of(self, op_id: str) -> OperationRun | None:
        return self._runs.get(op_id)

    async def wait_all(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
