"""Hints that name banger's commands, added where the daemon answers.

The layers below (the store, the image and kernel code) say what is wrong;
this module says what to type next, so only one layer knows the CLI's
commands. Rejected request bodies are answered here too, in the same
``{code, message, hint, field}`` shape as every other error.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from banger.api.models import ErrorBody, VmCreate, VmSet, VmStop
from banger.daemon.plan import host_memory_mib
from banger.errors import BangerError, HostError
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


_DOING = {
    "vm.create": "creating VM {}",
    "vm.start": "starting VM {}",
    "image.pull": "pulling image {}",
    "vm.snapshot": "taking a snapshot of VM {}",
    "image.promote": "promoting a VM into image {}",
    "image.register": "registering image {}",
    "kernel.pull": "pulling kernel {}",
    "kernel.import": "importing kernel {}",
}
_FULL_TEXT = "No space left on device"


def disk_full(
    exc: BaseException, kind: str, target: str, home: Path | None = None
) -> BangerError | None:
    """A full disk (ENOSPC or a quota), anywhere in ``exc``'s chain, as one clear error.

    The operation's own undo has already removed what it made by the time this
    is said; the message names the disk by the file that did not fit.
    """
    seen: BaseException | None = exc
    while seen is not None:
        where = ""
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            where = str(seen.filename or "")
        elif not (isinstance(seen, BangerError) and _FULL_TEXT in seen.message):
            seen = seen.__cause__ or seen.__context__
            continue
        doing = _DOING.get(kind, kind + " of {}").format(target)
        if not where and home is not None:
            where = str(home)
        place = f"the disk holding {where}" if where else "a disk banger writes to"
        probe = os.path.dirname(where) if os.path.isfile(where) else (where or "/")
        return HostError(
            f"{place} is full: {doing} stopped, and nothing of it was kept",
            hint=f"free space there (`df -h {probe}`; `banger image cache prune` frees"
            " banger's caches), then try again",
        )
    return None
