"""The error tree every layer raises and the CLI and API translate.

Each error carries a stable ``code`` (the API's wire value), a one-line
``message`` for a person, and an optional ``hint`` saying what to do next.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: a tab imports this module, and typing costs it more than the rest.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any


class BangerError(Exception):
    code = "internal"
    exit_code = 1
    http_status = 500

    def __init__(self, message: str, *, hint: str | None = None, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        # For a rejected request: the request field at fault, which a client
        # may show in its own spelling (the CLI's flag).
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        data = {"code": self.code, "message": self.message, "hint": self.hint}
        if self.field is not None:
            data["field"] = self.field
        return data


class UserError(BangerError):
    """Bad input: a wrong flag, a malformed name, a missing argument."""

    code = "invalid"
    exit_code = 2
    http_status = 400


class NotFound(BangerError):
    code = "not_found"
    http_status = 404


class Conflict(BangerError):
    code = "conflict"
    http_status = 409


class HostError(BangerError):
    """The host lacks something banger needs, or a host command failed."""

    code = "host"
    http_status = 500


class VmmError(BangerError):
    code = "vmm"
    http_status = 500


class HelperError(BangerError):
    code = "helper"
    http_status = 502


class AgentUnavailable(VmmError):
    """A VM's guest agent does not answer; SSH may still reach the VM."""

    code = "agent_unavailable"
    http_status = 503


class GuestError(BangerError):
    """What the guest ran for banger failed there (a file it could not read, say)."""

    code = "guest"
    http_status = 502


class DaemonUnavailable(BangerError):
    code = "daemon_unavailable"
    http_status = 503


_BY_CODE: dict[str, type[BangerError]] = {
    cls.code: cls
    for cls in (
        BangerError,
        UserError,
        NotFound,
        Conflict,
        HostError,
        VmmError,
        HelperError,
        AgentUnavailable,
        GuestError,
        DaemonUnavailable,
    )
}


def from_dict(data: dict[str, Any]) -> BangerError:
    """Rebuild an error that crossed a wire as ``{code, message, hint}``."""
    cls = _BY_CODE.get(str(data.get("code")), BangerError)
    field = data.get("field")
    return cls(
        str(data.get("message") or "unknown error"),
        hint=data.get("hint"),
        field=str(field) if field else None,
    )
