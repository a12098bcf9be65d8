"""banger-agent's exec over the wire: streams, exit codes, signals, timeouts, a pty, flow control.

The agent runs on the host (``--listen unix:``), built from this tree's Go
source, and is driven by the small synchronous client in tests/agent_driver.
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

from banger.guest import proto
from banger.guest.proto import Kind
from tests.agent_driver import AgentClient


def test_hello_names_the_version_and_every_op(agent_socket: Path) -> None:
    client = AgentClient(agent_socket)
    hello = client.start()
    assert hello["version"] == 1
    assert hello["agent"].startswith("banger-agent/")
    assert sorted(hello["caps"]) == sorted(proto.OPS)
    assert hello["pid"] > 0 and hello["boot_id"]


def test_a_host_too_new_is_refused_clearly_and_may_try_again(agent_socket: Path) -> None:
    client = AgentClient(agent_socket)
    client.send(proto.SYNC)
    refusal = client.hello(2, 3)
    assert refusal.kind is Kind.ERROR
    body = refusal.json()
    assert (body["min"], body["max"]) == (1, 1)
    assert "versions 1 to 1" in body["error"]
    # Nothing but HELLO is served before one succeeds.
    client.send(proto.encode_json(1, Kind.OPEN, {"op": "load"}))
    assert "HELLO first" in client.next_control().json()["error"]
    assert client.hello(1, 5).json()["version"] == 1
    assert "loadavg" in client.call("load")


def test_stdout_and_stderr_come_apart_with_the_exit_code(agent: AgentClient) -> None:
    ch = agent.run(["sh", "-c", "echo out; echo err >&2; echo more; exit 3"])
    assert ch.closed == {"ok": True, "exit": 3}
    assert (ch.stdout, ch.stderr) == (b"out\nmore\n", b"err\n")
    assert ch.eofs == {1, 2}
    assert ch.events[0]["started"]["pid"] > 0


def test_stdin_cwd_and_env_reach_the_command(agent: AgentClient, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)  # past the window: the agent must credit stdin back
    ch = agent.run(["sha256sum"], stdin=data)
    assert ch.stdout.split()[0].decode() == hashlib.sha256(data).hexdigest()
    ch = agent.run(["sh", "-c", 'pwd; echo "$GREETING"'], cwd=str(tmp_path), env={"GREETING": "hi"})
    assert ch.stdout == f"{tmp_path}\nhi\n".encode()


def test_a_signal_from_the_host_reaches_the_process_group(agent: AgentClient) -> None:
    # The child of sh is in the same group and dies too; the exec ends with sh's signal.
    ch = agent.open("exec", argv=["sh", "-c", "sleep 30 & wait"], stdin=False)
    ch.wait_event()
    ch.control(signal=int(signal.SIGTERM))
    assert ch.wait(10) == {"ok": True, "signal": 15, "timed_out": False}


def test_a_signal_sent_right_after_open_is_not_lost(agent: AgentClient) -> None:
    """A caller may signal before the agent has even started the command (no "started"
    event awaited): the signal waits for the process and reaches it."""
    for _ in range(5):
        ch = agent.open("exec", argv=["sleep", "30"], stdin=False)
        ch.control(signal=int(signal.SIGTERM))
        assert ch.wait(10) == {"ok": True, "signal": 15, "timed_out": False}


def test_a_timeout_kills_the_group_and_says_so(agent: AgentClient) -> None:
    started = time.monotonic()
    ch = agent.run(["sh", "-c", "sleep 30; echo never"], timeout=0.5)
    assert ch.closed == {"ok": True, "signal": 9, "timed_out": True}
    assert ch.stdout == b""
    assert time.monotonic() - started < 5


def test_cancel_kills_the_command_and_still_closes(agent: AgentClient) -> None:
    ch = agent.open("exec", argv=["sleep", "30"], stdin=False)
    pid = ch.wait_event()["started"]["pid"]
    ch.cancel()
    assert ch.wait(10)["signal"] == 9
    assert not Path(f"/proc/{pid}").exists()


def test_a_pty_is_a_terminal_of_the_asked_size(agent: AgentClient) -> None:
    ch = agent.open(
        "exec",
        argv=["sh", "-c", "tty; stty size; read line; echo got:$line"],
        stdin=True,
        pty={"rows": 40, "cols": 100, "term": "vt100"},
        env={},
    )
    ch.write(b"hello\n")
    ch.eof()
    assert ch.wait(10) == {"ok": True, "exit": 0}
    text = ch.stdout.decode()
    assert "/dev/pts/" in text and "40 100" in text and "got:hello" in text


def test_a_missing_command_is_enoent_not_a_hang(agent: AgentClient) -> None:
    ch = agent.run(["no-such-command-banger"])
    assert ch.closed is not None
    assert (ch.closed["ok"], ch.closed["errno"]) == (False, "ENOENT")
    assert "no-such-command-banger" in ch.closed["error"]
    assert ch.events == []


def test_a_bad_request_and_an_unknown_op_are_told_apart(agent: AgentClient) -> None:
    assert agent.call("exec", argv=[])["errno"] == "EINVAL"
    assert agent.call("teleport")["errno"] == "ENOSYS"
    ch = agent.open_raw(b"not json")
    while ch.error is None:
        agent.pump(5)
    assert "op" in ch.error["error"] and ch.closed is None


def test_twenty_megabytes_of_binary_output_respect_the_window(agent_socket: Path) -> None:
    client = AgentClient(agent_socket, auto_grant=False)
    client.start()
    size = 20 << 20
    ch = client.open("exec", argv=["head", "-c", str(size), "/dev/urandom"], stdin=False)
    # Without credit the agent stops at exactly one window.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        client.pump(0.2)
    assert len(ch.stdout) == proto.INITIAL_WINDOW
    started = time.monotonic()
    granted = 0
    while ch.closed is None:
        if ch.unread[1]:
            ch.grant(1, ch.unread[1])
            granted += ch.unread[1]
            ch.unread[1] = 0
        client.pump(10)
    elapsed = time.monotonic() - started
    assert ch.closed == {"ok": True, "exit": 0}
    assert len(ch.stdout) == size
    print(f"20 MiB through the agent in {elapsed:.2f}s ({size / elapsed / 1e6:.0f} MB/s)")


def test_a_slow_channel_does_not_stall_another(agent_socket: Path) -> None:
    client = AgentClient(agent_socket, auto_grant=False)
    client.start()
    stuck = client.open("exec", argv=["head", "-c", str(4 << 20), "/dev/zero"], stdin=False)
    deadline = time.monotonic() + 10
    while len(stuck.stdout) < proto.INITIAL_WINDOW and time.monotonic() < deadline:
        client.pump(1)
    quick = client.open("exec", argv=["echo", "hi"], stdin=False)
    while quick.closed is None and time.monotonic() < deadline:
        client.pump(1)
    assert quick.closed == {"ok": True, "exit": 0} and quick.stdout == b"hi\n"
    assert stuck.closed is None and len(stuck.stdout) == proto.INITIAL_WINDOW
    stuck.cancel()
    assert stuck.wait(10)["signal"] == 9


def test_a_new_session_cancels_the_old_sessions_processes(agent_socket: Path) -> None:
    old = AgentClient(agent_socket)
    old.start()
    ch = old.open("exec", argv=["sleep", "300"], stdin=False)
    pid = ch.wait_event()["started"]["pid"]
    new = AgentClient(agent_socket)
    new.start()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()
    assert new.run(["true"]).closed == {"ok": True, "exit": 0}


def test_garbage_then_sync_resynchronises(agent_socket: Path) -> None:
    client = AgentClient(agent_socket)
    client.send(b"line noise before any SYNC \x00\x00\x00\x00BANG")
    client.start()
    # A frame longer than MAX_PAYLOAD is a framing error: the agent says so
    # and reads nothing more until the next SYNC.
    client.send((proto.MAX_PAYLOAD + 1).to_bytes(4, "big") + b"\x00\x00\x00\x01\x01\x00junk")
    error = client.next_control()
    assert error.kind is Kind.ERROR and "SYNC" in error.json()["error"]
    client.decoder = proto.Decoder()
    client.start()
    assert client.run(["echo", "back"]).stdout == b"back\n"


def test_a_sync_where_a_frame_was_due_starts_a_new_session(agent: AgentClient) -> None:
    # A host that reconnects to a serial port before the agent saw it hang
    # up sends SYNC in the middle of the old session.
    ch = agent.open("exec", argv=["sleep", "300"], stdin=False)
    pid = ch.wait_event()["started"]["pid"]
    agent.start()
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists()
    assert agent.run(["echo", "fresh"]).stdout == b"fresh\n"
