"""The DNS redirect with real nftables: bridge:53 reaches the responder's unprivileged port.

Uses the namespace topology of test_nat_netns; the responder runs in the
host namespace on the bridge address, port 10053, as bangerd would.
"""

from __future__ import annotations

import subprocess
import textwrap
from collections.abc import Iterator

import pytest

from tests.e2e.test_nat_netns import BRIDGE_IP, PY, VM_IPS, Topology, pytestmark, topo

__all__ = ["pytestmark", "topo"]

PORT = 10053

ASK = """
    import socket, struct, sys, time
    name, server, port, proto = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    q = struct.pack("!HHHHHH", 7, 0x100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\\0\\0\\1\\0\\1"
    start = time.perf_counter()
    try:
        if proto == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(2)
            s.sendto(q, (server, port))
            r = s.recv(512)
        else:
            s = socket.create_connection((server, port), timeout=2)
            s.sendall(struct.pack("!H", len(q)) + q)
            r = s.recv(2)
            r = s.recv(struct.unpack("!H", r)[0])
    except OSError as exc:
        print("FAIL", exc)
        sys.exit()
    ms = (time.perf_counter() - start) * 1000
    rcode, an = r[3] & 15, struct.unpack("!H", r[6:8])[0]
    print(rcode, socket.inet_ntoa(r[-4:]) if an else "-", f"{ms:.2f}")
"""


@pytest.fixture
def responder(topo: Topology) -> Iterator[None]:
    code = f"""
        import asyncio
        from banger.net.dns import DnsResponder
        async def main():
            r = DnsResponder()
            await r.start("{BRIDGE_IP}", {PORT}, {{"vm1": "{VM_IPS["vm1"]}"}}.get)
            print("ready", flush=True)
            await asyncio.Event().wait()
        asyncio.run(main())
    """
    proc = subprocess.Popen(
        ["ip", "netns", "exec", topo.ns["host"], PY, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield
    proc.kill()
    proc.wait(5)


def ask(topo: Topology, role: str, name: str, port: int = 53, proto: str = "udp") -> list[str]:
    out = topo.python(role, ASK, name, BRIDGE_IP, str(port), proto)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()


def test_bridge_port_53_reaches_the_responder(topo: Topology, responder: None) -> None:
    assert ask(topo, "vm1", "vm1.vm")[0] == "FAIL"  # nothing on :53 yet

    out = topo.verb("dns_redirect", bridge=topo.bridge, address=BRIDGE_IP, port=PORT)
    assert out["created"] is True
    topo.verb("dns_redirect", bridge=topo.bridge, address=BRIDGE_IP, port=PORT)

    for role in ("vm1", "vm2", "host"):  # "host" goes through the output chain
        for proto in ("udp", "tcp"):
            rcode, addr, _ms = ask(topo, role, "VM1.vm", proto=proto)
            assert (rcode, addr) == ("0", VM_IPS["vm1"]), (role, proto)
    assert ask(topo, "vm2", "nope.vm")[:2] == ["3", "-"]
    assert ask(topo, "vm2", "example.com")[:2] == ["5", "-"]

    assert topo.verb("net_teardown", bridge=topo.bridge)["deleted"] is True
    assert topo.tables() == []
    assert ask(topo, "vm1", "vm1.vm")[0] == "FAIL"


def test_redirect_to_an_address_the_bridge_lacks_is_refused(topo: Topology) -> None:
    code = """
        import sys
        from banger.helper.errors import Conflict
        from banger.helper import verbs
        from banger.helper.validate import Policy
        try:
            verbs.dispatch(Policy.create(0, []), "dns_redirect",
                           {"bridge": sys.argv[1], "address": "10.250.7.9", "port": 10053})
        except Conflict as exc:
            print(exc.message)
    """
    out = topo.python("host", code, topo.bridge)
    assert "not an address of bridge" in out.stdout, out.stderr
    assert topo.tables() == []
