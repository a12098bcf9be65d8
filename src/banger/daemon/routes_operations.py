"""API routes for operations: their state, and their progress as an event stream."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from banger.api.models import Operation
from banger.daemon.operations import Operations
from banger.errors import NotFound
from banger.store import Store


def operation_routes(store: Store, ops: Operations) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/operations")
    async def list_operations() -> list[Operation]:
        return store.list_operations()

    @router.get("/operations/{op_id}")
    async def show_operation(op_id: str) -> Operation:
        return ops.get(op_id)

    @router.get(
        "/operations/{op_id}/events",
        response_class=StreamingResponse,
        responses={200: {"content": {"application/x-ndjson": {}}}},
    )
    async def operation_events(op_id: str) -> StreamingResponse:
        """Progress events as newline-delimited JSON, replayed from the start."""
        run = ops.run_of(op_id)
        if run is None:
            op = ops.get(op_id)  # finished before this daemon started, or unknown
            raise NotFound(
                f"operation {op_id} ({op.state}) has no live event stream",
                hint=f"GET /operations/{op_id} gives its outcome",
            )

        async def lines() -> AsyncIterator[bytes]:
            async for event in run.follow():
                yield event.model_dump_json().encode() + b"\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    return router
