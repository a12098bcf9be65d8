"""``banger mcp`` through the ``mcp`` SDK's own stdio client, against the test daemon.

The server is the real `banger mcp` process; the daemon is the whole API on a
test socket with the host-run agent (tests/unit/sdk_daemon.py).
"""

from __future__ import annotations

import asyncio
import os

import pytest

from tests.mcp_client import mcp_session, text_of, value_of
from tests.unit.sdk_daemon import IMAGE, SdkDaemon

TOOLS = {"create_vm", "run_command", "read_file", "write_file", "list_vms", "export_patch",
         "fork_vm", "delete_vm"}  # fmt: skip


@pytest.fixture
def daemon(settings, store, agent_binary, tmp_path):
    served = SdkDaemon(settings, store, agent_binary, tmp_path).start()
    yield served
    served.stop()


def env_of(daemon: SdkDaemon) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/root"),
        "BANGER_HOME": str(daemon.settings.home),
        "BANGER_RUNTIME_DIR": str(daemon.settings.runtime_dir),
        "BANGER_CONFIG": str(daemon.tmp / "no-config.toml"),
    }


def test_the_tools_are_listed_each_saying_when_to_use_it(daemon):
    async def main():
        async with mcp_session(env_of(daemon)) as s:
            return (await s.list_tools()).tools

    tools = asyncio.run(main())
    assert {t.name for t in tools} == TOOLS
    for tool in tools:
        assert "use it" in (tool.description or "").lower(), tool.name
    run = next(t for t in tools if t.name == "run_command")
    assert set(run.input_schema["required"]) == {"vm", "command"}


def test_an_unknown_vm_is_a_tool_error_with_bangers_message_and_hint(daemon):
    async def main():
        async with mcp_session(env_of(daemon)) as s:
            return await s.call_tool("run_command", {"vm": "nope", "command": "true"})

    result = asyncio.run(main())
    assert result.is_error
    text = text_of(result)
    assert "no VM named 'nope'\nhint: see `banger vm list` for the VMs that exist" in text


def test_create_run_write_read_list_and_delete(daemon):
    async def main():
        async with mcp_session(env_of(daemon)) as s:
            made = value_of(await s.call_tool("create_vm", {"image": IMAGE, "name": "m1"}))
            ran = value_of(
                await s.call_tool(
                    "run_command", {"vm": "m1", "command": "echo hi; echo oops >&2; exit 4"}
                )
            )
            big = value_of(
                await s.call_tool(
                    "run_command", {"vm": "m1", "command": "head -c 100000 /dev/zero | tr '\\0' x"}
                )
            )
            wrote = value_of(
                await s.call_tool(
                    "write_file",
                    {"vm": "m1", "path": str(daemon.tmp / "m1" / "f.txt"), "content": "hello"},
                )
            )
            read = value_of(
                await s.call_tool(
                    "read_file", {"vm": "m1", "path": str(daemon.tmp / "m1" / "f.txt")}
                )
            )
            listed = value_of(await s.call_tool("list_vms", {}))
            resource = await s.read_resource("banger://vms")
            no_ws = await s.call_tool("export_patch", {"vm": "m1"})
            deleted = value_of(await s.call_tool("delete_vm", {"vm": "m1"}))
            return made, ran, big, wrote, read, listed, resource, no_ws, deleted

    made, ran, big, wrote, read, listed, resource, no_ws, deleted = asyncio.run(main())  # fmt: skip
    assert made["vm"] == "m1"
    assert ran == {"exit_code": 4, "stdout": "hi\n", "stderr": "oops\n"}
    assert big["stdout"].startswith("[banger: the first 70,000 of 100,000 characters were cut")
    assert big["stdout"].endswith("x" * 30_000)
    assert "wrote 5 bytes" in wrote
    assert read == "hello"
    assert [v["vm"] for v in listed] == ["m1"]
    assert '"vm": "m1"' in resource.contents[0].text
    assert no_ws.is_error
    assert "VM m1 has no workspace to export\nhint: copy a checkout in first" in text_of(no_ws)
    assert deleted == "deleted m1"
    assert daemon.store.list_vms() == []
