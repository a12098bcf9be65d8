"""STAND-IN for ``firecracker``: its API on a unix socket, a QEMU microvm as the VM.

Every request body is checked against Firecracker's spec (``spec.py``) and
its state rules: pre-boot resources are refused after ``InstanceStart``,
actions other than start before it, a start without a kernel; the answers
carry Firecracker's status codes and ``fault_message`` texts. On
``InstanceStart`` it boots what was configured under QEMU ``-M microvm
-accel tcg`` (drives as virtio-blk devices reporting Firecracker's serial,
made of the backing file's device and inode numbers; the tap; the serial
console on this process's stdout, as Firecracker's). It exits when the
guest powers off, and its QEMU dies with it (PR_SET_PDEATHSIG), as a VM
dies with Firecracker. vsock is emulated on the host's side only (its unix
socket and CONNECT handshake; the guest gets a virtio-serial port, since
QEMU's vsock needs vhost, absent here: see ``vsock.py``). Not emulated: rate
limiters, balloon, MMDS.

Jailed (run by the stand-in jailer), paths are inside ``$STANDIN_JAIL_ROOT``
and QEMU runs as the jail's uid and gid, so file and tap permissions are
exercised as under the real jailer.

Env: ``STANDIN_NO_BOOT=1`` starts no QEMU (the VM "runs" until killed or
Ctrl-Alt-Del); ``STANDIN_FAIL=<resource>`` answers that resource with 400.
Pause, resume and snapshots: see ``fc_snapshot.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import http.server
import json
import os
import queue
import re
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.standin import spec
from tests.standin.vsock import VsockDevice, qemu_args

AFTER_START = "The requested operation is not supported after starting the microVM."
BEFORE_START = "The requested operation is not supported before starting the microVM."
NO_KERNEL = "Cannot start microvm without kernel configuration."
ID_MISMATCH = "The id from the path does not match the id from the body!"
_ID = re.compile(r"[A-Za-z0-9_]{1,64}")
# Pre-boot resources, as their path templates in the spec.
PRE_BOOT = {
    "/machine-config",
    "/boot-source",
    "/drives/{drive_id}",
    "/network-interfaces/{iface_id}",
    "/logger",
    "/metrics",
    "/serial",
    "/vsock",
    "/cpu-config",
    "/entropy",
    "/mmds/config",
    "/balloon",
}


class Fault(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Machine:
    """The configured VM and its state, shared by the API threads and the main thread."""

    def __init__(self, vm_id: str, root: Path | None) -> None:
        self.id = vm_id
        self.root = root
        self.lock = threading.Lock()
        self.config: dict[str, Any] = {"drives": {}, "net": {}}
        self.started = False
        self.requests = 0
        self.start_queue: queue.Queue[threading.Event] = queue.Queue()
        self.qemu: subprocess.Popen[bytes] | None = None
        self.qmp: Path | None = None
        self.vsock: VsockDevice | None = None
        self.paused = False
        # A loaded snapshot's memory, for the QEMU that resumes it.
        self.incoming: Path | None = None

    def boot_now(self) -> None:
        """Have the main thread start the guest (QEMU must be its child), and wait."""
        done = threading.Event()
        self.start_queue.put(done)
        done.wait(120)

    def host_path(self, path: str) -> Path:
        # Jailed, Firecracker sees only its jail: "/x" means <jail root>/x.
        return self.root / path.lstrip("/") if self.root is not None else Path(path)

    def log(self, text: str) -> None:
        logger = self.config.get("logger", {}).get("log_path")
        if logger:
            with self.host_path(logger).open("a") as out:
                out.write(f"[stand-in firecracker {self.id}:WARN] {text}\n")

    def write_metrics(self) -> None:
        path = self.config.get("metrics", {}).get("metrics_path")
        if not path:
            return
        line = {
            "utc_timestamp_ms": int(time.time() * 1000),
            "api_server": {"process_startup_time_us": 0, "requests": self.requests},
            "vmm": {"stand_in": 1, "started": int(self.started)},
        }
        with self.host_path(path).open("a") as out:
            out.write(json.dumps(line) + "\n")


def _template(path: str) -> tuple[str, str | None]:
    for template in spec.path_templates():
        if "{" not in template:
            if template == path:
                return template, None
            continue
        prefix = template.split("{", 1)[0]
        if path.startswith(prefix) and "/" not in path[len(prefix) :] and path != prefix:
            return template, path[len(prefix) :]
    raise Fault(f"Invalid request method and/or path: PUT {path}.")


def _check_file(machine: Machine, field: str, value: object, write: bool = False) -> None:
    path = machine.host_path(str(value))
    try:
        fd = os.open(path, os.O_RDWR if write else os.O_RDONLY)
        os.close(fd)
    except OSError as exc:
        raise Fault(
            f"Unable to open {field} {value}: {exc.strerror} (os error {exc.errno})"
        ) from exc


def jail_ids(machine: Machine) -> tuple[int, int] | None:
    """The uid and gid a jailed Firecracker runs as (the jailer gave it the jail's root)."""
    if machine.root is None or os.geteuid() != 0:
        return None
    st = machine.root.stat()
    return st.st_uid, st.st_gid


def check_tap(machine: Machine, name: str) -> None:
    """Firecracker opens the tap at this PUT, as its (jailed) uid: the tap must let it."""
    if os.environ.get("STANDIN_NO_BOOT"):
        return  # no guest, no device: unit tests configure taps that do not exist
    try:
        owner = Path(f"/sys/class/net/{name}/owner").read_text().strip()
    except OSError as exc:
        raise Fault(f"Open tap device failed: {name}: {exc.strerror}") from exc
    ids = jail_ids(machine)
    if ids is not None and owner != str(ids[0]):
        raise Fault(f"Open tap device failed: {name} belongs to uid {owner}: Permission denied")


_TUNSETIFF = 0x400454CA
_IFF_FLAGS = 0x0002 | 0x1000 | 0x4000  # IFF_TAP | IFF_NO_PI | IFF_VNET_HDR


def open_tap(name: str) -> int:
    # The real jailer makes /dev/net/tun inside the jail for the jail's uid; the
    # stand-in opens the (owner-checked) tap itself and hands QEMU the descriptor.
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", name.encode(), _IFF_FLAGS))
    return fd


def put(machine: Machine, path: str, body: Any, method: str = "PUT") -> None:
    """Apply one PUT (or PATCH), as Firecracker would; raises Fault with its message."""
    from tests.standin import fc_snapshot

    template, ident = _template(path)
    definition = spec.body_definition(method, template)
    if definition is None:
        raise Fault(f"Invalid request method and/or path: {method} {path}.")
    wrong = spec.problems(definition, body)
    if wrong:
        raise Fault(f"An error occurred when deserializing the json body of a request: {wrong[0]}.")
    fail = os.environ.get("STANDIN_FAIL", "")
    if fail and template.startswith(f"/{fail}"):
        raise Fault(f"Stand-in told to refuse {template} (STANDIN_FAIL={fail}).")
    if template == "/actions":
        return action(machine, body["action_type"])
    if template == "/vm":
        return fc_snapshot.set_state(machine, body["state"])
    if template == "/snapshot/create":
        return fc_snapshot.create(machine, body)
    if template == "/snapshot/load":
        return fc_snapshot.load(machine, body)
    if method == "PATCH" and ident is not None and template == "/drives/{drive_id}":
        if body.get("drive_id") != ident:
            raise Fault(ID_MISMATCH)
        return fc_snapshot.update_drive(machine, ident, body)
    if machine.started and template in PRE_BOOT:
        raise Fault(AFTER_START)
    if ident is not None:
        field = "drive_id" if "drive" in template else "iface_id"
        if body.get(field) != ident:
            raise Fault(ID_MISMATCH)
        if not _ID.fullmatch(ident):
            raise Fault(f"Invalid ID: {ident!r} must be alphanumeric or '_', at most 64 long.")
    if template == "/boot-source":
        _check_file(machine, "kernel file", body["kernel_image_path"])
        if "initrd_path" in body:
            _check_file(machine, "initrd file", body["initrd_path"])
    elif template == "/drives/{drive_id}":
        _check_file(machine, "drive", body["path_on_host"], write=not body.get("is_read_only"))
    elif template == "/network-interfaces/{iface_id}":
        check_tap(machine, body["host_dev_name"])
    elif template in ("/logger", "/metrics"):
        _check_file(machine, template[1:], body.get("log_path") or body.get("metrics_path"), True)
    with machine.lock:
        if template == "/drives/{drive_id}":
            machine.config["drives"][ident] = body
        elif template == "/network-interfaces/{iface_id}":
            machine.config["net"][ident] = body
        else:
            machine.config[template.strip("/")] = body


def action(machine: Machine, kind: str) -> None:
    if kind == "InstanceStart":
        if machine.started:
            raise Fault(AFTER_START)
        if "boot-source" not in machine.config:
            raise Fault(NO_KERNEL)
        machine.boot_now()  # QEMU starts from the main thread (see main)
        if not machine.started:
            raise Fault("Failed to start the microVM: the stand-in's QEMU did not start.")
    elif not machine.started:
        raise Fault(BEFORE_START)
    elif kind == "FlushMetrics":
        machine.write_metrics()
    elif kind == "SendCtrlAltDel":
        ctrl_alt_del(machine)


def ctrl_alt_del(machine: Machine) -> None:
    """Firecracker presses Ctrl-Alt-Del on its i8042; microvm has none, so ACPI power off."""
    if machine.qmp is None:
        os.kill(os.getpid(), signal.SIGTERM)  # no guest: it "shuts down" at once
        return
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(str(machine.qmp))
        reader = sock.makefile("rb")
        reader.readline()
        for command in ("qmp_capabilities", "system_powerdown"):
            sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
            reader.readline()


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any] | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(data)

    def do_GET(self) -> None:
        machine = self.server.machine
        if self.path == "/":
            state = "Running" if machine.started else "Not started"
            state = "Paused" if machine.paused else state
            info = {"app_name": "Firecracker", "id": machine.id, "state": state}
            self._reply(200, {**info, "vmm_version": "stand-in"})
        else:
            self._reply(
                400, {"fault_message": f"Invalid request method and/or path: GET {self.path}."}
            )

    def do_PUT(self, method: str = "PUT") -> None:
        machine = self.server.machine
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        with machine.lock:
            machine.requests += 1
        try:
            try:
                body = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise Fault(
                    f"An error occurred when deserializing the json body of a request: {exc}."
                ) from exc
            put(machine, self.path, body, method)
        except Fault as fault:
            machine.log(f"{self.path}: {fault}")
            self._reply(fault.status, {"fault_message": str(fault)})
            return
        self._reply(204)

    def do_PATCH(self) -> None:
        self.do_PUT("PATCH")


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, machine: Machine) -> None:
        self.machine = machine
        super().__init__(str(path), Handler)


def fc_serial(path: Path) -> str:
    """What Firecracker's virtio-block reports as serial: st_dev, st_rdev, st_ino, cut at 20."""
    st = path.stat()
    return f"{st.st_dev}{st.st_rdev}{st.st_ino}"[:20]


def qemu_argv(machine: Machine, qmp: Path, tap_fds: list[int]) -> list[str]:
    cfg = machine.config
    mc = cfg.get("machine-config", {"vcpu_count": 1, "mem_size_mib": 128})
    boot = cfg["boot-source"]
    argv = [
        "qemu-system-x86_64", "-M", "microvm", "-accel", "tcg", "-cpu", "max",
        "-smp", str(mc["vcpu_count"]), "-m", f"{mc['mem_size_mib']}M",
        "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-kernel", str(machine.host_path(boot["kernel_image_path"])),
        "-append", boot.get("boot_args", ""),
        "-serial", "stdio",
        "-qmp", f"unix:{qmp},server=on,wait=off",
    ]  # fmt: skip
    if machine.incoming is not None:
        argv += ["-incoming", "defer"]
    if "initrd_path" in boot:
        argv += ["-initrd", str(machine.host_path(boot["initrd_path"]))]
    for index, drive in enumerate(cfg["drives"].values()):
        path = machine.host_path(drive["path_on_host"])
        spec_ = f"id=d{index},file={path},if=none,format=raw"
        if drive.get("is_read_only"):
            spec_ += ",readonly=on"
        argv += ["-drive", spec_]
        argv += ["-device", f"virtio-blk-device,drive=d{index},serial={fc_serial(path)}"]
    if machine.vsock is not None:
        argv += qemu_args(machine.vsock.chardev, machine.vsock.events)
    for index, (iface, fd) in enumerate(zip(cfg["net"].values(), tap_fds, strict=True)):
        argv += ["-netdev", f"tap,id=n{index},fd={fd}"]
        device = f"virtio-net-device,netdev=n{index}"
        if "guest_mac" in iface:
            device += f",mac={iface['guest_mac']}"
        argv += ["-device", device]
    return argv


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def boot(machine: Machine, run_dir: Path) -> None:
    if os.environ.get("STANDIN_NO_BOOT"):
        machine.started = True
        return
    machine.qmp = run_dir / f"standin-qmp-{os.getpid()}.sock"
    if "vsock" in machine.config:
        uds = machine.host_path(machine.config["vsock"]["uds_path"])
        # Relative names: QEMU shares this process's directory, and a jail's
        # host path may be longer than a socket path can be.
        chardev, events = (Path(f"standin-{n}-{os.getpid()}.sock") for n in ("agent", "events"))
        machine.vsock = VsockDevice(uds, chardev, events)
        machine.vsock.start()
    ids: dict[str, Any] = {}
    jailed = jail_ids(machine)
    if jailed is not None:
        ids = {"user": jailed[0], "group": jailed[1], "extra_groups": []}
    fds = [open_tap(iface["host_dev_name"]) for iface in machine.config["net"].values()]
    try:
        machine.qemu = subprocess.Popen(
            qemu_argv(machine, machine.qmp, fds),
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,
            pass_fds=fds,
            **ids,
        )
    finally:
        for fd in fds:
            os.close(fd)
    from tests.standin import fc_snapshot

    fc_snapshot.feed_incoming(machine)
    machine.started = True
    machine.write_metrics()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="firecracker (stand-in)")
    parser.add_argument("--api-sock", default="/run/firecracker.socket")
    parser.add_argument("--id", default="anonymous-instance")
    parser.add_argument("--start-time-us")
    parser.add_argument("--start-time-cpu-us")
    parser.add_argument("--version", action="version", version="Firecracker v1.10.1-standin")
    args = parser.parse_args(argv)
    jail_root = os.environ.get("STANDIN_JAIL_ROOT")
    machine = Machine(args.id, Path(jail_root) if jail_root else None)
    sock = machine.host_path(args.api_sock)
    sock.parent.mkdir(parents=True, exist_ok=True)
    sock.unlink(missing_ok=True)
    # Bound by a name relative to its directory, as a chrooted Firecracker binds
    # "/api.sock": the host path of a jail may be longer than a socket path can be.
    os.chdir(sock.parent)
    server = Server(Path(sock.name), machine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"stand-in firecracker {args.id}: API on {sock}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        done = machine.start_queue.get()
        try:
            boot(machine, sock.parent)
        finally:
            done.set()
        if machine.qemu is None:
            threading.Event().wait()
        code = machine.qemu.wait() if machine.qemu else 0
        print(f"stand-in firecracker {args.id}: guest exited ({code})", file=sys.stderr)
        return 0
    finally:
        sock.unlink(missing_ok=True)
        if machine.qmp is not None:
            machine.qmp.unlink(missing_ok=True)
        if machine.vsock is not None:
            machine.vsock.close()
            for path in (machine.vsock.chardev, machine.vsock.events):
                path.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
