"""banger-agent's identity op sets MAC, address and route through rtnetlink (issue 12).

The agent runs in a network namespace of its own on a veth pair (this host
has no dummy driver), told with ``--device`` which device it may configure:
the only way a host's agent takes identity's network part. The kernel's own
answers (``ip -j``) are what is checked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent_driver import AgentClient, running_agent

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2 (netns)"
)


def ip(ns: str, *args: str) -> str:
    return subprocess.run(
        ["ip", "-n", ns, *args], check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"bgtest-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        ip(name, "link", "add", "d0", "type", "veth", "peer", "name", "d1")
        ip(name, "link", "set", "d1", "up")
        ip(name, "link", "set", "d0", "up")
        ip(name, "addr", "add", "10.9.9.9/24", "dev", "d0")
        ip(name, "addr", "add", "10.9.9.10/24", "dev", "d0")
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def ns_agent(agent_binary: Path, tmp_path: Path, netns: str) -> Iterator[AgentClient]:
    prefix = ("ip", "netns", "exec", netns)
    with running_agent(agent_binary, tmp_path, prefix=prefix, args=("--device", "d0")) as sock:
        client = AgentClient(sock)
        client.start()
        yield client
        client.close()


def test_identity_sets_mac_address_and_route_and_announces_it(
    ns_agent: AgentClient, netns: str
) -> None:
    result = ns_agent.call(
        "identity", mac="52:54:00:12:34:56", ip="10.77.0.5/24", gateway="10.77.0.1"
    )
    assert result["ok"], result
    assert result["changed"] == ["gateway", "ip", "mac"]  # sorted
    assert result["announced"] is True
    assert set(result["took_ms"]) == {"network"}
    link = json.loads(ip(netns, "-j", "addr", "show", "dev", "d0"))[0]
    assert link["address"] == "52:54:00:12:34:56"
    assert "UP" in link["flags"]
    v4 = [(a["local"], a["prefixlen"]) for a in link["addr_info"] if a["family"] == "inet"]
    assert v4 == [("10.77.0.5", 24)]  # both old addresses gone
    routes = json.loads(ip(netns, "-j", "route", "show", "default"))
    assert [(r["gateway"], r["dev"]) for r in routes] == [("10.77.0.1", "d0")]

    # Again, with another gateway: the route is replaced, not added beside.
    again = ns_agent.call("identity", ip="10.77.0.6/24", gateway="10.77.0.254")
    assert again["ok"], again
    routes = json.loads(ip(netns, "-j", "route", "show", "default"))
    assert [r["gateway"] for r in routes] == ["10.77.0.254"]


def test_identity_names_a_missing_device_and_refuses_the_rest_on_a_host(
    agent_binary: Path, tmp_path: Path, netns: str
) -> None:
    prefix = ("ip", "netns", "exec", netns)
    with running_agent(agent_binary, tmp_path, prefix=prefix, args=("--device", "nope0")) as sock:
        client = AgentClient(sock)
        client.start()
        missing = client.call("identity", ip="10.77.0.5/24")
        assert (missing["ok"], missing["errno"]) == (False, "ENODEV")
        assert "nope0" in missing["error"]
        # A hostname or host key would change the host itself: refused even here.
        assert client.call("identity", hostname="x", ip="10.77.0.5/24")["errno"] == "EPERM"
        client.close()
