"""Hints that name banger's commands, added where the daemon answers.

The layers below (the store, the image and kernel code) say what is wrong;
this module says what to type next, so only one layer knows the CLI's
commands. Rejected request bodies are answered here too, in the same
``{code, message, hint, field}`` shape as every other error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from banger.api.models import ErrorBody, VmCreate, VmSet, VmStop
from banger.daemon.plan import host_memory_mib
from banger.errors import BangerError
from banger.store.repo import Missing, Taken

_MISSING: dict[str, Callable[[str], str]] = {
    "VM": lambda _: "see `banger vm list` for the VMs that exist",
    "image": lambda _: (
        "see `banger image list`, or build one with `banger image pull debian-bookworm`"
    ),
    "kernel": lambda _: "see `banger kernel list`, or fetch one with `banger kernel pull`",
    "operation": lambda _: "GET /operations lists the recent ones",
    "snapshot": lambda _: "see `banger vm snapshot list` for the snapshots that exist",
    "workspace in VM": lambda name: (
        f"copy a git checkout in first: `banger vm workspace prepare {name} PATH`"
    ),
}
_TAKEN: dict[str, Callable[[str], str]] = {
    "VM": lambda name: f"pick another --name, or delete it with `banger vm delete {name}`",
    "image": lambda name: f"delete it first with `banger image delete {name}`",
    "kernel": lambda name: f"delete it first with `banger kernel delete {name}`",
    "snapshot": lambda name: (
        f"pick another name, or delete it with `banger vm snapshot delete {name}`"
    ),
}


def with_hint(exc: BangerError) -> BangerError:
    """``exc`` with a next step where the raiser stated only the fact."""
    if exc.hint is None:
        if isinstance(exc, Missing) and exc.kind in _MISSING:
            exc.hint = _MISSING[exc.kind](exc.name)
        elif isinstance(exc, Taken) and exc.kind in _TAKEN:
            exc.hint = _TAKEN[exc.kind](exc.name)
    return exc


# The request models whose numeric fields have ranges worth stating.
_REQUESTS: tuple[type[BaseModel], ...] = (VmCreate, VmSet, VmStop)
_UNITS = {"memory_mib": " MiB", "timeout": " s"}


def field_range(field: str) -> tuple[float | None, float | None]:
    """The (lowest, highest) a request field accepts, from the models' own constraints."""
    for model in _REQUESTS:
        info = model.model_fields.get(field)
        if info is None:
            continue
        low = high = None
        for rule in info.metadata:
            low = getattr(rule, "ge", low)
            high = getattr(rule, "le", high)
        return low, high
    return None, None


def host_capacity(field: str) -> str:
    """What this host can give, for the fields where the host is the real limit."""
    if field == "vcpus":
        return f"; this host has {os.cpu_count() or 1} cores"
    if field == "memory_mib":
        return f"; this host has {host_memory_mib()} MiB of memory"
    return ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def invalid_request(errors: Sequence[Any]) -> ErrorBody:
    """The first problem of a rejected request, naming its field and what it accepts."""
    first: dict[str, Any] = dict(errors[0]) if errors else {}
    path = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    field = ".".join(path) or None
    got = first.get("input")
    limits = first.get("ctx") or {}
    problem = str(first.get("msg", "invalid request")).lower()
    if first.get("type") == "greater_than_equal" and "ge" in limits:
        problem = f"must be at least {limits['ge']}"
    elif first.get("type") == "less_than_equal" and "le" in limits:
        problem = f"must be at most {limits['le']}"
    low, high = field_range(field) if field else (None, None)
    if low is not None or high is not None:
        unit = _UNITS.get(field or "", "")
        if low is not None and high is not None:
            allowed = f"{_number(low)} to {_number(high)}{unit}"
        elif low is not None:
            allowed = f"at least {_number(low)}{unit}"
        else:
            allowed = f"at most {_number(high or 0)}{unit}"
        hint = f"{field} takes {allowed}{host_capacity(field or '')}"
    else:
        hint = "see /openapi.json for the request's shape"
    shown = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
    message = f"{field}: {problem}{shown}" if field else problem
    return ErrorBody(code="invalid", message=message, hint=hint, field=field)
