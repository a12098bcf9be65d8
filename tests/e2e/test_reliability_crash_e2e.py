"""kill -9 of banger-helper and of a VM's QEMU in the middle of the work.

The daemon stays up in each case. What a user sees is checked through the
real CLI: the command that was running ends with one clear error (or, for a
stop, simply finishes), the next command works, and the leak probe finds
nothing the store does not account for.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import BIN, BRIDGE, Banger, wait_gone
from .leakprobe import leaks, stored_vms

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]

STAGE = re.compile(r"^\[ *\d+\.\ds\] (\w[\w-]*): ")


def helper_pid(banger: Banger) -> int:
    return int((banger.runtime / "helper.pid").read_text().strip())


def qemu_pid(vm_dir: str) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "qemu-system" in cmdline and f"{vm_dir}/" in cmdline:
            return int(entry.name)
    return None


def dead(pid: int, timeout: float = 10) -> bool:
    """Gone, or a zombie its parent has not reaped yet (the daemon's own helper)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def vm_dir(banger: Banger, name: str) -> str:
    return next(vm.dir for vm in stored_vms(banger.home) if vm.name == name)


def kill_at(
    banger: Banger,
    stage: str,
    argv: list[str],
    victim: Callable[[], int | None],
    *,
    freeze: float = 0.0,
) -> tuple[int, str]:
    """Run ``banger ARGV``; SIGKILL ``victim()`` once the CLI prints ``stage``.

    ``freeze`` stops the victim first for that long, so the work's next
    request to it is in flight (sent, unanswered) when the kill lands.
    """
    child = subprocess.Popen(
        [str(BIN / "banger"), *argv], env=banger.env, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert child.stderr is not None
    seen: list[str] = []
    for line in child.stderr:
        seen.append(line)
        match = STAGE.match(line)
        if match and match.group(1) == stage:
            pid = victim()
            assert pid is not None, "".join(seen)
            if freeze:
                os.kill(pid, signal.SIGSTOP)
                time.sleep(freeze)
            os.kill(pid, signal.SIGKILL)
            assert dead(pid)
            break
    else:
        child.wait()
        pytest.fail(f"stage {stage!r} never came: {''.join(seen)}")
    rest = child.stderr.read()
    return child.wait(timeout=300), "".join(seen) + rest


def no_leaks(banger: Banger) -> None:
    assert banger.run("vm", "list").returncode == 0
    assert leaks(banger.home, banger.runtime, BRIDGE) == []


def test_a_helper_killed_between_commands_is_started_again_by_the_next(banger: Banger) -> None:
    old = helper_pid(banger)
    os.kill(old, signal.SIGKILL)
    assert dead(old)
    banger.create("rel-helper-idle")
    assert helper_pid(banger) != old
    assert banger.run("vm", "delete", "rel-helper-idle").returncode == 0
    banger.created.clear()
    no_leaks(banger)


def test_a_helper_killed_mid_request_fails_the_create_clearly_and_the_next_works(
    banger: Banger,
) -> None:
    name = "rel-helper"
    code, err = kill_at(banger, "network", ["vm", "create", "--name", name],
                        lambda: helper_pid(banger), freeze=0.5)  # fmt: skip
    assert code != 0, err
    assert "error: lost the connection to banger-helper in the middle of " in err, err
    assert "run the command again" in err
    # The create undid itself (its tap too, through a new helper).
    assert name not in [vm.name for vm in stored_vms(banger.home)]
    no_leaks(banger)
    banger.create(name)
    assert banger.run("vm", "delete", name).returncode == 0
    banger.created.clear()
    no_leaks(banger)


def test_a_qemu_killed_while_starting_fails_the_start_and_the_next_start_works(
    banger: Banger,
) -> None:
    name = "rel-qemu-start"
    banger.create(name, "--no-start")
    where = vm_dir(banger, name)
    code, err = kill_at(banger, "agent", ["vm", "start", name], lambda: qemu_pid(where))
    assert code != 0, err
    assert "the VM stopped before its guest agent answered (its VMM exited)" in err, err
    assert f"`banger vm logs {name}`" in err and f"`banger vm start {name}`" in err
    no_leaks(banger)
    started = banger.run("vm", "start", name)
    assert started.returncode == 0, started.stderr
    assert banger.json("vm", "show", name)["state"] == "running"  # type: ignore[index]
    no_leaks(banger)


def test_a_qemu_killed_while_running_is_seen_stopped_and_starts_again(banger: Banger) -> None:
    name = "rel-qemu-run"
    banger.create(name)
    pid = qemu_pid(vm_dir(banger, name))
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert wait_gone(pid)
    shown = banger.json("vm", "show", name)
    assert shown["state"] == "stopped", shown  # type: ignore[index]
    no_leaks(banger)
    started = banger.run("vm", "start", name)
    assert started.returncode == 0, started.stderr
    no_leaks(banger)


def test_a_qemu_killed_while_stopping_leaves_the_vm_stopped(banger: Banger) -> None:
    name = "rel-qemu-stop"
    banger.create(name)
    where = vm_dir(banger, name)
    code, err = kill_at(banger, "stop", ["vm", "stop", name], lambda: qemu_pid(where))
    assert code == 0, err
    assert banger.json("vm", "show", name)["state"] == "stopped"  # type: ignore[index]
    no_leaks(banger)
    deleted = banger.run("vm", "delete", name)
    assert deleted.returncode == 0, deleted.stderr
    banger.created.clear()
    time.sleep(0.1)
    no_leaks(banger)
