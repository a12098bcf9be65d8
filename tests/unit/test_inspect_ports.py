"""`vm ports`: one row per listener, and an endpoint that works from this host."""

from __future__ import annotations

from banger.api.models import Vm, VmState
from banger.daemon.inspect import parse_proc_net, parse_ss, reachable_host

# ss on a Debian guest with sshd (dual-stack) and a Python server on IPv4 only.
SS = """\
tcp   LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:(("sshd",pid=201,fd=3))
tcp   LISTEN 0      128                *:22              *:*    users:(("sshd",pid=201,fd=4))
tcp   LISTEN 0      5          127.0.0.1:8000      0.0.0.0:*    users:(("python3",pid=300,fd=3))
udp   UNCONN 0      0            0.0.0.0:68        0.0.0.0:*
tcp   LISTEN 0      128             [::]:9000         [::]:*
"""


def rows(ports):
    return [(p.proto, p.address, p.port, p.process) for p in ports]


def test_a_dual_stack_listener_is_one_row():
    assert rows(parse_ss(SS)) == [
        ("tcp", "*", 22, "sshd"),
        ("udp", "*", 68, None),
        ("tcp", "127.0.0.1", 8000, "python3"),
        ("tcp", "*", 9000, None),
    ]


def test_proc_net_without_ss_lists_each_listener_once():
    text = (
        "@@proc\n@tcp\n  sl  local_address rem_address   st\n"
        "   0: 00000000:0016 00000000:0000 0A\n"
        "@tcp6\n  sl  local_address rem_address   st\n"
        "   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A\n"
        "   1: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 01\n"
    )
    assert rows(parse_proc_net(text)) == [("tcp", "*", 22, None)]


def vm() -> Vm:
    return Vm(
        id="v1", name="dev", image="i", state=VmState.RUNNING, vcpus=1, memory_mib=256,
        overlay_bytes=1, ip="10.77.0.2", tap="t", mac="m", vmm="qemu", dir="/d", created_at="t",
    )  # fmt: skip


def test_the_endpoint_is_the_address_unless_the_host_resolves_names():
    assert reachable_host(vm(), names_resolve=False) == "10.77.0.2"
    assert reachable_host(vm(), names_resolve=True) == "dev.vm"
