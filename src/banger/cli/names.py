"""The names of VMs, images and kernels, asked of a running bangerd for a tab.

Click-free, so the entry point's fast path (``banger.cli.fast``) and click's
own completion (``banger.cli.completion``) share it. bangerd is never started
for a completion, and a tab prints nothing when it is not there: a tab must
not print errors or wait.
"""

from __future__ import annotations

# Not typing.TYPE_CHECKING: a tab pays for every module it imports.
TYPE_CHECKING = False

if TYPE_CHECKING:
    from typing import Any

PATHS = {"vm": "/vms", "image": "/images", "kernel": "/kernels"}


def names_from_daemon(path: str, incomplete: str) -> list[str]:
    """The names of the records under ``path`` (``/vms``) that start with ``incomplete``.

    Nothing, quietly, when bangerd is not there or does not answer.
    """
    # One GET on the socket and json, not banger.api.client: a tab pays for every
    # module it imports. `/names/vms` answers from the store alone.
    status, answer = _answer(f"/names{path}")
    names = answer.get("names") if isinstance(answer, dict) else None
    if status == 404:  # a daemon older than this CLI: only the full listing has them
        status, answer = _answer(path)
        records = answer if isinstance(answer, list) else []
        names = [r.get("name") for r in records if isinstance(r, dict)]
    if status != 200 or not isinstance(names, list):
        return []
    return [n for n in names if isinstance(n, str) and n and n.startswith(incomplete)]


def _answer(path: str) -> tuple[int, Any]:
    """The status and JSON answered to ``GET path``; 0 when there was no answer to read."""
    try:
        where = _socket()
        # Only now: with no daemon (its directory missing) a tab imports neither.
        import json

        from banger.api import transport

        with transport.request(where, "GET", path, timeout=2.0) as resp:
            return resp.status, json.loads(resp.read())
    except Exception:
        return 0, None


def _socket() -> str:
    """bangerd's socket, once its directory passed the check the client makes."""
    import os

    from banger import rundir, sockpath

    # The socket load_settings() names, from the same values, without banger.config.
    found, system_home = sockpath.locate(os.environ)
    # As the client does: a socket is only as trustworthy as its directory, which
    # in system mode may be the installed owner's (rundir.trusted_owners).
    trusted = rundir.home_owner(system_home) if system_home is not None else set()
    # A str, not a Path: pathlib costs a tab more than the rest of the check.
    rundir.check_private_dir(os.path.dirname(found), trusted)  # type: ignore[arg-type]
    return found
