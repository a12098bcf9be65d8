"""Put the stand-in ``firecracker`` and ``jailer`` into a directory, as executables."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.standin.spec import REPO

_SCRIPT = """#!{python}
# STAND-IN {name}: not the real one; see tests/standin/{module}.py.
import os, sys
sys.path.insert(0, {repo!r})
os.environ.update({env!r})
from tests.standin.{module} import main
sys.exit(main())
"""


def install(dest: Path, env: dict[str, str] | None = None) -> tuple[Path, Path]:
    """(firecracker, jailer) stand-ins in ``dest``; put ``dest`` first on PATH to use them.

    ``env`` is set in them (STANDIN_NO_BOOT, STANDIN_FAIL), whatever their caller passes.
    """
    dest.mkdir(parents=True, exist_ok=True)
    made = []
    for name in ("firecracker", "jailer"):
        path = dest / name
        path.write_text(
            _SCRIPT.format(
                python=sys.executable, name=name, module=name, repo=str(REPO), env=env or {}
            )
        )
        path.chmod(0o755)
        made.append(path)
    return made[0], made[1]
