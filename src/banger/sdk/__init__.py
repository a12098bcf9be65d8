"""banger's Python SDK: disposable microVMs from Python, sync (``VM``) and async (``AsyncVM``).

```python
import banger

with banger.VM(image="debian-bookworm", workspace=".") as vm:   # gone on exit
    r = vm.commands.run("pytest -q", timeout=600)               # r.exit_code, r.stdout, r.stderr
    for chunk in vm.commands.stream(["make", "test"]):          # stdout/stderr chunks as they come
        print(chunk.text, end="")
    vm.files.write("/root/notes.txt", "hi")
    vm.files.read("/etc/os-release")
    patch = vm.workspace.export()                               # the patch and the changed files
    child = vm.fork()                                           # a running copy, from a snapshot
```

It talks to bangerd, the daemon the `banger` CLI talks to, and starts it
when none answers. Names follow E2B's ``Sandbox`` where the idea is the
same (``commands.run``, ``files.read``, ``files.write``, ``kill``, ``connect``);
the workspace, ``fork`` and ``snapshot`` are banger's own.

Errors are one tree, each with the daemon's ``code``, a one-line
``message`` and a ``hint`` naming a command to run: ``BangerError`` and
below it ``UserError`` (bad input), ``NotFound``, ``Conflict``,
``HostError``, ``VmmError``, ``AgentUnavailable``, ``DaemonUnavailable``.
"""

from banger.errors import (
    AgentUnavailable,
    BangerError,
    Conflict,
    DaemonUnavailable,
    HelperError,
    HostError,
    NotFound,
    UserError,
    VmmError,
)
from banger.sdk.aio import AsyncCommands, AsyncFiles, AsyncVM, AsyncWorkspace
from banger.sdk.commands import Chunk, CommandResult, Commands, CommandStream
from banger.sdk.files import EntryInfo, Files
from banger.sdk.vm import VM, Progress
from banger.sdk.workspace import Workspace

__all__ = [
    "VM",
    "AgentUnavailable",
    "AsyncCommands",
    "AsyncFiles",
    "AsyncVM",
    "AsyncWorkspace",
    "BangerError",
    "Chunk",
    "CommandResult",
    "CommandStream",
    "Commands",
    "Conflict",
    "DaemonUnavailable",
    "EntryInfo",
    "Files",
    "HelperError",
    "HostError",
    "NotFound",
    "Progress",
    "UserError",
    "VmmError",
    "Workspace",
]
