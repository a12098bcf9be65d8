"""Hostile requests against a real banger-helper, refused and changing nothing.

The helper runs as root inside a network namespace of its own, with real
``ip`` and ``nft``. Another owner's bridge, tap and nftables table are made
there first (as another helper would have), and a route covers a range no
link has an address in. Then every request of the table below is sent, and
the namespace's links, routes, ruleset and ip_forward, and the ownership of
the files around the socket, are the same afterwards as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import BIN

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="a namespace and a root helper need root"),
]

NS = f"bghostile{os.getpid() % 10000}"
OWNER = 4242
NOBODY = 65534


def ns(*argv: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["ip", "netns", "exec", NS, *argv], capture_output=True, check=check)


def host_state(sockdir: Path) -> dict[str, Any]:
    # What a request could change; not what the kernel settles by itself
    # (carrier, IPv6 link-local addresses appearing on a new bridge).
    links = sorted(
        (
            link["ifname"],
            (link.get("linkinfo") or {}).get("info_kind"),
            # A tap's owner; a bridge's data is mostly running timers.
            ((link.get("linkinfo") or {}).get("info_data") or {}).get("user"),
            link.get("master"),
            "UP" in link.get("flags", []),
            sorted(
                f"{a['local']}/{a['prefixlen']}"
                for a in link.get("addr_info", [])
                if a.get("family") == "inet"
            ),
        )
        for link in json.loads(ns("ip", "-j", "-d", "addr").stdout)
    )
    return {
        "links": links,
        "routes": sorted(
            (r.get("type", "unicast"), r["dst"], r.get("dev"), r.get("table", "main"))
            for r in json.loads(ns("ip", "-4", "-j", "route", "show", "table", "all").stdout)
        ),
        "ruleset": json.loads(ns("nft", "-j", "list", "ruleset").stdout),
        "ip_forward": ns("cat", "/proc/sys/net/ipv4/ip_forward").stdout,
        "files": sorted((str(p), p.lstat().st_uid, p.lstat().st_mode) for p in sockdir.rglob("*")),
    }


@pytest.fixture(scope="module")
def helper() -> Iterator[Path]:
    subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False)
    subprocess.run(["ip", "netns", "add", NS], check=True)
    sockdir = Path(tempfile.mkdtemp(prefix="bgh", dir="/tmp"))
    os.chmod(sockdir, 0o755)
    # What another owner's helper made, and a range routed elsewhere.
    for argv in (
        ["ip", "link", "set", "lo", "up"],
        ["ip", "link", "add", "bgother", "type", "bridge"],
        ["ip", "addr", "add", "10.55.0.1/24", "dev", "bgother"],
        ["ip", "tuntap", "add", "dev", "bgtother", "mode", "tap", "user", str(OWNER)],
        ["ip", "route", "add", "blackhole", "10.66.0.0/16"],
        ["nft", "add", "table", "inet", "banger_bgother"],
    ):
        ns(*argv)
    sock = sockdir / "helper.sock"
    child = subprocess.Popen(
        ["ip", "netns", "exec", NS, str(BIN / "banger-helper"), "--socket", str(sock),
         "--owner-uid", str(OWNER), "--state-dir", str(sockdir / "state")],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not sock.exists():
        assert child.poll() is None and time.monotonic() < deadline, "the helper did not start"
        time.sleep(0.05)
    try:
        yield sock
    finally:
        child.terminate()
        _, log = child.communicate(timeout=10)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, check=False)
        shutil.rmtree(sockdir, ignore_errors=True)
        # Every refusal was logged on one line, with the caller's uid and pid.
        refusals = [line for line in log.splitlines() if "-> refused" in line]
        assert refusals and all(" uid=" in line and " pid=" in line for line in refusals)


def send(sock: Path, data: bytes, uid: int | None = None) -> dict[str, Any]:
    """One raw request as ``uid`` (a forked child) or as root; the first reply line."""
    if uid is None:
        return _exchange(sock, data)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            try:
                out = _exchange(sock, data)
            except OSError as exc:
                out = {"os_error": type(exc).__name__}
            os.write(write_end, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        raw = reader.read()
    os.waitpid(pid, 0)
    return json.loads(raw)  # type: ignore[no-any-return]


def _exchange(sock: Path, data: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(15)
        conn.connect(str(sock))
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            conn.sendall(data)
        received = b""
        while not received.endswith(b"\n"):
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return json.loads(received.splitlines()[0])  # type: ignore[no-any-return]


def req(verb: object, **args: object) -> bytes:
    return json.dumps({"id": 1, "verb": verb, "args": args}).encode() + b"\n"


HOSTILE: list[tuple[str, bytes, int | None]] = [
    ("a stranger's uid", req("link_list"), NOBODY),
    ("another owner's tap deleted", req("tap_delete", name="bgtother"), OWNER),
    ("another owner's tap opened", req("tap_open", name="bgtother"), OWNER),
    ("another owner's bridge deleted", req("bridge_delete", name="bgother"), OWNER),
    (
        "a tap on another owner's bridge",
        req("tap_create", name="bgtmine", bridge="bgother", owner_uid=OWNER),
        OWNER,
    ),
    ("another owner's table torn down", req("net_teardown", bridge="bgother"), OWNER),
    ("another owner's bridge isolated", req("net_isolate", bridge="bgother"), OWNER),
    (
        "NAT for a foreign source",
        req("nat_enable", bridge="bgother", subnet="172.17.0.0/16", source="172.17.0.2"),
        OWNER,
    ),
    (
        "NAT on a missing bridge",
        req("nat_enable", bridge="bgnone", subnet="10.56.0.0/24", source="10.56.0.2"),
        OWNER,
    ),
    (
        "a bridge inside a routed range",
        req("bridge_ensure", name="bgmine", address="10.66.1.1/24"),
        OWNER,
    ),
    ("a name that is not banger's", req("tap_delete", name="eth0"), OWNER),
    ("a name with a command in it", req("bridge_delete", name="bg0;reboot"), OWNER),
    ("a name with a path in it", req("tap_delete", name="bg/../eth0"), OWNER),
    ("an overlong name", req("tap_delete", name="bg" + "a" * 40), OWNER),
    ("an unknown verb with a newline", req("run\nINFO forged", argv=["sh"]), OWNER),
    ("an unknown argument", req("link_list", path="/etc/shadow"), OWNER),
    ("deep JSON", b"[" * 100_000 + b"\n", OWNER),
    ("a huge payload", b'{"verb": "' + b"x" * (2 << 20) + b'"}\n', OWNER),
]


@pytest.mark.parametrize(("case", "data", "uid"), HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_requests_are_refused_and_change_nothing(
    helper: Path, case: str, data: bytes, uid: int | None
) -> None:
    before = host_state(helper.parent)
    reply = send(helper, data, uid)
    assert reply.get("ok") is not True, (case, reply)
    assert host_state(helper.parent) == before, case


def test_the_owner_still_gets_its_own_work_done(helper: Path) -> None:
    # The refusals above are not a helper that refuses everything.
    made = send(helper, req("bridge_ensure", name="bgmine", address="10.57.0.1/24"), OWNER)
    assert made["ok"] is True, made
    tap = send(helper, req("tap_create", name="bgtmine", bridge="bgmine", owner_uid=OWNER), OWNER)
    assert tap["ok"] is True, tap
    # On its own bridge, NAT is only for the bridge's own network.
    before = host_state(helper.parent)
    for subnet, source in (("172.17.0.0/16", "172.17.0.2"), ("10.57.0.0/16", "10.57.9.9")):
        foreign = req("nat_enable", bridge="bgmine", subnet=subnet, source=source)
        refused = send(helper, foreign, OWNER)
        assert "is not the network of bridge bgmine" in refused["error"]["message"]
    assert host_state(helper.parent) == before
    nat = req("nat_enable", bridge="bgmine", subnet="10.57.0.0/24", source="10.57.0.5")
    assert send(helper, nat, OWNER)["ok"] is True
    rules = ns("nft", "list", "table", "inet", "banger_bgmine").stdout.decode()
    assert 'iifname "bgmine" ip saddr @nat_sources oifname != "bgmine" masquerade' in rules
    listed = send(helper, req("link_list"), OWNER)["result"]["links"]
    assert sorted(link["name"] for link in listed) == ["bgmine", "bgtmine"]
    for verb, args in (
        ("nat_disable", {"source": "10.57.0.5"}),
        ("net_teardown", {"bridge": "bgmine"}),
        ("tap_delete", {"name": "bgtmine"}),
        ("bridge_delete", {"name": "bgmine"}),
    ):
        assert send(helper, req(verb, **args), OWNER)["ok"] is True, verb
    # What another owner made is still there.
    names = {link["ifname"] for link in json.loads(ns("ip", "-j", "link").stdout)}
    assert {"bgother", "bgtother"} <= names and not {"bgmine", "bgtmine"} & names
