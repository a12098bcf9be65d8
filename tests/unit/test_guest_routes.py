"""Exec and transfers through bangerd's API to the real agent, with the CLI's own client.

The daemon's routes run under uvicorn on a unix socket (tests/unit/guest_daemon.py),
the agent is ``banger-agent --listen unix:`` on this host, and every request goes
through ``AgentChannel``, the class `vm exec`, `vm cp` and the workspace use.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from banger.api.client import Client
from banger.api.shapes import EventType, ExecRequest
from banger.errors import BangerError, NotFound
from banger.workspace import copy
from banger.workspace.agent_channel import AgentChannel
from banger.workspace.channel import capture
from banger.workspace.export import export
from banger.workspace.prepare import PrepareOptions, prepare
from tests.unit.guest_daemon import GuestDaemon
from tests.unit.test_workspace import git, record_of


@pytest.fixture
def daemon(settings, store, agent_binary, tmp_path):
    served = GuestDaemon(settings, store, agent_binary, tmp_path).start()
    yield served
    served.stop()


@pytest.fixture
def channel(daemon) -> AgentChannel:
    return AgentChannel(str(daemon.settings.socket), "dev")


def run(channel: AgentChannel, argv: list[str], **kw) -> tuple[int, bytes, bytes]:
    stdin = kw.pop("input", None)
    err_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"banger-test-err-{os.getpid()}"
    with err_path.open("w+b") as err:
        child = channel.start(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            **kw,
        )
        if stdin is not None:
            assert child.stdin is not None
            child.stdin.write(stdin)
            child.stdin.close()
        assert child.stdout is not None
        out = child.stdout.read()
        code = child.wait()
        err.seek(0)
        text = err.read()
    err_path.unlink()
    return code, out, text


def gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


def test_stdout_and_stderr_arrive_apart_with_the_exit_code(channel):
    code, out, err = run(channel, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (code, out, err) == (3, b"out\n", b"err\n")


def test_stdin_passes_through_byte_for_byte(channel):
    data = bytes(range(256)) * 1000
    code, out, _ = run(channel, ["cat"], input=data)
    assert code == 0
    assert out == data


def test_cwd_and_env_reach_the_process(channel, tmp_path):
    code, out, _ = run(channel, ["sh", "-c", 'pwd; echo "$GREETING"'], cwd=str(tmp_path))
    assert code == 0
    assert out.decode().split("\n")[0] == str(tmp_path)
    code, out, _ = run(channel, ["sh", "-c", 'echo "$GREETING"'], env={"GREETING": "hi"})
    assert out == b"hi\n"


def test_a_missing_command_is_127_with_the_error_line(channel):
    code, out, err = run(channel, ["no-such-command-here"])
    assert code == 127
    assert out == b""
    assert b"no-such-command-here: command not found in VM dev" in err


def test_a_signal_reaches_the_process(channel):
    child = channel.start(["sh", "-c", "echo up; exec sleep 30"], stdout=subprocess.PIPE)
    assert child.stdout is not None
    assert child.stdout.readline() == b"up\n"
    child.send_control({"signal": signal.SIGTERM})
    assert child.wait() == 128 + signal.SIGTERM


def test_a_timeout_kills_the_process_and_says_so(channel):
    start = time.monotonic()
    code, _, _ = run(channel, ["sleep", "30"], timeout=0.5)
    assert code == 124
    assert time.monotonic() - start < 5


def test_a_pty_gives_the_process_a_terminal_of_the_size_asked(channel):
    code, out, _ = run(channel, ["sh", "-c", "test -t 0 && stty size"], pty=(33, 111))
    assert code == 0
    assert b"33 111" in out


def test_a_dropped_websocket_cancels_its_process_and_nothing_else(channel):
    other = channel.start(["sh", "-c", "echo $$; exec sleep 30"], stdout=subprocess.PIPE)
    victim = channel.start(["sh", "-c", "echo $$; exec sleep 30"], stdout=subprocess.PIPE)
    assert other.stdout is not None and victim.stdout is not None
    other_pid, victim_pid = int(other.stdout.readline()), int(victim.stdout.readline())
    victim._ws.close()  # type: ignore[union-attr]  # the client goes away mid-command
    assert gone(victim_pid, 3), "the dropped client's process still runs"
    assert not gone(other_pid, 0.3), "another client's process was stopped too"
    other.send_control({"signal": signal.SIGKILL})
    assert other.wait() == 128 + signal.SIGKILL


def test_a_huge_output_streams_whole(channel):
    size = 64 << 20
    child = channel.start(["head", "-c", str(size), "/dev/zero"], stdout=subprocess.PIPE)
    assert child.stdout is not None
    total = 0
    while chunk := child.stdout.read(1 << 20):
        total += len(chunk)
    assert child.wait() == 0
    assert total == size


def test_exec_as_an_operation_streams_output_events(daemon):
    client = Client(daemon.settings)
    request = ExecRequest(
        argv=["sh", "-c", "cat; echo to-err >&2; exit 5"],
        stdin=base64.b64encode(b"from stdin\n").decode(),
    )
    op = client.start("POST", "/vms/dev/exec", request)
    out: dict[int, bytes] = {1: b"", 2: b""}
    types = []
    for event in client.events(op):
        types.append(event.type)
        if event.type == EventType.OUTPUT:
            assert event.stream is not None
            out[event.stream] += base64.b64decode(event.data)
    final = client.get(f"/operations/{op.id}", lambda d: d)
    assert out == {1: b"from stdin\n", 2: b"to-err\n"}
    assert EventType.EXIT in types and types[-1] == EventType.DONE
    assert final["result"] == {"exit": 5, "signal": None, "timed_out": False}


def test_a_vm_that_is_not_running_is_refused_clearly(daemon, channel):
    daemon.store.set_vm_state("0123456789ab", "stopped")
    with pytest.raises(BangerError) as caught:
        channel.start(["true"])
    assert caught.value.message == "VM 'dev' is stopped, not running"
    assert caught.value.hint == "start it with `banger vm start dev`"


def test_vm_cp_of_a_directory_with_modes_and_a_symlink_both_ways(channel, tmp_path):
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "run.sh").write_bytes(b"#!/bin/sh\necho hi\n")
    (src / "run.sh").chmod(0o750)
    (src / "sub" / "data.bin").write_bytes(os.urandom(300_000))
    (src / "link").symlink_to("sub/data.bin")
    guest = tmp_path / "guest"
    guest.mkdir()
    landed = copy.to_guest(channel, src, str(guest), "dev")
    assert landed == f"{guest}/tree"
    back = tmp_path / "back"
    back.mkdir()
    host = copy.from_guest(channel, landed, back, "dev")
    for root in (Path(landed), host):
        assert (root / "run.sh").stat().st_mode & 0o7777 == 0o750
        assert os.readlink(root / "link") == "sub/data.bin"
        assert (root / "sub" / "data.bin").read_bytes() == (src / "sub" / "data.bin").read_bytes()


def test_a_missing_guest_path_is_not_found(channel, tmp_path):
    with pytest.raises(NotFound):
        copy.from_guest(channel, str(tmp_path / "nothing"), tmp_path, "dev")
    code, _, err = capture(channel, ["cat", str(tmp_path / "nothing")])
    assert code == 1 and "No such file" in err


def test_a_workspace_prepares_and_exports_through_the_agent(channel, tmp_path):
    checkout = tmp_path / "proj"
    (checkout / "src").mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=checkout)
    for n in range(3):
        (checkout / "src" / f"m{n}.py").write_text(f"value = {n}\n")
    (checkout / "README").write_text("readme\n")
    git("add", "-A", cwd=checkout)
    git("-c", "user.name=t", "-c", "user.email=t@x", "commit", "-q", "-m", "one", cwd=checkout)
    (checkout / "README").write_text("readme, edited on the host\n")
    guest = tmp_path / "guest-ws"
    done = prepare(channel, PrepareOptions(path=checkout, guest_path=str(guest)))
    assert done.files == 4
    assert (guest / "README").read_text() == "readme, edited on the host\n"
    edit = "echo more >> src/m1.py; printf '\\000binary' > blob.bin; rm src/m2.py"
    assert channel.run(["sh", "-c", edit], cwd=str(guest)) == 0
    out = export(channel, record_of(done), "dev", None)
    assert {(c.status, c.path) for c in out.changes} == {
        ("M", "README"),
        ("M", "src/m1.py"),
        ("A", "blob.bin"),
        ("D", "src/m2.py"),
    }


def test_bad_requests_are_refused_with_the_field_and_start_nothing(daemon, channel):
    with pytest.raises(BangerError) as caught:
        channel.start([])
    assert caught.value.code == "invalid"
    assert "argv" in caught.value.message
    with pytest.raises(BangerError) as caught:
        channel._transfer({"op": "tar_get", "dir": "/"}, stdin=None, stdout=None)
    assert caught.value.message == "tar_get needs names under dir"
    with pytest.raises(BangerError) as caught:
        AgentChannel(str(daemon.settings.socket), "ghost").start(["true"])
    assert caught.value.code == "not_found"
    assert caught.value.hint == "see `banger vm list` for the VMs that exist"


def test_a_guest_access_says_the_channel_is_there(daemon):
    access = Client(daemon.settings).get("/vms/dev/guest", lambda d: d)
    assert access["channel"] is True
    assert access["ssh"] is None
    assert access["agent"]["version"] == 1


BANGER = Path(sys.executable).parent / "banger"


def test_the_cli_forwards_ctrl_c_and_keeps_the_exit_code(daemon):
    script = 'trap "echo got-int; exit 7" INT; echo ready; while :; do sleep 0.1; done'
    child = subprocess.Popen(
        [BANGER, "vm", "exec", "dev", "--", "sh", "-c", script],
        env=daemon.cli_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdout is not None
    assert child.stdout.readline() == b"ready\n"
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=20)
    assert (child.returncode, out, err) == (7, b"got-int\n", b"")


@pytest.fixture
def shell_started(settings, store, agent_binary, tmp_path):
    """The agent started as agent.sh starts it: in the background of a non-interactive sh."""
    wrapper = tmp_path / "agent-in-background"
    wrapper.write_text(f'#!/bin/sh\n"{agent_binary}" "$@" &\nwait\n')
    wrapper.chmod(0o755)
    served = GuestDaemon(settings, store, wrapper, tmp_path).start()
    yield AgentChannel(str(settings.socket), "dev")
    served.stop()


def test_commands_can_take_sigint_even_when_the_agent_started_ignoring_it(shell_started):
    code, out, _ = run(shell_started, ["grep", "SigIgn", "/proc/self/status"])
    ignored = int(out.split()[1], 16)
    assert code == 0
    assert ignored & (1 << (signal.SIGINT - 1) | 1 << (signal.SIGQUIT - 1)) == 0, out


def test_cp_onto_an_existing_guest_file_replaces_it(channel, tmp_path):
    (tmp_path / "new").write_bytes(b"new\n")
    (tmp_path / "guest-file").write_bytes(b"old\n")
    landed = copy.to_guest(channel, tmp_path / "new", str(tmp_path / "guest-file"), "dev")
    assert landed == str(tmp_path / "guest-file")
    assert (tmp_path / "guest-file").read_bytes() == b"new\n"
