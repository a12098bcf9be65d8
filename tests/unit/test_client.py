"""The CLI and its client against a daemon: what a user sees, answers and failures.

Two kinds of daemon: the real API app served by uvicorn on a unix socket (with
a VMM that launches nothing), and a scripted server that answers like bangerd
and then dies mid-answer, as a daemon that is killed does.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from banger.api import transport
from banger.api.client import Client, DaemonLost
from banger.api.shapes import Vm
from banger.config import Settings

from .fakes import RecordingHelper, running_loop
from .test_api import NoVmm

BIN = Path(sys.executable).parent


def run_cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BANGER_")},
        "BANGER_HOME": str(settings.home),
        "BANGER_RUNTIME_DIR": str(settings.runtime_dir),
        "BANGER_CONFIG": str(settings.home / "no-config.toml"),
    }
    return subprocess.run(
        [str(BIN / "banger"), *args],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 10
    while not path.exists():
        assert time.monotonic() < deadline, f"nothing listens on {path}"
        time.sleep(0.02)


@pytest.fixture
def daemon(settings, store) -> Iterator[Settings]:
    """The real API app, served on the settings' socket."""
    import uvicorn

    from banger.daemon.app import create_app
    from banger.daemon.services import wire
    from banger.vmm.accel import AccelChoice

    with running_loop() as loop:
        services = wire(
            settings,
            store=store,
            vmm=NoVmm(),
            accel=AccelChoice("tcg", "test"),
            helper=RecordingHelper(),
            user_key=settings.ssh_dir / "id_ed25519",
            loop=loop,
        )
        app = create_app(services, asyncio.Event())
        settings.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        server = uvicorn.Server(uvicorn.Config(app, uds=str(settings.socket), log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        wait_for(settings.socket)
        yield settings
        server.should_exit = True
        thread.join(timeout=10)


Handler = Callable[[socket.socket, str, str], None]

STATUS = {
    "version": "t",
    "pid": 1,
    "socket": "s",
    "home": "h",
    "uid": 0,
    "vmm": "qemu",
    "accel": "tcg",
    "accel_reason": "test",
}
OPERATION = {
    "id": "op1",
    "kind": "vm.create",
    "target": "dev",
    "state": "running",
    "created_at": "t",
}


def answer(conn: socket.socket, status: int, body: bytes, *, length: int | None = None) -> None:
    size = len(body) if length is None else length
    conn.sendall(
        f"HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n"
        f"content-length: {size}\r\n\r\n".encode()
        + body
    )


@pytest.fixture
def scripted(settings) -> Iterator[Callable[[Handler], None]]:
    """A server on the settings' socket that runs ``handler`` for each request."""
    settings.runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(settings.socket))
    listener.listen(8)
    handlers: list[Handler] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(4096)
                method, path = head.decode().split(" ")[:2]
                if path == "/status":
                    answer(conn, 200, json.dumps(STATUS).encode())
                else:
                    handlers[0](conn, method, path)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield handlers.append
    listener.close()


def test_list_and_show_read_the_daemons_answers(daemon, store):
    from banger.api.models import Vm as VmModel
    from banger.api.models import VmState

    draft = VmModel(
        id="v1", name="dev", image="debian-bookworm", state=VmState.STOPPED, vcpus=1,
        memory_mib=256, overlay_bytes=1, ip="", tap="bgtv1", mac="m", vmm=NoVmm.name,
        dir=str(daemon.vms_dir / "v1"), created_at="t",
    )  # fmt: skip
    from banger.net.leases import lease

    lease(draft, store, daemon.network)
    listed = run_cli(daemon, "vm", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].split() == [
        "NAME", "STATE", "IP", "IMAGE", "VCPUS", "MEMORY", "NAT", "FROM", "CREATED",
    ]  # fmt: skip
    assert listed.stdout.splitlines()[1].split()[:3] == ["dev", "stopped", "10.77.0.1"]
    shown = json.loads(run_cli(daemon, "vm", "show", "dev", "--json").stdout)
    assert shown["name"] == "dev" and shown["pid"] is None and shown["state"] == "stopped"
    assert Vm.from_json(shown).to_json() == shown


def test_out_of_range_vcpus_and_memory_name_the_flag_in_one_format(daemon):
    cores = os.cpu_count()
    vcpus = run_cli(daemon, "vm", "create", "--vcpus", "0")
    assert vcpus.returncode == 2
    assert vcpus.stderr.splitlines() == [
        "error: --vcpus: must be at least 1 (got 0)",
        f"hint: --vcpus takes 1 to 64; this host has {cores} cores",
    ]
    memory = run_cli(daemon, "vm", "create", "--memory", "99999999")
    assert memory.returncode == 2
    lines = memory.stderr.splitlines()
    assert lines[0] == "error: --memory: must be at most 1048576 (got 99999999)"
    assert lines[1].startswith("hint: --memory takes 128 to 1048576 MiB; this host has ")
    assert lines[1].endswith(" MiB of memory")
    assert run_cli(daemon, "vm", "list", "--json").stdout.strip() == "[]"


def test_a_flag_click_rejects_is_in_the_same_format(settings):
    result = run_cli(settings, "vm", "create", "--vcpus", "two")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "error: invalid value for '--vcpus': 'two' is not a valid integer.",
        "hint: see `banger vm create --help`",
    ]


def test_a_store_fact_reaches_the_user_with_the_daemons_hint(daemon):
    result = run_cli(daemon, "vm", "show", "ghost")
    assert result.stderr.splitlines() == [
        "error: no VM named 'ghost'",
        "hint: see `banger vm list` for the VMs that exist",
    ]


def test_options_after_the_vm_name_are_not_handed_to_ssh(settings):
    result = run_cli(settings, "vm", "ssh", "dev", "--debug", "--", "true")
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "error: no such option '--debug'."
    assert lines[1].startswith("hint: options after the VM's name are banger's until `--`")


def test_the_daemon_dying_mid_create_is_said_in_bangers_format(settings, scripted):
    def handler(conn: socket.socket, method: str, path: str) -> None:
        if (method, path) == ("POST", "/vms"):
            answer(conn, 202, json.dumps(OPERATION).encode())
        else:  # the event stream: one stage, then the daemon is gone
            event = {"seq": 0, "type": "stage", "stage": "lease", "time": 1.0}
            line = json.dumps(event).encode() + b"\n"
            conn.sendall(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                + f"{len(line):x}\r\n".encode()
                + line
                + b"\r\n"
            )

    scripted(handler)
    result = run_cli(settings, "vm", "create", "--name", "dev")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error, hint = result.stderr.splitlines()[-2:]
    assert error == "error: the daemon stopped while creating VM dev"
    assert hint.startswith("hint: `banger daemon start` brings it back; it reconciles")
    assert "`banger vm show dev`" in hint
    assert "lease" in result.stderr  # the stage it had reached was shown


def test_an_answer_cut_short_is_daemon_lost(settings, scripted):
    scripted(lambda conn, m, p: answer(conn, 200, b'[{"name":', length=4000))
    with pytest.raises(DaemonLost, match="stopped answering during GET /vms"):
        Client(settings).get_list("/vms", Vm.from_json)
    result = run_cli(settings, "vm", "list")
    assert result.returncode == 1
    assert result.stderr.startswith("error: bangerd stopped answering during GET /vms")


def test_no_daemon_is_unavailable_not_a_traceback(settings):
    from banger.api.client import connect
    from banger.errors import DaemonUnavailable

    with pytest.raises(DaemonUnavailable, match="not running"):
        connect(settings, autostart=False)


def test_chunked_bodies_are_reassembled_across_reads(tmp_path):
    path = tmp_path / "s.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    # Chunk and line boundaries fall in the middle of reads, as they do on a socket.
    pieces = [
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a"',
        b":",
        b"\r\n",
        b"3\r\n 1}\r\n3\r\n\n{}\r\n0\r\n\r\n",
    ]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            for piece in pieces:
                conn.sendall(piece)
                time.sleep(0.01)

    threading.Thread(target=serve, daemon=True).start()
    with transport.request(str(path), "GET", "/x", timeout=5) as resp:
        assert resp.status == 200
        assert list(resp.lines()) == [b'{"a": 1}', b"{}"]
    listener.close()


SSH_TARGET = {
    "host": "10.77.0.2",
    "identity_file": "/k/id",
    "known_hosts_file": "/v/known_hosts",
    "host_key_alias": "banger-v1",
}


def fake_ssh(tmp_path: Path, exit_code: int) -> tuple[dict[str, str], Path]:
    """An `ssh` first on PATH that records its argv and exits with ``exit_code``."""
    bin_dir, record = tmp_path / "bin", tmp_path / "ssh-argv"
    bin_dir.mkdir()
    script = bin_dir / "ssh"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {record}\nexit {exit_code}\n')
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, record


def run_cli_with(settings: Settings, env: dict[str, str], *args: str):
    old = os.environ.copy()
    os.environ.update(env)
    try:
        return run_cli(settings, *args)
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_a_shell_line_run_as_one_program_gets_the_sh_c_hint(settings, scripted, tmp_path):
    scripted(lambda conn, m, p: answer(conn, 200, json.dumps(SSH_TARGET).encode()))
    env, record = fake_ssh(tmp_path, 127)
    result = run_cli_with(settings, env, "vm", "ssh", "dev", "--", "which git; echo x")
    assert result.returncode == 127
    assert result.stderr.splitlines()[-1] == (
        "hint: 'which git; echo x' was run as one program name (COMMAND is an argv, not a"
        " shell line); for a shell line: banger vm ssh dev -- sh -c 'which git; echo x'"
    )
    argv = record.read_text().splitlines()
    assert argv[argv.index("root@10.77.0.2") - 1] == "--"
    assert argv[-1] == "'which git; echo x'"


def test_ssh_gets_the_terminal_and_its_exit_code_passes_through(settings, scripted, tmp_path):
    scripted(lambda conn, m, p: answer(conn, 200, json.dumps(SSH_TARGET).encode()))
    env, record = fake_ssh(tmp_path, 3)
    result = run_cli_with(settings, env, "vm", "ssh", "dev", "--", "ls", "-la")
    assert (result.returncode, result.stderr) == (3, "")
    argv = record.read_text().splitlines()
    assert argv[:2] == ["-F", "/dev/null"]
    assert argv[-3:] == ["--", "root@10.77.0.2", "ls -la"]


def test_reading_answers_loads_no_pydantic_httpx_or_rich():
    code = (
        "import sys, banger.cli.main, banger.cli.common, banger.api.client, banger.api.shapes;"
        "print(sorted(m for m in ('pydantic', 'httpx', 'rich', 'fastapi') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(shutil.which("ssh") is None, reason="OpenSSH is not installed")
def test_a_fake_daemon_cannot_make_the_cli_run_anything(settings, scripted, tmp_path):
    # A hostile bangerd answers an SshTarget whose every field tries to be an
    # ssh option that runs a command. With -F /dev/null and `--` before the
    # destination, real ssh only fails to resolve a host.
    pwned = tmp_path / "pwned"
    hostile = {
        "host": f"-oProxyCommand=touch {pwned}",
        "user": f"-oProxyCommand=touch {pwned}",
        "identity_file": f"/dev/null -oProxyCommand=touch {pwned}",
        "known_hosts_file": "/dev/null",
        "host_key_alias": f"x -oLocalCommand=touch {pwned}",
    }
    scripted(lambda conn, m, p: answer(conn, 200, json.dumps(hostile).encode()))
    result = run_cli(settings, "vm", "ssh", "dev", "--", "true")
    assert result.returncode != 0
    assert not pwned.exists()
