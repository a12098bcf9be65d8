"""kill -9 of banger-helper and of a VM's QEMU in the middle of the work.

The daemon stays up in each case. What a user sees is checked through the
real CLI: the command that was running ends with one clear error (or, for a
stop, simply finishes), the next command works, and the leak probe finds
nothing the store does not account for.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import pytest

from .conftest import BRIDGE, Banger, wait_gone
from .killer import at_stage, dead, kill_during
from .leakprobe import leaks, processes, stored_vms

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]


def helper_pid(banger: Banger) -> int:
    return int((banger.runtime / "helper.pid").read_text().strip())


def qemu_pid(vm_dir: str) -> int | None:
    for pid, cmdline in processes().items():
        if "qemu-system" in cmdline and f"{vm_dir}/" in cmdline:
            return pid
    return None


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
    """Run ``banger ARGV``; SIGKILL ``victim()`` once the CLI prints ``stage``."""
    return kill_during(banger, argv, at_stage(stage), victim, freeze=freeze)


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
