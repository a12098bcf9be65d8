"""`vm ports`: one row per listener, and an endpoint that works from this host."""

from __future__ import annotations

from banger.api.models import Vm, VmState
from banger.daemon.inspect import (
    guest_stats_from_agent,
    parse_proc_net,
    parse_ss,
    ports_from_agent,
    reachable_host,
)

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


def test_the_agents_ports_answer_is_one_row_per_listener():
    answer = {
        "ports": [
            {"proto": "tcp", "addr": "0.0.0.0", "port": 22, "pid": 201, "process": "sshd"},
            {"proto": "tcp6", "addr": "::", "port": 22, "pid": 201, "process": "sshd"},
            {"proto": "tcp", "addr": "127.0.0.1", "port": 8000, "process": "python3"},
            {"proto": "tcp6", "addr": "::1", "port": 9000},
            {"proto": "tcp", "addr": "0.0.0.0"},  # no port: not a row
        ]
    }
    assert rows(ports_from_agent(answer)) == [
        ("tcp", "*", 22, "sshd"),
        ("tcp", "127.0.0.1", 8000, "python3"),
        ("tcp", "::1", 9000, None),
    ]
    assert ports_from_agent({}) == []


def test_the_agents_load_answer_and_df_make_the_guest_stats():
    load = {"loadavg": [0.5, 0.25, 0.0], "mem_total_kib": 1000, "mem_available_kib": 600}
    df = (
        "Filesystem     1B-blocks      Used Available Capacity Mounted on\n"
        "overlay       4194304000 104857600 4089446400   3% /\n"
        "/dev/vdc      8388608000   4194304 8384413696   0% /root\n"
    )
    stats = guest_stats_from_agent(load, df)
    assert (stats.mem_total_bytes, stats.mem_available_bytes) == (1024000, 614400)
    assert stats.load == [0.5, 0.25, 0.0]
    assert [(d.mount, d.size_bytes, d.used_bytes) for d in stats.disks] == [
        ("/", 4194304000, 104857600),
        ("/root", 8388608000, 4194304),
    ]
    assert guest_stats_from_agent({}, "").load is None
