"""How the root helper runs host programs: argv only, from fixed system paths.

The helper runs as root, so it never takes a program from an inherited
PATH: ``ip``, ``nft`` and ``resolvectl`` are looked up in the system
directories only, with a clean C.UTF-8 environment and stdin closed.
"""

from __future__ import annotations

import logging
import shlex
import shutil
import subprocess
from collections.abc import Sequence

from banger.helper.errors import HostError

log = logging.getLogger("banger.helper")

SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_ENV = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def which(name: str) -> str | None:
    return shutil.which(name, path=SYSTEM_PATH)


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    timeout: float = 30,
    input: bytes | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run argv to completion; raise HostError quoting its stderr when ``check``."""
    args = list(argv)
    log.debug("+ %s", shlex.join(args))
    try:
        result = subprocess.run(
            args,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            env=dict(_ENV),
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as exc:
        raise HostError(
            f"{args[0]} is not installed", hint=f"install the package that provides {args[0]}"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise HostError(f"`{shlex.join(args)}` did not finish within {timeout:.0f}s") from exc
    if check and result.returncode != 0:
        said = (result.stderr or result.stdout or b"").decode(errors="replace").strip()
        tail = "\n".join(said.splitlines()[-8:])
        raise HostError(
            f"`{shlex.join(args)}` failed with exit code {result.returncode}"
            + (f": {tail}" if tail else "")
        )
    return result
