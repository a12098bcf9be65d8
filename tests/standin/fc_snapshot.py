"""STAND-IN Firecracker: pause, resume, snapshot create and load (its state rules).

Firecracker's rules, as its snapshotting docs and spec state them: ``PATCH
/vm`` only after the VM started; ``PUT /snapshot/create`` only while it is
``Paused``; ``PUT /snapshot/load`` only on a fresh process (nothing but the
logger and metrics configured), with exactly one of ``mem_file_path`` and
``mem_backend``; ``PATCH /drives`` only after the start (or the load).

The files: ``snapshot_path`` holds the machine's configuration as JSON (the
stand-in's "VM state"), ``mem_file_path`` the guest's memory. With a guest
(QEMU underneath), the memory is QEMU's migration stream of it, and a load
starts QEMU on the same configuration waiting for it; without one
(STANDIN_NO_BOOT) it is a sparse file of the VM's memory size.
"""

from __future__ import annotations

import array
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from tests.standin.firecracker import BEFORE_START, Fault, Machine

NOT_PAUSED = "Cannot create a snapshot: the microVM is not paused."
LOAD_AFTER_CONFIG = (
    "Loading a microVM snapshot not allowed after configuring boot-specific resources."
)
MEM_ONE_OF = "Either mem_backend or mem_file_path must be specified, and not both."
STATE_MAGIC = "stand-in-firecracker-vmstate-1"


def qmp(machine: Machine, *commands: tuple[str, dict[str, Any] | None, int | None]) -> list[Any]:
    """Run QMP commands on the stand-in's QEMU; an fd goes with a command as SCM_RIGHTS."""
    if machine.qmp is None:
        return []
    answers = []
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(120)
        sock.connect(str(machine.qmp))
        reader = sock.makefile("rb")
        reader.readline()
        for name, args, fd in (("qmp_capabilities", None, None), *commands):
            data = json.dumps({"execute": name, **({"arguments": args} if args else {})})
            if fd is None:
                sock.sendall(data.encode() + b"\n")
            else:
                rights = array.array("i", [fd]).tobytes()
                sock.sendmsg(
                    [data.encode() + b"\n"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)]
                )
            while True:
                reply = json.loads(reader.readline())
                if "event" not in reply:
                    break
            if "error" in reply:
                raise Fault(f"Internal error: {reply['error'].get('desc')}")
            answers.append(reply.get("return"))
    return answers


def set_state(machine: Machine, state: str) -> None:
    if not machine.started:
        raise Fault(BEFORE_START)
    if state == "Paused":
        qmp(machine, ("stop", None, None))
        machine.paused = True
    elif machine.qemu is None and machine.incoming is not None:
        machine.paused = False
        machine.boot_now()  # a loaded snapshot's guest runs from here
    else:
        qmp(machine, ("cont", None, None))
        machine.paused = False


def update_drive(machine: Machine, ident: str, body: dict[str, Any]) -> None:
    if not machine.started:
        raise Fault(BEFORE_START)
    if ident not in machine.config["drives"]:
        raise Fault(f"Invalid block device ID: {ident}.")
    if "path_on_host" in body:
        path = machine.host_path(body["path_on_host"])
        try:
            os.close(os.open(path, os.O_RDWR))
        except OSError as exc:
            raise Fault(f"Unable to patch the block device: {exc.strerror}") from exc
        if machine.qemu is not None:
            machine.log(f"drive {ident}: a running guest keeps its open disk (stand-in)")
        machine.config["drives"][ident]["path_on_host"] = body["path_on_host"]


def create(machine: Machine, body: dict[str, Any]) -> None:
    if not machine.started:
        raise Fault(BEFORE_START)
    if not machine.paused:
        raise Fault(NOT_PAUSED)
    if body.get("snapshot_type", "Full") != "Full":
        raise Fault("Diff snapshots need track_dirty_pages, which the stand-in does not set.")
    state = machine.host_path(body["snapshot_path"])
    memory = machine.host_path(body["mem_file_path"])
    config = {"magic": STATE_MAGIC, "config": machine.config, "guest": machine.qemu is not None}
    state.write_text(json.dumps(config))
    fd = os.open(memory, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if machine.qemu is None:
            mib = machine.config.get("machine-config", {}).get("mem_size_mib", 128)
            os.ftruncate(fd, mib << 20)
            return
        qmp(machine, ("getfd", {"fdname": "snap"}, fd), ("migrate", {"uri": "fd:snap"}, None))
    finally:
        os.close(fd)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = qmp(machine, ("query-migrate", None, None))[0].get("status")
        if status == "completed":
            return
        if status in ("failed", "cancelled"):
            raise Fault("Cannot create a snapshot: writing the guest memory failed.")
        time.sleep(0.05)
    raise Fault("Cannot create a snapshot: writing the guest memory timed out.")


def load(machine: Machine, body: dict[str, Any]) -> None:
    configured = set(machine.config) - {"drives", "net", "logger", "metrics"}
    if machine.started or configured or machine.config["drives"] or machine.config["net"]:
        raise Fault(LOAD_AFTER_CONFIG)
    if ("mem_file_path" in body) == ("mem_backend" in body):
        raise Fault(MEM_ONE_OF)
    backend = body.get("mem_backend", {"backend_type": "File"})
    if backend["backend_type"] != "File":
        raise Fault("The stand-in serves only File memory backends.")
    memory = machine.host_path(body.get("mem_file_path") or backend["backend_path"])
    state_path = machine.host_path(body["snapshot_path"])
    try:
        saved = json.loads(state_path.read_text())
        os.close(os.open(memory, os.O_RDONLY))
    except (OSError, ValueError) as exc:
        raise Fault(f"Cannot load the microVM state from {body['snapshot_path']}: {exc}") from exc
    if not isinstance(saved, dict) or saved.get("magic") != STATE_MAGIC:
        raise Fault("Cannot deserialize the microVM state: not a snapshot of this Firecracker.")
    config = saved["config"]
    for override in body.get("network_overrides", []):
        if override["iface_id"] not in config["net"]:
            raise Fault(f"Invalid network interface ID: {override['iface_id']}.")
        config["net"][override["iface_id"]]["host_dev_name"] = override["host_dev_name"]
    if "vsock_override" in body and "vsock" in config:
        config["vsock"]["uds_path"] = body["vsock_override"]["uds_path"]
    keep = {k: machine.config[k] for k in ("logger", "metrics") if k in machine.config}
    machine.config = {**config, **keep}
    machine.started = True
    machine.paused = True
    machine.incoming = memory if saved.get("guest") else None
    if body.get("resume_vm"):
        set_state(machine, "Resumed")


def incoming_argv(machine: Machine) -> list[str]:
    return ["-incoming", "defer"] if machine.incoming is not None else []


def feed_incoming(machine: Machine) -> None:
    """Give the just-started QEMU the snapshot's memory and let the guest run."""
    if machine.incoming is None:
        return
    fd = os.open(machine.incoming, os.O_RDONLY)
    try:
        for _ in range(200):
            if machine.qmp is not None and Path(machine.qmp).exists():
                break
            time.sleep(0.02)
        qmp(
            machine,
            ("getfd", {"fdname": "snap"}, fd),
            ("migrate-incoming", {"uri": "fd:snap"}, None),
        )
    finally:
        os.close(fd)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if qmp(machine, ("query-migrate", None, None))[0].get("status") == "completed":
            qmp(machine, ("cont", None, None))
            return
        time.sleep(0.05)
    raise Fault("Cannot restore the guest memory: loading it timed out.")
