"""banger-agent's control ops on the host: ports, load, boot, and what it refuses there."""

from __future__ import annotations

import base64
import os
import socket
from pathlib import Path

from tests.agent_driver import AgentClient


def test_ports_lists_a_listener_with_its_process(agent: AgentClient) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        ports = agent.call("ports")["ports"]
    mine = [p for p in ports if p["port"] == port]
    comm = Path(f"/proc/{os.getpid()}/comm").read_text().strip()
    assert mine == [
        {"proto": "tcp", "addr": "127.0.0.1", "port": port, "pid": os.getpid(), "process": comm}
    ]


def test_ports_reads_ipv6_listeners(agent: AgentClient) -> None:
    if not socket.has_ipv6:
        return
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as server:
        try:
            server.bind(("::1", 0))
        except OSError:
            return  # no IPv6 loopback here
        server.listen()
        port = server.getsockname()[1]
        ports = agent.call("ports")["ports"]
    assert {"proto": "tcp6", "addr": "::1", "port": port}.items() <= next(
        p for p in ports if p["port"] == port
    ).items()


def test_load_reports_the_machine(agent: AgentClient) -> None:
    load = agent.call("load")
    assert load["ok"] and len(load["loadavg"]) == 3
    assert load["mem_total_kib"] >= load["mem_available_kib"] > 0
    assert load["uptime"] > 0 and load["procs"] > 0


def test_boot_answers_without_waiting_on_a_host(agent: AgentClient) -> None:
    boot = agent.call("boot", wait=0)
    assert boot["ok"] and boot["init"] and boot["state"]


def test_machine_changing_ops_are_refused_on_a_host(agent: AgentClient) -> None:
    hostname = socket.gethostname()
    for op, request in (
        ("identity", {"hostname": "banger-test"}),
        ("clock", {"unix_ns": 0}),
        ("poweroff", {}),
    ):
        result = agent.call(op, **request)
        assert (result["ok"], result["errno"]) == (False, "EPERM"), op
    assert socket.gethostname() == hostname


def test_identity_checks_everything_before_changing_anything(agent: AgentClient) -> None:
    result = agent.call("identity", hostname="ok-name", ip="10.0.0.300/24")
    assert (result["ok"], result["errno"]) == (False, "EINVAL")
    assert agent.call("identity", mac="not-a-mac")["errno"] == "EINVAL"


def test_entropy_is_credited(agent: AgentClient) -> None:
    data = base64.b64encode(os.urandom(64)).decode()
    result = agent.call("entropy", data=data)
    if os.geteuid() == 0:
        assert result == {"ok": True, "bytes": 64, "reseeded": True}  # the host runs Linux 6
    else:
        assert result["errno"] == "EPERM"
    assert agent.call("entropy", data="!!")["errno"] == "EINVAL"
