"""``banger mcp``: banger's VMs as tools for a model, over the Model Context Protocol (stdio).

A coding-agent client starts ``banger mcp`` and talks JSON-RPC on its stdin
and stdout; each tool is a call of the Python SDK (``banger.sdk``), run in a
worker thread so the server keeps answering while a VM boots. A banger
error reaches the model as the tool's error, with banger's message and the
hint naming what to do next. VMs made here stay until ``delete_vm`` (or
`banger vm delete`), like those of `banger vm create`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError

from banger.errors import BangerError

if TYPE_CHECKING:
    from banger.config import Settings
    from banger.sdk import VM

T = TypeVar("T")

# Past this many characters, a stream keeps its end (where errors are) and says so.
OUTPUT_LIMIT = 30_000

INSTRUCTIONS = """banger runs disposable Linux microVMs (Debian by default) on this host.
Use them to run code you should not run on the host: tests, builds, installs, scripts
from the internet. Typical flow: create_vm with workspace set to the project's checkout
(it is copied in, uncommitted edits included), run_command to build and test in it,
export_patch to bring the changes back as a git patch, delete_vm when done."""


def truncated(text: str, limit: int = OUTPUT_LIMIT) -> str:
    """``text``, or its last ``limit`` characters after a line saying how much was cut."""
    if len(text) <= limit:
        return text
    cut = len(text) - limit
    return (
        f"[banger: the first {cut:,} of {len(text):,} characters were cut; redirect the"
        f" output to a file in the VM and read_file it, or filter it (grep, tail)]\n" + text[cut:]
    )


def tool_error(exc: BangerError) -> ToolError:
    return ToolError(exc.message + (f"\nhint: {exc.hint}" if exc.hint else ""))


class Tools:
    """The tools' work, in the SDK's terms; every method runs in a worker thread."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings

    def vm(self, name: str) -> VM:
        from banger.sdk import VM

        return VM.connect(name, settings=self.settings)

    def create_vm(
        self, image: str | None, workspace: str | None, name: str | None
    ) -> dict[str, Any]:
        from banger.sdk import VM

        vm = VM(image=image, workspace=workspace, name=name, settings=self.settings)
        found: dict[str, Any] = {"vm": vm.name, "image": vm.info.image, "ip": vm.ip}
        ws = vm.workspace.info if workspace else None
        if ws is not None:
            found["workspace"] = ws.guest_path
            found["base_commit"] = ws.base_commit
        return found

    def run_command(self, vm: str, command: str, timeout: float, cwd: str | None) -> dict[str, Any]:
        r = self.vm(vm).commands.run(command, timeout=timeout, cwd=cwd)
        result: dict[str, Any] = {
            "exit_code": r.exit_code,
            "stdout": truncated(r.stdout),
            "stderr": truncated(r.stderr),
        }
        if r.timed_out:
            result["note"] = f"killed after the {timeout:g}s timeout"
        return result

    def list_vms(self) -> list[dict[str, Any]]:
        from banger.api.client import connect
        from banger.api.shapes import Vm
        from banger.config import load_settings

        conn = connect(self.settings or load_settings())
        return [
            {"vm": v.name, "state": str(v.state), "image": v.image, "ip": v.ip}
            for v in conn.get_list("/vms", Vm.from_json)
        ]

    def export_patch(self, vm: str) -> dict[str, Any]:
        exported = self.vm(vm).workspace.export()
        return {
            "base_commit": exported.base_commit,
            "changed_files": [
                f"{c.status} {c.old} -> {c.path}" if c.old else f"{c.status} {c.path}"
                for c in exported.changes
            ],
            "patch": truncated(exported.patch.decode(errors="replace"), 200_000),
        }


async def call(work: Callable[[], T]) -> T:
    """Run ``work`` in a thread; a banger error becomes the tool's error for the model."""
    try:
        return await asyncio.to_thread(work)
    except BangerError as exc:
        raise tool_error(exc) from exc


def build(settings: Settings | None = None) -> MCPServer:
    """The server with banger's tools and its VM list as a resource."""
    from banger import __version__

    tools = Tools(settings)
    server = MCPServer(name="banger", version=__version__, instructions=INSTRUCTIONS)

    @server.tool()
    async def create_vm(
        image: str | None = None, workspace: str | None = None, name: str | None = None
    ) -> dict[str, Any]:
        """Create and boot a fresh Linux VM; use it before running anything that could harm
        the host or needs a clean machine. workspace: an absolute path to a git checkout on
        the host, copied into the VM (commands then run in it). image: default Debian
        (debian-bookworm). Returns the VM's name for the other tools. It takes about a
        minute; the VM stays until delete_vm."""
        return await call(lambda: tools.create_vm(image, workspace, name))

    @server.tool()
    async def run_command(
        vm: str, command: str, timeout: float = 600, cwd: str | None = None
    ) -> dict[str, Any]:
        """Run a shell command line in a VM (as root, in its workspace when it has one) and
        wait for it; use it to build, test or inspect. Returns exit_code, stdout and stderr;
        a huge output keeps its end and says what was cut. timeout in seconds kills it
        (exit code 124)."""
        return await call(lambda: tools.run_command(vm, command, timeout, cwd))

    @server.tool()
    async def read_file(vm: str, path: str) -> str:
        """Read a text file in a VM (an absolute path); use it to look at results or logs
        the VM wrote. A huge file keeps its end and says what was cut."""
        return truncated(await call(lambda: tools.vm(vm).files.read(path)))

    @server.tool()
    async def write_file(vm: str, path: str, content: str) -> str:
        """Write a text file in a VM (an absolute path; missing directories are made),
        replacing it whole; use it to put a script, a config or an edit into the VM."""
        await call(lambda: tools.vm(vm).files.write(path, content))
        return f"wrote {len(content.encode()):,} bytes to {path} in {vm}"

    @server.tool()
    async def list_vms() -> list[dict[str, Any]]:
        """List banger's VMs (name, state, image, IP); use it to find a VM made earlier
        before creating another."""
        return await call(tools.list_vms)

    @server.tool()
    async def export_patch(vm: str) -> dict[str, Any]:
        """Every change made in a VM's workspace since create_vm copied it in, as one git
        patch (and the changed files); use it to bring the work back: `git apply` takes
        it on the host."""
        return await call(lambda: tools.export_patch(vm))

    @server.tool()
    async def fork_vm(vm: str, name: str | None = None) -> dict[str, Any]:
        """Copy a running VM as it is now (memory, disks, processes) into a new running
        VM; use it to try two approaches from one prepared state. Returns the copy's name;
        it stays until delete_vm."""
        child = await call(lambda: tools.vm(vm).fork(name, keep=True))
        return {"vm": child.name, "forked_from": vm, "ip": child.ip}

    @server.tool()
    async def delete_vm(vm: str) -> str:
        """Delete a VM and its disks; use it when done with a VM (export_patch first to
        keep its workspace's changes)."""
        await call(lambda: tools.vm(vm).kill())
        return f"deleted {vm}"

    @server.resource("banger://vms", name="vms", mime_type="application/json")
    async def vms_resource() -> str:
        """banger's VMs: name, state, image and IP of each."""
        try:
            return json.dumps(await asyncio.to_thread(tools.list_vms), indent=2)
        except BangerError as exc:
            raise ResourceError(str(tool_error(exc))) from exc

    return server


def serve(settings: Settings | None = None) -> None:
    """Serve MCP on this process's stdin and stdout until the client closes them."""
    build(settings).run("stdio")
