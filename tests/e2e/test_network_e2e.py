"""VMs on banger's network: names, NAT through masquerade, isolation without it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from .conftest import Banger

pytestmark = pytest.mark.e2e

OUTSIDE_NS = "bge2e-out"
HOST_END, NS_END = "bge2eo0", "bge2eo1"
HOST_ADDR, NS_ADDR = "10.250.77.1", "10.250.77.2"
PORT = 8077

# Answers each connection with the address it came from, so the test sees masquerade.
_SERVER = """
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((sys.argv[1], int(sys.argv[2]))); srv.listen(8)
while True:
    conn, peer = srv.accept()
    conn.sendall(f"from {peer[0]}\\n".encode()); conn.close()
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.fixture
def outside() -> Iterator[str]:
    """A network namespace standing for 'the outside', reachable from the host only."""
    subprocess.run(["ip", "netns", "del", OUTSIDE_NS], capture_output=True)
    ip("netns", "add", OUTSIDE_NS)
    server = None
    try:
        ip("link", "add", HOST_END, "type", "veth", "peer", "name", NS_END)
        ip("link", "set", NS_END, "netns", OUTSIDE_NS)
        ip("addr", "add", f"{HOST_ADDR}/24", "dev", HOST_END)
        ip("link", "set", HOST_END, "up")
        ip("-n", OUTSIDE_NS, "addr", "add", f"{NS_ADDR}/24", "dev", NS_END)
        ip("-n", OUTSIDE_NS, "link", "set", NS_END, "up")
        ip("-n", OUTSIDE_NS, "link", "set", "lo", "up")
        server = subprocess.Popen(
            ["ip", "netns", "exec", OUTSIDE_NS, sys.executable, "-c", _SERVER, NS_ADDR, str(PORT)]
        )
        time.sleep(0.5)
        yield NS_ADDR
    finally:
        if server is not None:
            server.kill()
            server.wait()
        subprocess.run(["ip", "link", "del", HOST_END], capture_output=True)
        subprocess.run(["ip", "netns", "del", OUTSIDE_NS], capture_output=True)


def reach(banger: Banger, name: str) -> subprocess.CompletedProcess[str]:
    script = f"exec 3<>/dev/tcp/{NS_ADDR}/{PORT} && head -n1 <&3"
    return banger.run("vm", "ssh", name, "--", "timeout", "5", "bash", "-c", script)


def outside_name() -> str:
    """A name this host resolves: its Debian mirror's, read from apt's sources as banger does."""
    from banger.errors import HostError
    from banger.image.mirror import debian_mirror

    try:
        host = urlsplit(debian_mirror()).hostname
    except HostError as exc:
        pytest.skip(f"no Debian mirror in the apt sources: {exc.message}")
    if not host:
        pytest.skip("the Debian mirror has no host name")
    try:
        socket.getaddrinfo(host, None)
    except OSError:
        pytest.skip(f"{host} does not resolve on this host either")
    return host


def lookup(banger: Banger, vm: str, name: str) -> subprocess.CompletedProcess[str]:
    return banger.run("vm", "ssh", vm, "--", "timeout", "15", "getent", "ahostsv4", name)


def test_vms_find_each_other_by_name(banger: Banger):
    a = banger.create("e2e-dns-a")
    b = banger.create("e2e-dns-b")
    result = banger.run("vm", "ssh", "e2e-dns-a", "--", "getent", "hosts", "e2e-dns-b.vm")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[0] == b["ip"]
    ping = banger.run("vm", "ssh", "e2e-dns-b", "--", "ping", "-c", "1", "-W", "5", "e2e-dns-a.vm")
    assert ping.returncode == 0 and str(a["ip"]) in ping.stdout
    missing = banger.run("vm", "ssh", "e2e-dns-a", "--", "getent", "hosts", "nobody-here.vm")
    assert missing.returncode == 2  # getent: key not found (NXDOMAIN)


@pytest.mark.slow  # ~44 s; tests/e2e/test_nat_netns.py checks the same rules in a network namespace
def test_nat_masquerades_and_isolation_blocks_the_rest(banger: Banger, outside: str):
    forward = Path("/proc/sys/net/ipv4/ip_forward")
    before = forward.read_text()
    banger.create("e2e-nat", "--nat")
    banger.create("e2e-nonat")
    answer = reach(banger, "e2e-nat")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.strip() == f"from {HOST_ADDR}"  # masqueraded to the host's address
    blocked = reach(banger, "e2e-nonat")
    assert blocked.returncode != 0

    # A VM allowed out resolves outside names through banger's DNS (forwarded to the
    # host's resolvers); one that is not gets REFUSED, so it cannot even resolve them.
    name = outside_name()
    resolved = lookup(banger, "e2e-nat", name)
    assert resolved.returncode == 0 and resolved.stdout.strip(), resolved.stderr
    assert lookup(banger, "e2e-nonat", name).returncode != 0

    # NAT can be switched on a running VM, and DNS follows at once.
    assert banger.run("vm", "set", "e2e-nonat", "--nat").returncode == 0
    assert reach(banger, "e2e-nonat").returncode == 0
    assert lookup(banger, "e2e-nonat", name).returncode == 0
    assert banger.run("vm", "set", "e2e-nonat", "--no-nat").returncode == 0
    assert reach(banger, "e2e-nonat").returncode != 0

    assert banger.run("vm", "delete", "e2e-nat", "e2e-nonat").returncode == 0
    banger.created.clear()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert "banger" not in tables
    assert forward.read_text() == before
