"""kill -9 of bangerd in every stage of an operation, then the next command: nothing leaks.

Each case starts an operation through the real CLI, waits for the stage line
it prints on stderr, kills the daemon with SIGKILL, and checks what a user
sees: the CLI ends with one clear error, the next command starts a daemon
that reconciles, the store accounts for everything on the host (the leak
probe), and once the VM is deleted nothing of it remains.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence

import pytest

from .conftest import BIN, BRIDGE, Banger
from .killer import at_stage, daemon_pid, kill_during
from .leakprobe import leaks, stored_vms

pytestmark = [pytest.mark.e2e, pytest.mark.reliability]


def kill_daemon_at(banger: Banger, stage: str, argv: Sequence[str]) -> tuple[int, str]:
    """Run ``banger ARGV``; SIGKILL bangerd once the CLI prints ``stage``. (exit code, stderr)"""
    pid = daemon_pid(banger)
    return kill_during(banger, argv, at_stage(stage), lambda: pid, timeout=60)


def check_recovered(banger: Banger, name: str | None) -> None:
    """The next command works, the host matches the store, and deleting leaves nothing."""
    listed = banger.run("vm", "list", "--json")  # starts a daemon: reconcile and sweep
    assert listed.returncode == 0, listed.stderr
    assert leaks(banger.home, banger.runtime, BRIDGE) == []
    if name is not None and any(vm.name == name for vm in stored_vms(banger.home)):
        deleted = banger.run("vm", "delete", name)
        assert deleted.returncode == 0, deleted.stderr
    assert leaks(banger.home, banger.runtime, BRIDGE) == []


CREATE_STAGES = ["lease", "disks", "network", "boot"]


@pytest.mark.parametrize("stage", CREATE_STAGES)
def test_a_daemon_killed_while_creating_leaves_nothing_behind(banger: Banger, stage: str) -> None:
    name = f"rel-create-{stage}"
    code, err = kill_daemon_at(banger, stage, ["vm", "create", "--name", name])
    assert code != 0
    assert f"the daemon stopped while creating VM {name}" in err, err
    assert "banger daemon start" in err
    check_recovered(banger, name)


def test_a_daemon_killed_while_starting_and_stopping(banger: Banger) -> None:
    banger.create("rel-cycle", "--no-start")
    code, err = kill_daemon_at(banger, "boot", ["vm", "start", "rel-cycle"])
    assert code != 0 and "the daemon stopped while" in err, err
    check_recovered(banger, None)
    shown = banger.json("vm", "show", "rel-cycle")
    if shown["state"] != "running":  # type: ignore[index]
        assert banger.run("vm", "start", "rel-cycle").returncode == 0
    code, err = kill_daemon_at(banger, "stop", ["vm", "stop", "rel-cycle"])
    assert code != 0 and "the daemon stopped while" in err, err
    # The stop may have finished in the guest: the next daemon says what runs.
    time.sleep(1)
    check_recovered(banger, "rel-cycle")
    banger.created.clear()


def test_a_daemon_killed_while_deleting(banger: Banger) -> None:
    banger.create("rel-delete", "--no-start")
    kill_daemon_at(banger, "disks", ["vm", "delete", "rel-delete"])
    check_recovered(banger, "rel-delete")
    assert "rel-delete" not in [vm.name for vm in stored_vms(banger.home)]
    banger.created.clear()


def test_parallel_creates_with_colliding_names_get_distinct_addresses(banger: Banger) -> None:
    names = [f"rel-par-{i % 6}" for i in range(10)]  # four names asked for twice
    children = [
        subprocess.Popen(
            [str(BIN / "banger"), "vm", "create", "--no-start", "--name", n, "-q"],
            env=banger.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in names
    ]
    results = [
        (n, c.wait(timeout=300), c.stderr.read() if c.stderr else "")
        for n, c in zip(names, children, strict=True)
    ]
    winners = sorted({n for n, code, _ in results if code == 0})
    losers = [(n, err) for n, code, err in results if code != 0]
    assert winners == sorted(set(names))
    assert len(losers) == 4
    for n, err in losers:
        assert f"a VM named {n!r} already exists" in err or "already being" in err, err
        assert "hint:" in err
    vms = [vm for vm in stored_vms(banger.home) if vm.name.startswith("rel-par-")]
    assert len({vm.ip for vm in vms}) == len(vms) == 6
    assert leaks(banger.home, banger.runtime, BRIDGE) == []
    deletes = [
        subprocess.Popen(
            [str(BIN / "banger"), "vm", "delete", n, "-q"],
            env=banger.env,
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for n in winners
    ]
    assert [d.wait(timeout=300) for d in deletes] == [0] * len(winners)
    assert leaks(banger.home, banger.runtime, BRIDGE) == []
