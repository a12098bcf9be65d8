"""The OpenSSH command line for a VM, from the daemon's ``SshTarget``.

Both sides use it: the CLI hands the terminal to ssh with it, and anything in
the daemon that wants a copy-pasteable command can build the same one.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Protocol


class SshTarget(Protocol):
    """What ``ssh_argv`` reads: the wire's SshTarget, as a model or as a shape."""

    @property
    def host(self) -> str: ...
    @property
    def user(self) -> str: ...
    @property
    def identity_file(self) -> str: ...
    @property
    def known_hosts_file(self) -> str: ...
    @property
    def host_key_alias(self) -> str: ...


def ssh_argv(
    target: SshTarget, command: Sequence[str] = (), *, tty: bool | None = None
) -> list[str]:
    """The OpenSSH command line for ``target``; the host key is pinned, never learned.

    ``-F /dev/null``: a user's ``Host *`` settings (a ProxyJump, a different
    User, ControlMaster) must not apply to VMs; every option banger needs is
    given here. ``--`` before the destination: nothing after it is read as an
    ssh option, whatever the command looks like.
    """
    argv = [
        "ssh",
        "-F",
        "/dev/null",
        "-i",
        target.identity_file,
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={target.known_hosts_file}",
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"HostKeyAlias={target.host_key_alias}",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "ConnectTimeout=10",
        "-o",
        "ServerAliveInterval=15",
    ]
    if tty is True:
        argv.append("-tt")
    elif tty is False:
        argv.append("-T")
    argv += ["--", f"{target.user}@{target.host}"]
    if command:
        # ssh joins its arguments with spaces for the remote shell; quote each
        # so the guest sees exactly the argv the user typed.
        argv.append(shlex.join(command))
    return argv


def looks_like_a_shell_line(command: Sequence[str]) -> bool:
    """One argument holding spaces or ``;``: meant for a shell, run as a program name."""
    return len(command) == 1 and any(c in command[0] for c in " ;|&")
