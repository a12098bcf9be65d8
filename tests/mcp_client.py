"""The official ``mcp`` SDK's own client, on ``banger mcp`` started as a coding agent would."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

BANGER = Path(sys.executable).parent / "banger"


@asynccontextmanager
async def mcp_session(env: dict[str, str], errlog: Any = None) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=str(BANGER), args=["mcp"], env=env)
    async with (
        stdio_client(params, errlog=errlog or sys.stderr) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def text_of(result: Any) -> str:
    return "".join(getattr(block, "text", "") for block in result.content)


def value_of(result: Any) -> Any:
    """A tool's answer: its structured content when it has one, else its text as JSON or text."""
    assert not result.is_error, text_of(result)
    if result.structured_content is not None:
        data = result.structured_content
        return data.get("result", data) if isinstance(data, dict) and len(data) == 1 else data
    text = text_of(result)
    try:
        return json.loads(text)
    except ValueError:
        return text
