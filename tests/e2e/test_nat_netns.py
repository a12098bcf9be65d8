"""NAT, isolation, the DNS redirect and DNS forwarding with real nftables, in netns.

Topology (all in throwaway namespaces; the root namespace's nftables and
ip_forward are never touched)::

    vm1 (10.250.7.5) --veth--+
                             bridge bgnt.. 10.250.7.1/24   [host ns]   uplink 10.251.7.1
    vm2 (10.250.7.6) --veth--+                                  |
                                                           out 10.251.7.2

The outside namespace routes 10.250.7.0/24 back through the host, so a VM
without NAT *could* reach it if banger's isolation rule did not drop it.
The verbs run in the host namespace through ``verbs.dispatch``, exactly as
banger-helper would run them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from banger.helper.ledger import Ledger

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces and nftables need root"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed"),
]

SUBNET = "10.250.7.0/24"
BRIDGE_IP = "10.250.7.1"
OUTSIDE_IP = "10.251.7.2"
UPLINK_IP = "10.251.7.1"
VM_IPS = {"vm1": "10.250.7.5", "vm2": "10.250.7.6"}
PY = sys.executable
SRC = str(Path(__file__).resolve().parents[2] / "src")


def sh(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


@dataclass
class Topology:
    ns: dict[str, str]
    bridge: str
    # The helper's record of what it made: the test made the bridge, as
    # bridge_ensure would have, and recorded it there.
    state: str = ""

    def run(self, role: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.ns[role], *argv, check=check)

    def python(self, role: str, code: str, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(role, PY, "-c", textwrap.dedent(code), *args, check=False)

    def verb(self, verb: str, **args: object) -> dict[str, object]:
        code = """
            import json, sys
            from pathlib import Path
            from banger.helper import verbs
            from banger.helper.ledger import Ledger
            from banger.helper.validate import Policy
            policy = Policy.create(0, [], Ledger(Path(sys.argv[3])))
            result = verbs.dispatch(policy, sys.argv[1], json.loads(sys.argv[2]))
            print(json.dumps(result))
        """
        done = self.python("host", code, verb, json.dumps(args), self.state)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    def ip_forward(self) -> str:
        return self.run("host", "cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip()

    def tables(self) -> list[str]:
        out = json.loads(self.run("host", "nft", "-j", "list", "tables").stdout)
        return [e["table"]["name"] for e in out["nftables"] if "table" in e]

    def connect(self, role: str, host: str, port: int) -> str | None:
        """What a TCP server answers to a VM (the peer address it saw), or None."""
        code = """
            import socket, sys
            try:
                with socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2) as s:
                    print(s.recv(64).decode())
            except OSError as exc:
                print("FAIL", exc)
        """
        out = self.python(role, code, host, str(port)).stdout.strip()
        return None if out.startswith("FAIL") else out


@pytest.fixture
def topo() -> Iterator[Topology]:
    tag = secrets.token_hex(3)
    ns = {role: f"bgtest-{tag}-{role}" for role in ("host", "vm1", "vm2", "out")}
    bridge = f"bgnt{tag}"
    try:
        for name in ns.values():
            sh("ip", "netns", "add", name)
        state = tempfile.mkdtemp(prefix=f"bgnt-{tag}-")
        Ledger(Path(state)).record("link", bridge, 0)
        t = Topology(ns, bridge, state)
        t.run("host", "ip", "link", "set", "lo", "up")
        t.run("host", "ip", "link", "add", bridge, "type", "bridge")
        t.run("host", "ip", "addr", "add", f"{BRIDGE_IP}/24", "dev", bridge)
        t.run("host", "ip", "link", "set", bridge, "up")
        for role, addr in VM_IPS.items():
            port = f"bgv{role}{tag}"
            t.run(
                "host", "ip", "link", "add", port, "type", "veth", "peer", "eth0", "netns", ns[role]
            )
            t.run("host", "ip", "link", "set", port, "master", bridge, "up")
            t.run(role, "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
            t.run(role, "ip", "link", "set", "eth0", "up")
            t.run(role, "ip", "route", "add", "default", "via", BRIDGE_IP)
        t.run(
            "host",
            "ip",
            "link",
            "add",
            "uplink",
            "type",
            "veth",
            "peer",
            "eth0",
            "netns",
            ns["out"],
        )
        t.run("host", "ip", "addr", "add", f"{UPLINK_IP}/24", "dev", "uplink")
        t.run("host", "ip", "link", "set", "uplink", "up")
        t.run("out", "ip", "addr", "add", f"{OUTSIDE_IP}/24", "dev", "eth0")
        t.run("out", "ip", "link", "set", "eth0", "up")
        t.run("out", "ip", "route", "add", SUBNET, "via", UPLINK_IP)
        assert t.ip_forward() == "0"
        yield t
    finally:
        for name in ns.values():
            sh("ip", "netns", "del", name, check=False)
        if "state" in locals():
            shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def echo_peer(topo: Topology) -> Iterator[int]:
    """A TCP server in the outside namespace that tells each client its address."""
    code = """
        import socket
        srv = socket.socket()
        srv.bind(("0.0.0.0", 8080))
        srv.listen()
        print("ready", flush=True)
        while True:
            conn, peer = srv.accept()
            conn.sendall(peer[0].encode())
            conn.close()
    """
    proc = subprocess.Popen(
        ["ip", "netns", "exec", topo.ns["out"], PY, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield 8080
    proc.kill()
    proc.wait(5)


def test_nat_vm_goes_out_masqueraded_and_others_are_isolated(
    topo: Topology, echo_peer: int
) -> None:
    assert topo.connect("vm1", OUTSIDE_IP, echo_peer) is None  # no forwarding yet

    out = topo.verb("nat_enable", bridge=topo.bridge, subnet=SUBNET, source=VM_IPS["vm1"])
    assert out["ip_forward_enabled"] is True and topo.ip_forward() == "1"
    assert topo.connect("vm1", OUTSIDE_IP, echo_peer) == UPLINK_IP  # masqueraded
    # Before isolation, vm2 gets out unmasqueraded; that is what net_isolate stops.
    assert topo.connect("vm2", OUTSIDE_IP, echo_peer) == VM_IPS["vm2"]

    topo.verb("net_isolate", bridge=topo.bridge)
    topo.verb("net_isolate", bridge=topo.bridge)
    assert topo.connect("vm2", OUTSIDE_IP, echo_peer) is None
    assert topo.connect("vm1", OUTSIDE_IP, echo_peer) == UPLINK_IP
    assert topo.verb("nat_list") == {"nat": [{"bridge": topo.bridge, "source": VM_IPS["vm1"]}]}

    # VM to VM is bridged, not forwarded: isolation leaves it alone.
    assert_vm_to_vm(topo)

    out = topo.verb("nat_disable", source=VM_IPS["vm1"])
    assert out["removed"] and not out["table_deleted"] and out["ip_forward_restored"]
    assert topo.ip_forward() == "0"
    assert topo.connect("vm1", OUTSIDE_IP, echo_peer) is None
    assert topo.tables() == [f"banger_{topo.bridge}"]

    assert topo.verb("net_teardown", bridge=topo.bridge)["deleted"] is True
    assert topo.tables() == []


def assert_vm_to_vm(topo: Topology) -> None:
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            topo.ns["vm2"],
            PY,
            "-c",
            "import socket; s=socket.create_server(('0.0.0.0', 9000)); c,p=s.accept(); "
            "c.sendall(p[0].encode())",
        ],
    )
    try:
        for _ in range(50):
            seen = topo.connect("vm1", VM_IPS["vm2"], 9000)
            if seen is not None:
                break
            time.sleep(0.1)
        assert seen == VM_IPS["vm1"]
    finally:
        server.kill()
        server.wait(5)


def test_last_nat_disable_deletes_the_table(topo: Topology, echo_peer: int) -> None:
    for source in VM_IPS.values():
        topo.verb("nat_enable", bridge=topo.bridge, subnet=SUBNET, source=source)
        topo.verb("nat_enable", bridge=topo.bridge, subnet=SUBNET, source=source)
    assert topo.connect("vm2", OUTSIDE_IP, echo_peer) == UPLINK_IP
    first = topo.verb("nat_disable", source=VM_IPS["vm1"])
    assert not first["table_deleted"] and topo.ip_forward() == "1"
    last = topo.verb("nat_disable", source=VM_IPS["vm2"])
    assert last["table_deleted"] and last["ip_forward_restored"]
    assert topo.tables() == [] and topo.ip_forward() == "0"
    again = topo.verb("nat_disable", source=VM_IPS["vm2"])
    assert again["removed"] is False


# --- DNS for VMs: a NAT VM resolves outside names through banger, others are refused

ROOT = Path(__file__).resolve().parents[2]
DNS_PORT = 10053

RESOLVE = """
    import json, sys
    import dns.message, dns.query, dns.rcode
    name, rdtype, server, proto = sys.argv[1:5]
    query = dns.message.make_query(name, rdtype, use_edns=0, payload=4096)
    ask = dns.query.udp if proto == "udp" else dns.query.tcp
    try:
        reply = ask(query, server, timeout=4)
    except Exception as exc:
        print(json.dumps(["FAIL", type(exc).__name__]))
        sys.exit()
    texts = sorted(rd.to_text() for rrset in reply.answer for rd in rrset)
    print(json.dumps([dns.rcode.to_text(reply.rcode()), texts]))
"""


def serve(topo: Topology, role: str, argv: list[str]) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", topo.ns[role], PY, *argv],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


@pytest.fixture
def banger_dns(topo: Topology) -> Iterator[None]:
    """A test resolver outside, and banger's responder on the bridge forwarding to it.

    The responder allows out the addresses that have NAT, as bangerd does
    from its store; here vm1 has NAT and vm2 has not.
    """
    code = f"""
        import asyncio
        from banger.net.dns import DnsResponder
        async def main():
            r = DnsResponder(("{OUTSIDE_IP}",))
            await r.start("{BRIDGE_IP}", {DNS_PORT}, {{"vm1": "{VM_IPS["vm1"]}"}}.get,
                          lambda source: source == "{VM_IPS["vm1"]}")
            print("ready", flush=True)
            await asyncio.Event().wait()
        asyncio.run(main())
    """
    procs = [
        serve(topo, "out", ["-m", "tests.dns_upstream", OUTSIDE_IP, "53"]),
        serve(topo, "host", ["-c", textwrap.dedent(code)]),
    ]
    yield
    for proc in procs:
        proc.kill()
        proc.wait(5)


def resolve(
    topo: Topology,
    role: str,
    name: str,
    rdtype: str = "A",
    proto: str = "udp",
    server: str = BRIDGE_IP,
) -> list[object]:
    out = topo.python(role, RESOLVE, name, rdtype, server, proto)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_nat_vm_resolves_outside_names_and_others_are_refused(
    topo: Topology, banger_dns: None
) -> None:
    from tests import dns_upstream as up

    topo.verb("net_isolate", bridge=topo.bridge)
    topo.verb("nat_enable", bridge=topo.bridge, subnet=SUBNET, source=VM_IPS["vm1"])
    topo.verb("dns_redirect", bridge=topo.bridge, address=BRIDGE_IP, port=DNS_PORT)

    for proto in ("udp", "tcp"):
        assert resolve(topo, "vm1", up.NAME, proto=proto) == ["NOERROR", [up.ADDRESS]], proto
        assert resolve(topo, "vm1", "vm1.vm", proto=proto) == ["NOERROR", [VM_IPS["vm1"]]]
    # Cut at 512 bytes over UDP by the outside resolver; banger fetched it again over TCP.
    rcode, texts = resolve(topo, "vm1", up.BIG, "TXT")
    assert rcode == "NOERROR" and len(texts) == len(up.BIG_RECORDS)  # type: ignore[arg-type]
    assert resolve(topo, "vm1", "nothing.example.test") == ["NXDOMAIN", []]

    # vm2 has no NAT: banger will not resolve for it, and it cannot ask outside itself.
    for proto in ("udp", "tcp"):
        assert resolve(topo, "vm2", up.NAME, proto=proto) == ["REFUSED", []], proto
    assert resolve(topo, "vm2", "vm1.vm") == ["NOERROR", [VM_IPS["vm1"]]]
    assert resolve(topo, "vm2", up.NAME, server=OUTSIDE_IP) == ["FAIL", "Timeout"]
    assert resolve(topo, "vm1", up.NAME, server=OUTSIDE_IP) == ["NOERROR", [up.ADDRESS]]

    topo.verb("nat_disable", source=VM_IPS["vm1"])
    assert topo.verb("net_teardown", bridge=topo.bridge)["deleted"] is True
    assert topo.tables() == [] and topo.ip_forward() == "0"
