"""The helper's refusals and failures, as they cross its wire.

The helper imports nothing of banger outside this package, so a reviewer
reads the whole root side in one sitting; these classes carry the same
``code`` values as ``banger.errors``, and the daemon's client rebuilds its
own error classes from them.
"""

from __future__ import annotations

from typing import Any


class Failure(Exception):
    code = "internal"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


class UserError(Failure):
    """A request the helper refuses: a bad name, path, address or shape."""

    code = "invalid"


class NotFound(Failure):
    code = "not_found"


class Conflict(Failure):
    code = "conflict"


class HostError(Failure):
    """A host program failed or the host lacks something."""

    code = "host"


class Refused(Failure):
    """A caller the helper does not serve."""

    code = "helper"
