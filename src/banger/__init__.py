"""banger: disposable Linux microVMs for developers and coding agents.

``banger.VM`` and ``banger.AsyncVM`` are its Python SDK (``banger.sdk``).
They load on first use, so ``import banger`` (and every CLI command, which
imports this package) pays nothing for them.
"""

from __future__ import annotations

__version__ = "0.1.0"

# Not typing.TYPE_CHECKING: importing typing here would cost `import banger` ~15 ms.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from banger.sdk import (
        VM,
        AgentUnavailable,
        AsyncVM,
        BangerError,
        Chunk,
        CommandResult,
        Conflict,
        DaemonUnavailable,
        EntryInfo,
        HostError,
        NotFound,
        UserError,
        VmmError,
    )

__all__ = [
    "VM",
    "AgentUnavailable",
    "AsyncVM",
    "BangerError",
    "Chunk",
    "CommandResult",
    "Conflict",
    "DaemonUnavailable",
    "EntryInfo",
    "HostError",
    "NotFound",
    "UserError",
    "VmmError",
    "__version__",
]


def __getattr__(name: str) -> object:
    if name in __all__:
        import importlib

        return getattr(importlib.import_module("banger.sdk"), name)
    raise AttributeError(f"module 'banger' has no attribute {name!r}")
