"""How the host reaches inside a guest: one command with its streams, tar in, tar out.

Everything a workspace does in a guest (copy a checkout in, run a command in
it, take a patch out, `vm cp`) goes through ``GuestChannel``. Its first
implementation is the VM's SSH, run with the OpenSSH client and the target
the daemon hands out, as `banger vm ssh` does; banger's own guest channel
(virtio-serial under QEMU, vsock under Firecracker) is the next one, behind
the same four methods. Streams are file descriptors or binary files, so a
pipeline (git's tar into the guest) never passes through Python's memory.
"""

from __future__ import annotations

import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import IO, Protocol

from banger import proc
from banger.api.ssh import SshTarget, ssh_argv

Stream = int | IO[bytes] | None
"""A file descriptor, a binary file, ``subprocess.PIPE``, or None for this process's own."""


class GuestProcess(Protocol):
    """A command running in the guest; ``stdin``/``stdout`` are set when piped."""

    @property
    def stdin(self) -> IO[bytes] | None: ...
    @property
    def stdout(self) -> IO[bytes] | None: ...
    def wait(self) -> int: ...


class GuestChannel(Protocol):
    """Run commands in a guest and move tar streams in and out of it."""

    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: Stream = subprocess.DEVNULL,
        stdout: Stream = None,
        stderr: Stream = None,
    ) -> GuestProcess:
        """Start ``argv`` in the guest (as root, in ``cwd``); its exit code from ``wait``."""
        ...

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: Stream = subprocess.DEVNULL,
        stdout: Stream = None,
        stderr: Stream = None,
    ) -> int:
        """Run ``argv`` in the guest to its end; return its exit code."""
        ...

    def put_tar(self, guest_dir: str, source: Stream, *, stderr: Stream = None) -> GuestProcess:
        """Start extracting the tar stream(s) read from ``source`` into ``guest_dir``.

        ``guest_dir`` is made if missing; archives written one after another
        are all extracted; ``subprocess.PIPE`` gives a ``stdin`` to write to.
        """
        ...

    def get_tar(
        self, guest_dir: str, names: Sequence[str], sink: Stream, *, stderr: Stream = None
    ) -> GuestProcess:
        """Start writing a tar of ``names`` (relative to ``guest_dir``) into ``sink``."""
        ...


# The guest's side of each call, as argv for its /bin/sh. Arguments travel as
# positional parameters, never spliced into the script text.
_IN_DIR = 'cd -- "$1" || exit 126; shift; exec env -- "$@"'
_PUT_TAR = 'mkdir -p -- "$1" && exec tar -x -i --no-same-owner -p -f - -C "$1"'
_GET_TAR = 'd=$1; shift; exec tar -c -f - -C "$d" -- "$@"'


def in_guest_argv(argv: Sequence[str], cwd: str | None, env: Mapping[str, str] | None) -> list[str]:
    """``argv`` wrapped to run in ``cwd`` with ``env`` added, for the guest's shell."""
    pairs = [f"{k}={v}" for k, v in (env or {}).items()]
    if cwd is None and not pairs:
        return list(argv)
    return ["sh", "-c", _IN_DIR, "banger", cwd or ".", *pairs, *argv]


class RunsToEnd(ABC):
    """``GuestChannel.run`` written once: every channel runs a command by starting it."""

    @abstractmethod
    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: Stream = subprocess.DEVNULL,
        stdout: Stream = None,
        stderr: Stream = None,
    ) -> GuestProcess: ...

    def run(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: Stream = subprocess.DEVNULL,
        stdout: Stream = None,
        stderr: Stream = None,
    ) -> int:
        child = self.start(argv, cwd=cwd, env=env, stdin=stdin, stdout=stdout, stderr=stderr)
        return child.wait()


class SshChannel(RunsToEnd):
    """``GuestChannel`` over the VM's SSH with banger's key and its pinned host key."""

    def __init__(self, target: SshTarget) -> None:
        self.target = target

    def argv(
        self, argv: Sequence[str], cwd: str | None = None, env: Mapping[str, str] | None = None
    ) -> list[str]:
        return ssh_argv(self.target, in_guest_argv(argv, cwd, env), tty=False)

    def start(
        self,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: Stream = subprocess.DEVNULL,
        stdout: Stream = None,
        stderr: Stream = None,
    ) -> subprocess.Popen[bytes]:
        return proc.popen(self.argv(argv, cwd, env), stdin=stdin, stdout=stdout, stderr=stderr)

    def put_tar(
        self, guest_dir: str, source: Stream, *, stderr: Stream = None
    ) -> subprocess.Popen[bytes]:
        return self.start(["sh", "-c", _PUT_TAR, "banger", guest_dir], stdin=source, stderr=stderr)

    def get_tar(
        self, guest_dir: str, names: Sequence[str], sink: Stream, *, stderr: Stream = None
    ) -> subprocess.Popen[bytes]:
        return self.start(
            ["sh", "-c", _GET_TAR, "banger", guest_dir, *names], stdout=sink, stderr=stderr
        )


def capture(
    channel: GuestChannel,
    argv: Sequence[str],
    *,
    cwd: str | None = None,
    stdin: Stream = subprocess.DEVNULL,
) -> tuple[int, bytes, str]:
    """Run ``argv`` in the guest; its exit code, stdout, and stderr as text."""
    # stderr to a file, not a second pipe: two pipes read in turn can deadlock.
    with tempfile.TemporaryFile() as err:
        child = channel.start(argv, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE, stderr=err)
        out = child.stdout.read() if child.stdout else b""
        code = child.wait()
        err.seek(0)
        return code, out, err.read().decode(errors="replace").strip()
