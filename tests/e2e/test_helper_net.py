"""banger-helper against the real host network: bridges and taps in the root netns.

Every link these tests name is removed in fixture teardown with ``ip link
del``, whether or not the test (or the helper) got that far.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import secrets
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from banger.errors import Conflict, NotFound, UserError
from banger.helper_client.client import HelperClient

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="creating bridges and taps needs root"),
    pytest.mark.skipif(not Path("/dev/net/tun").exists(), reason="/dev/net/tun is missing"),
]

OWNER = 65534  # the VMM's user in these tests: nobody
TUNSETIFF = 0x400454CA
TUNGETIFF = 0x800454D2
IFF_TAP = 0x0002
IFF_NO_PI = 0x1000


def ip_links() -> dict[str, dict[str, object]]:
    out = subprocess.run(["ip", "-j", "-d", "addr", "show"], capture_output=True, check=True)
    return {link["ifname"]: link for link in json.loads(out.stdout) if "ifname" in link}


def free_subnet() -> ipaddress.IPv4Network:
    used = [
        ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}").network
        for link in ip_links().values()
        for a in link.get("addr_info", [])  # type: ignore[attr-defined]
        if a.get("family") == "inet"
    ]
    for _ in range(100):
        net = ipaddress.IPv4Network(
            f"10.{secrets.choice(range(200, 250))}.{secrets.randbelow(256)}.0/24"
        )
        if not any(net.overlaps(u) for u in used):
            return net
    raise AssertionError("no free 10.x subnet found")


@pytest.fixture
def names() -> Iterator[list[str]]:
    """Link names for one test; whatever exists of them is deleted afterwards."""
    made: list[str] = []
    yield made
    for name in reversed(made):
        subprocess.run(["ip", "link", "del", "dev", name], capture_output=True, check=False)
    leaked = set(made) & set(ip_links())
    assert not leaked, f"links left behind: {leaked}"


def new_name(names: list[str], kind: str) -> str:
    name = f"bg{kind}{secrets.token_hex(4)}"  # 11 bytes, inside IFNAMSIZ
    names.append(name)
    return name


@pytest.fixture(scope="module")
def helper() -> Iterator[HelperClient]:
    base = Path(tempfile.mkdtemp(prefix="bge", dir="/tmp"))
    sock = base / "helper.sock"
    argv = [
        str(Path(sys.executable).parent / "banger-helper"),
        *("--socket", str(sock), "--owner-uid", str(OWNER), "--allowed-dir", str(base)),
    ]
    log = (base / "helper.log").open("wb")
    child = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    client = HelperClient(sock, timeout=30)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert child.poll() is None, (base / "helper.log").read_text()
            assert time.monotonic() < deadline, "helper did not start"
            time.sleep(0.05)
        client.ping()
        yield client
    finally:
        child.send_signal(signal.SIGTERM)
        child.wait(10)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


def open_tap_as(uid: int, name: str) -> int:
    """Attach to tap ``name`` the way a VMM does, as ``uid``; 0 or the errno.

    /dev/net/tun is opened before dropping root because some hosts (this
    project's CI containers) keep it at mode 0600; the tap's owner check
    happens at TUNSETIFF, with the credentials of the caller at that point.
    """
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            fd = os.open("/dev/net/tun", os.O_RDWR)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            ifr = struct.pack("16sH22x", name.encode(), IFF_TAP | IFF_NO_PI)
            try:
                fcntl.ioctl(fd, TUNSETIFF, ifr)
            finally:
                os.close(fd)
        except OSError as exc:
            code = exc.errno or 255
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_bridge_and_tap_lifecycle(helper: HelperClient, names: list[str]) -> None:
    bridge, tap = new_name(names, "b"), new_name(names, "t")
    net = free_subnet()
    address = f"{next(net.hosts())}/{net.prefixlen}"

    assert helper.ensure_bridge(bridge, address)["changed"] == ["created", "address", "up"]
    assert helper.ensure_bridge(bridge, address)["changed"] == []
    seen = ip_links()[bridge]
    assert seen["linkinfo"]["info_kind"] == "bridge"  # type: ignore[index]
    assert "UP" in seen["flags"]  # type: ignore[operator]
    assert f"{seen['addr_info'][0]['local']}/24" == address  # type: ignore[index]

    assert helper.create_tap(tap, bridge, OWNER) is True
    assert helper.create_tap(tap, bridge, OWNER) is False
    seen = ip_links()[tap]
    assert seen["master"] == bridge
    assert seen["linkinfo"]["info_data"]["user"] == "nobody"  # type: ignore[index]
    assert "UP" in seen["flags"]  # type: ignore[operator]

    listed = {link["name"]: link for link in helper.list_links()}
    assert listed[bridge]["kind"] == "bridge"
    assert listed[bridge]["addresses"] == [address]
    assert listed[tap] == {
        "name": tap,
        "kind": "tap",
        "master": bridge,
        "up": True,
        "addresses": [],
    }

    assert helper.delete_tap(tap) is True
    assert tap not in ip_links()
    assert helper.delete_tap(tap) is False
    assert helper.delete_bridge(bridge) is True
    assert bridge not in ip_links()
    assert helper.delete_bridge(bridge) is False


def test_only_the_owner_can_open_the_tap(helper: HelperClient, names: list[str]) -> None:
    bridge, tap = new_name(names, "b"), new_name(names, "t")
    net = free_subnet()
    helper.ensure_bridge(bridge, f"{next(net.hosts())}/{net.prefixlen}")
    helper.create_tap(tap, bridge, OWNER)
    assert open_tap_as(OWNER, tap) == 0
    assert open_tap_as(OWNER - 1, tap) == 1  # EPERM


def test_mistakes_leave_the_host_untouched(helper: HelperClient, names: list[str]) -> None:
    bridge, tap = new_name(names, "b"), new_name(names, "t")
    net = free_subnet()
    address = f"{next(net.hosts())}/{net.prefixlen}"
    with pytest.raises(NotFound, match=f"bridge {bridge} does not exist"):
        helper.create_tap(tap, bridge, OWNER)
    assert tap not in ip_links()

    helper.ensure_bridge(bridge, address)
    with pytest.raises(Conflict, match="not a tap; leaving it alone"):
        helper.delete_tap(bridge)
    other = new_name(names, "b")
    with pytest.raises(Conflict, match="overlaps"):
        helper.ensure_bridge(other, f"{list(net.hosts())[1]}/{net.prefixlen}")
    with pytest.raises(UserError, match="serves uid 65534"):
        helper.create_tap(tap, bridge, 1000)
    with pytest.raises(UserError, match="not a banger interface name"):
        helper.delete_bridge("eth0")
    links = ip_links()
    assert bridge in links
    assert other not in links
    assert tap not in links


def test_the_helper_hands_over_an_open_tap(helper: HelperClient, names: list[str]) -> None:
    # What an unprivileged bangerd gets where /dev/net/tun is root's: a
    # descriptor already attached to its own tap, for QEMU to inherit.
    bridge, tap = new_name(names, "b"), new_name(names, "t")
    net = free_subnet()
    helper.ensure_bridge(bridge, f"{next(net.hosts())}/{net.prefixlen}")
    helper.create_tap(tap, bridge, OWNER)
    fd = helper.open_tap(tap)
    try:
        assert os.readlink(f"/proc/self/fd/{fd}") == "/dev/net/tun"
        info = fcntl.ioctl(fd, TUNGETIFF, bytes(40))
        assert info[:16].rstrip(b"\0").decode() == tap
    finally:
        os.close(fd)
    with pytest.raises(NotFound, match="does not exist"):
        helper.open_tap(new_name(names, "t"))
