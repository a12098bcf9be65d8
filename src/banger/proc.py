"""The one place banger starts host programs.

argv lists only (never a shell), a clean C.UTF-8 environment, stdin from
/dev/null unless asked, a timeout, and failures raised as HostError quoting
the command and the tail of its stderr.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from banger.errors import HostError

log = logging.getLogger("banger.proc")

_KEEP_ENV = ("PATH", "HOME", "USER", "LOGNAME", "TMPDIR", "XDG_RUNTIME_DIR")
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: os.environ[k] for k in _KEEP_ENV if k in os.environ}
    # sbin holds ip, mkfs.ext4 and friends; a user's PATH often lacks it.
    path = env.get("PATH", "")
    for part in _DEFAULT_PATH.split(":"):
        if part not in path.split(":"):
            path = f"{path}:{part}" if path else part
    env["PATH"] = path
    env["LANG"] = "C.UTF-8"
    env["LC_ALL"] = "C.UTF-8"
    if extra:
        env.update(extra)
    return env


def which(name: str) -> str | None:
    return shutil.which(name, path=clean_env()["PATH"])


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    check: bool = True,
    timeout: float | None = 600,
    input: bytes | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    capture: bool = True,
    pass_fds: Sequence[int] = (),
) -> subprocess.CompletedProcess[bytes]:
    """Run argv to completion; raise HostError on failure when ``check``.

    ``pass_fds`` are inherited by the child (a tap for a VMM); nothing else is.
    """
    args = [os.fspath(a) for a in argv]
    log.debug("+ %s", shlex.join(args))
    try:
        result = subprocess.run(
            args,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.PIPE if capture else subprocess.DEVNULL,
            cwd=cwd,
            env=clean_env(env),
            timeout=timeout,
            check=False,
            pass_fds=tuple(pass_fds),
        )
    except FileNotFoundError as exc:
        raise HostError(
            f"{args[0]} is not installed",
            hint=f"install the package that provides {Path(args[0]).name}, or run `banger doctor`",
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise HostError(f"`{shlex.join(args)}` did not finish within {timeout:.0f}s") from exc
    if check and result.returncode != 0:
        stderr = (result.stderr or b"").decode(errors="replace")
        stdout = (result.stdout or b"").decode(errors="replace")
        detail = _tail(stderr) or _tail(stdout)
        raise HostError(
            f"`{shlex.join(args)}` failed with exit code {result.returncode}"
            + (f": {detail}" if detail else "")
        )
    return result


def output(argv: Sequence[str | os.PathLike[str]], **kwargs: object) -> str:
    """Run argv and return its stdout as text."""
    result = run(argv, **kwargs)  # type: ignore[arg-type]
    return result.stdout.decode(errors="replace")


def spawn(
    argv: Sequence[str | os.PathLike[str]],
    *,
    stdout: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    new_session: bool = True,
) -> subprocess.Popen[bytes]:
    """Start a long-lived child, detached into its own session by default.

    Output goes to ``stdout`` (a log file) or /dev/null; stdin is /dev/null.
    """
    args = [os.fspath(a) for a in argv]
    log.debug("+ %s &", shlex.join(args))
    out = open(stdout, "ab") if stdout is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        return subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env(env),
            start_new_session=new_session,
            close_fds=True,
        )
    except FileNotFoundError as exc:
        raise HostError(f"{args[0]} is not installed", hint="run `banger doctor`") from exc
    finally:
        if not isinstance(out, int):
            out.close()


def interactive(argv: Sequence[str | os.PathLike[str]]) -> int:
    """Run argv attached to this terminal (stdin, stdout, stderr); return its exit code."""
    args = [os.fspath(a) for a in argv]
    log.debug("+ %s", shlex.join(args))
    try:
        return subprocess.call(args, env=clean_env())
    except FileNotFoundError as exc:
        raise HostError(f"{args[0]} is not installed", hint="run `banger doctor`") from exc


def replace_process(argv: Sequence[str | os.PathLike[str]]) -> None:
    """Hand this process over to argv (exec); returns only on failure."""
    args = [os.fspath(a) for a in argv]
    log.debug("+ exec %s", shlex.join(args))
    try:
        os.execvpe(args[0], args, clean_env())  # noqa: S606 - argv list, no shell
    except FileNotFoundError as exc:
        raise HostError(f"{args[0]} is not installed", hint="run `banger doctor`") from exc


def popen(
    argv: Sequence[str | os.PathLike[str]],
    *,
    stdin: int | IO[bytes] | None = subprocess.DEVNULL,
    stdout: int | IO[bytes] | None = None,
    stderr: int | IO[bytes] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start argv with the streams given (a pipe, a file, or this process's own).

    For pipelines that stream between programs (a tar into ssh); the caller
    waits for it and reads its exit code.
    """
    args = [os.fspath(a) for a in argv]
    log.debug("+ %s |", shlex.join(args))
    try:
        return subprocess.Popen(
            args, stdin=stdin, stdout=stdout, stderr=stderr, cwd=cwd, env=clean_env(env)
        )
    except FileNotFoundError as exc:
        raise HostError(f"{args[0]} is not installed", hint="run `banger doctor`") from exc
