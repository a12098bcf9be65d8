"""The helper's VMM verbs: launch Firecracker under its jailer, and kill it.

Only the helper may run the jailer (it needs root). The caller names a VM
id, banger's files and a uid from the jail range; the binaries are the ones
this helper was started with. ``vmm_kill`` reaches only a process whose
pid, start time and root directory match the record ``vmm_launch`` wrote.
Standard library only: this runs as root.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from banger.helper import jail, run
from banger.helper.errors import Conflict, HostError
from banger.helper.validate import Policy

log = logging.getLogger("banger.helper")

_START_TIMEOUT = 15.0
_KILL_TIMEOUT = 10.0


def _binaries(policy: Policy) -> tuple[Path, Path]:
    if policy.jailer is None or policy.firecracker is None:
        raise HostError(
            "this banger-helper was started without --firecracker and --jailer",
            hint="restart it with both (bangerd does this itself when it starts the helper),"
            ' or set jailer = "none" in banger\'s config to run Firecracker unjailed',
        )
    return policy.jailer, policy.firecracker


def _live(record: dict[str, object] | None) -> int | None:
    """The pid the record names, if that very process still runs.

    A pid and its start time name one process for the life of the host, and
    only root writes the record, so a reused pid is never signalled.
    """
    if record is None:
        return None
    pid, started = record.get("pid"), record.get("start_time")
    if not isinstance(pid, int) or isinstance(pid, bool) or started is None:
        return None
    return pid if jail.start_time(pid) == started else None


def _wait_pid(spec: jail.JailSpec, child: subprocess.Popen[bytes], log_path: Path) -> int:
    pidfile = spec.pidfile
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            return int(pidfile.read_text().strip())
        code = child.poll()
        if code is not None and code != 0:
            break
        time.sleep(0.02)
    said = _tail(log_path)
    raise HostError(
        f"the jailer did not start Firecracker for VM {spec.id}"
        + (f": {said}" if said else f" (exit code {child.poll()})"),
        hint=f"see {log_path}",
    )


def _wait_socket(spec: jail.JailSpec, pid: int, owner_uid: int) -> Path:
    sock = spec.root / jail.API_SOCK.lstrip("/")
    deadline = time.monotonic() + _START_TIMEOUT
    while not sock.exists():
        if jail.start_time(pid) is None or time.monotonic() > deadline:
            raise HostError(f"jailed Firecracker (pid {pid}) made no API socket at {sock}")
        time.sleep(0.02)
    # The daemon, not the jail's uid, configures the VM over it.
    os.chown(sock, owner_uid, -1, follow_symlinks=False)
    os.chmod(sock, 0o600)
    return sock


def vmm_launch(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    jailer, firecracker = _binaries(policy)
    spec = jail.JailSpec(
        id=args["id"],
        jailer=jailer,
        firecracker=firecracker,
        jail_base=args["jail_base"],
        uid=args["uid"],
        gid=args["gid"],
        vcpus=args["vcpus"],
        memory_mib=args["memory_mib"],
    )
    if _live(jail.read_record(spec.dir)) is not None:
        raise Conflict(f"VM {spec.id} already has a jailed Firecracker running")
    jail.teardown(spec.dir, jail.read_record(spec.dir), policy.owner_uid)
    files = [(p, False) for p in args["files"]] + [(p, True) for p in args["writable"]]
    record: dict[str, object] = {
        "id": spec.id,
        "writable": [str(p) for p in args["writable"]],
        "tap": args["tap"],
        "binds": [],
    }
    log_path: Path = args["log"]
    try:
        mapping, record["binds"] = jail.populate(spec, files, policy.owner_uid)
        jail.write_record(spec, record)
        jail.set_tap_owner(args["tap"], spec.uid, spec.gid)
        with log_path.open("ab") as out:
            child = subprocess.Popen(
                jail.jailer_argv(spec),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={"PATH": run.SYSTEM_PATH, "LANG": "C.UTF-8"},
                start_new_session=True,
            )
        # The jailer's parent exits once its child runs; reap it whenever it does.
        threading.Thread(target=child.wait, daemon=True).start()
        pid = _wait_pid(spec, child, log_path)
        record.update(pid=pid, start_time=jail.start_time(pid))
        jail.write_record(spec, record)
        sock = _wait_socket(spec, pid, policy.owner_uid)
    except BaseException:
        _kill_recorded(spec.dir, policy)
        raise
    log.info("launched jailed Firecracker for %s: pid %d in %s", spec.id, pid, spec.root)
    return {"pid": pid, "root": str(spec.root), "api_socket": str(sock), "files": mapping}


def _kill_recorded(jail_dir: Path, policy: Policy) -> bool:
    record = jail.read_record(jail_dir)
    pid = _live(record)
    if pid is not None:
        # Firecracker is init of its PID namespace: killing it ends the namespace.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + _KILL_TIMEOUT
        while jail.start_time(pid) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
    jail.teardown(jail_dir, record, policy.owner_uid)
    return pid is not None


def vmm_kill(policy: Policy, args: dict[str, Any]) -> dict[str, Any]:
    exec_name = policy.firecracker.name if policy.firecracker else jail.EXEC_NAME
    jail_dir = args["jail_base"] / exec_name / args["id"]
    killed = _kill_recorded(jail_dir, policy)
    return {"id": args["id"], "killed": killed}


def _tail(path: Path, lines: int = 4) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return " / ".join(text)
