from __future__ import annotations

import asyncio
import threading

from banger.api.models import EventType, OpState
from banger.daemon.operations import Operations, Progress
from banger.errors import NotFound
from banger.store import Database, Store


def test_events_stream_and_outcome_is_stored(tmp_path):
    store = Store(Database(tmp_path / "b.db"))

    def work(progress: Progress) -> dict[str, int]:
        progress.stage("one", "first")
        progress.info("detail")
        progress.stage("two")
        return {"answer": 42}

    async def main() -> list:
        ops = Operations(store)
        op = ops.start("test", "target", work)
        run = ops.run_of(op.id)
        assert run is not None
        return [e async for e in run.follow()]

    events = asyncio.run(main())
    assert [e.type for e in events] == [
        EventType.STAGE,
        EventType.INFO,
        EventType.STAGE,
        EventType.DONE,
    ]
    assert [e.seq for e in events] == [0, 1, 2, 3]
    final = events[-1].operation
    assert final is not None and final.state == OpState.SUCCEEDED and final.result == {"answer": 42}
    assert store.get_operation(final.id).result == {"answer": 42}


def test_failure_carries_code_message_and_hint(tmp_path):
    store = Store(Database(tmp_path / "b.db"))

    def work(progress: Progress) -> None:
        raise NotFound("no such thing", hint="try another")

    async def main():
        ops = Operations(store)
        op = ops.start("test", "t", work)
        run = ops.run_of(op.id)
        assert run is not None
        return [e async for e in run.follow()][-1]

    last = asyncio.run(main())
    assert last.type == EventType.FAILED
    assert last.operation.error.model_dump(exclude_none=True) == {
        "code": "not_found",
        "message": "no such thing",
        "hint": "try another",
    }


def test_a_store_fact_gets_its_command_hint_when_the_operation_fails(tmp_path):
    store = Store(Database(tmp_path / "b.db"))

    def work(progress: Progress) -> None:
        store.get_image("ghost")

    async def main():
        ops = Operations(store)
        op = ops.start("test", "t", work)
        run = ops.run_of(op.id)
        assert run is not None
        return [e async for e in run.follow()][-1]

    error = asyncio.run(main()).operation.error
    assert error.message == "no image named 'ghost'"
    assert "banger image list" in error.hint


def test_a_dropped_follower_does_not_cancel_the_operation(tmp_path):
    store = Store(Database(tmp_path / "b.db"))
    release = threading.Event()

    def work(progress: Progress) -> dict[str, bool]:
        progress.stage("waiting")
        release.wait(5)
        progress.stage("after")
        return {"finished": True}

    async def main():
        ops = Operations(store)
        op = ops.start("test", "t", work)
        run = ops.run_of(op.id)
        assert run is not None
        stream = run.follow()
        first = await stream.__anext__()
        await stream.aclose()  # the client goes away mid-operation
        release.set()
        await ops.wait_all()
        return first, ops.get(op.id)

    first, final = asyncio.run(main())
    assert first.stage == "waiting"
    assert final.state == OpState.SUCCEEDED and final.result == {"finished": True}
