"""`vm exec` and `vm cp` through banger's guest channel on a real QEMU guest.

One VM of the default image serves the module. Every command here goes CLI ->
bangerd's websocket -> the VM's agent over virtio-serial; the first test
proves it is the agent (the guest process's parent), not SSH.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import BIN, Banger

pytestmark = pytest.mark.e2e

VM = "exec-e2e"


@pytest.fixture(scope="module")
def vm(banger_env: Banger, image: str) -> Banger:
    banger_env.run("vm", "delete", VM)
    banger_env.create(VM)
    yield banger_env
    banger_env.run("vm", "delete", VM)


def banger(env: Banger, *args: str, **kw) -> subprocess.CompletedProcess[bytes]:
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(
        [str(BIN / "banger"), *args], env=env.env, capture_output=True, timeout=120, **kw
    )


def test_exec_runs_under_the_agent_not_ssh(vm: Banger):
    result = banger(vm, "vm", "exec", VM, "--", "sh", "-c", "cat /proc/$PPID/comm")
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().strip() == "banger-agent"


def test_stdout_and_stderr_apart_binary_stdin_and_the_exit_code(vm: Banger):
    data = bytes(range(256)) * 64
    result = banger(
        vm, "vm", "exec", VM, "--", "sh", "-c", "cat; echo err >&2; exit 9", input=data, stdin=None
    )
    assert result.returncode == 9
    assert result.stdout == data
    assert result.stderr == b"err\n"


def test_a_missing_command_is_127_with_the_error_line(vm: Banger):
    result = banger(vm, "vm", "exec", VM, "--", "no-such-command")
    assert result.returncode == 127
    assert b"no-such-command: command not found in VM exec-e2e" in result.stderr


def forwarded(vm: Banger, sig: signal.Signals) -> tuple[int, bytes]:
    """Send ``sig`` to a `vm exec` whose guest shell traps it; (exit code, stdout)."""
    trap = f'trap "echo got-{sig.name}; exit 7" {sig.name[3:]}'
    script = f"{trap}; echo ready; while :; do sleep 0.2; done"
    child = subprocess.Popen(
        [str(BIN / "banger"), "vm", "exec", VM, "--", "sh", "-c", script],
        env=vm.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    child.send_signal(sig)
    try:
        out, _ = child.communicate(timeout=30)
    finally:
        child.kill()
    return child.returncode, out


def test_a_signal_to_vm_exec_reaches_the_guest_process(vm: Banger):
    assert forwarded(vm, signal.SIGTERM) == (7, b"got-SIGTERM\n")


def test_guest_commands_start_with_sigint_and_sigquit_at_their_default(vm: Banger):
    """What a Ctrl-C forwarded to the guest needs: a process that can take SIGINT.

    Signals ignored when a non-interactive shell starts cannot be trapped in it,
    so an agent that passes on an ignored SIGINT makes Ctrl-C do nothing.
    """
    result = banger(vm, "vm", "exec", VM, "--", "grep", "SigIgn", "/proc/self/status")
    ignored = int(result.stdout.split()[1], 16)
    assert ignored & (1 << (signal.SIGINT - 1) | 1 << (signal.SIGQUIT - 1)) == 0, result.stdout
    assert forwarded(vm, signal.SIGINT) == (7, b"got-SIGINT\n")


def test_a_timeout_kills_the_command_with_124(vm: Banger):
    start = time.monotonic()
    result = banger(vm, "vm", "exec", VM, "--timeout", "1", "--", "sleep", "60")
    assert result.returncode == 124
    assert b"sleep timed out after 1s" in result.stderr
    assert time.monotonic() - start < 20


def test_a_pty_when_asked(vm: Banger):
    child = subprocess.Popen(
        [str(BIN / "banger"), "vm", "exec", "-t", VM, "--", "sh", "-c", "test -t 0 && stty size"],
        env=vm.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.strip() == b"24 80"


def test_cp_of_a_directory_with_modes_and_a_symlink_both_ways(vm: Banger, tmp_path: Path):
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "tool").write_bytes(b"#!/bin/sh\necho tool\n")
    (tree / "bin" / "tool").chmod(0o751)
    (tree / "data").write_bytes(os.urandom(1 << 20))
    (tree / "data").chmod(0o600)
    (tree / "link").symlink_to("bin/tool")
    into = banger(vm, "vm", "cp", str(tree), f"{VM}:/root/")
    assert into.returncode == 0, into.stderr
    seen = banger(
        vm, "vm", "exec", VM, "--cwd", "/root/tree", "--",
        "sh", "-c", "stat -c '%a %n' bin/tool data; readlink link; ./link",
    )  # fmt: skip
    assert seen.stdout.decode().split("\n")[:4] == ["751 bin/tool", "600 data", "bin/tool", "tool"]
    back = tmp_path / "back"
    out = banger(vm, "vm", "cp", f"{VM}:/root/tree", str(back))
    assert out.returncode == 0, out.stderr
    assert (back / "bin" / "tool").stat().st_mode & 0o7777 == 0o751
    assert (back / "data").stat().st_mode & 0o7777 == 0o600
    assert os.readlink(back / "link") == "bin/tool"
    assert (back / "data").read_bytes() == (tree / "data").read_bytes()
