"""Verb logic against an in-memory network: idempotence, conflicts, undo.

The real ``ip`` is exercised by tests/e2e/test_helper_net.py; here the
iplink seam is replaced so the decisions can be checked without root.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import replace
from pathlib import Path

import pytest

from banger.helper import iplink, verbs
from banger.helper.errors import Conflict, HostError, NotFound, Refused
from banger.helper.iplink import Link
from banger.helper.ledger import Ledger
from banger.helper.validate import Policy

OWNER = 4242


class FakeNet:
    def __init__(self) -> None:
        self.links: dict[str, Link] = {}
        self.calls: list[tuple[str, ...]] = []
        self.fail_on: str | None = None
        self.routes: list[iplink.Route] = []

    def _call(self, *call: str) -> None:
        self.calls.append(call)
        if call[0] == self.fail_on:
            raise HostError(f"{call[0]} failed")

    def add(self, name: str, kind: str, **kw: object) -> None:
        base = Link(name=name, kind=kind, master=None, up=False, owner=None, ipv4=())
        self.links[name] = replace(base, **kw)  # type: ignore[arg-type]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(iplink, "get", lambda name: self.links.get(name))
        monkeypatch.setattr(iplink, "all_links", lambda: list(self.links.values()))
        monkeypatch.setattr(iplink, "add_bridge", self.add_bridge)
        monkeypatch.setattr(iplink, "add_tap", self.add_tap)
        monkeypatch.setattr(iplink, "add_address", self.add_address)
        monkeypatch.setattr(iplink, "set_master", self.set_master)
        monkeypatch.setattr(iplink, "set_up", self.set_up)
        monkeypatch.setattr(iplink, "delete", self.delete)
        monkeypatch.setattr(iplink, "routes", lambda: list(self.routes))

    def add_bridge(self, name: str) -> None:
        self._call("add_bridge", name)
        self.add(name, "bridge")

    def add_tap(self, name: str, uid: int) -> None:
        self._call("add_tap", name, str(uid))
        self.add(name, "tap", owner=str(uid))

    def add_address(self, name: str, address: ipaddress.IPv4Interface) -> None:
        self._call("add_address", name, str(address))
        link = self.links[name]
        self.links[name] = replace(link, ipv4=(*link.ipv4, address))

    def set_master(self, name: str, master: str) -> None:
        self._call("set_master", name, master)
        self.links[name] = replace(self.links[name], master=master)

    def set_up(self, name: str) -> None:
        self._call("set_up", name)
        self.links[name] = replace(self.links[name], up=True)

    def delete(self, name: str) -> bool:
        self._call("delete", name)
        return self.links.pop(name, None) is not None


@pytest.fixture
def net(monkeypatch: pytest.MonkeyPatch) -> FakeNet:
    fake = FakeNet()
    fake.install(monkeypatch)
    return fake


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    return Policy.create(OWNER, [tmp_path])


def call(policy: Policy, verb: str, **args: object) -> dict[str, object]:
    return verbs.dispatch(policy, verb, args)


def made(policy: Policy, *names: str, uid: int = OWNER) -> None:
    """Links this helper recorded having made (for ``uid``), as after earlier calls."""
    for name in names:
        policy.ledger.record("link", name, uid)


def test_bridge_ensure_creates_then_is_a_no_op(net: FakeNet, policy: Policy) -> None:
    first = call(policy, "bridge_ensure", name="bg0", address="10.77.0.1/24")
    assert first["changed"] == ["created", "address", "up"]
    net.calls.clear()
    second = call(policy, "bridge_ensure", name="bg0", address="10.77.0.1/24")
    assert second["changed"] == []
    assert net.calls == []


def test_bridge_ensure_completes_a_half_made_bridge(net: FakeNet, policy: Policy) -> None:
    net.add("bg0", "bridge")
    made(policy, "bg0")
    result = call(policy, "bridge_ensure", name="bg0", address="10.77.0.1/24")
    assert result["changed"] == ["address", "up"]


def test_bridge_ensure_refuses_a_device_of_another_kind(net: FakeNet, policy: Policy) -> None:
    net.add("bg0", "tap")
    with pytest.raises(Conflict, match="is a tap device, not a bridge"):
        call(policy, "bridge_ensure", name="bg0", address="10.77.0.1/24")
    assert net.calls == []


def test_bridge_ensure_refuses_a_bridge_with_another_address(net: FakeNet, policy: Policy) -> None:
    net.add("bg0", "bridge", ipv4=(ipaddress.IPv4Interface("10.66.0.1/24"),))
    made(policy, "bg0")
    with pytest.raises(Conflict, match=r"already has 10\.66\.0\.1/24") as info:
        call(policy, "bridge_ensure", name="bg0", address="10.77.0.1/24")
    assert "ip link del bg0" in (info.value.hint or "")


def test_bridge_ensure_refuses_a_subnet_used_elsewhere(net: FakeNet, policy: Policy) -> None:
    net.add("eth0", "", ipv4=(ipaddress.IPv4Interface("10.0.0.5/8"),))
    with pytest.raises(Conflict, match=r"overlaps .* eth0 has 10\.0\.0\.5/8") as info:
        call(policy, "bridge_ensure", name="bg0", address="10.77.0.1/24")
    assert "subnet" in (info.value.hint or "")
    assert "bg0" not in net.links


def test_bridge_ensure_refuses_a_range_routed_elsewhere(net: FakeNet, policy: Policy) -> None:
    # No link holds an address in 10.77.0.0/16, but traffic for it goes to a VPN.
    net.add("wg0", "")
    net.routes = [iplink.Route(ipaddress.IPv4Network("10.77.0.0/16"), "wg0", "unicast")]
    with pytest.raises(Conflict, match=r"overlaps .* unicast route to 10\.77\.0\.0/16 via wg0"):
        call(policy, "bridge_ensure", name="bg0", address="10.77.0.1/24")
    assert "bg0" not in net.links and net.calls == []


def test_bridge_ensure_removes_a_bridge_it_could_not_finish(net: FakeNet, policy: Policy) -> None:
    net.fail_on = "add_address"
    with pytest.raises(HostError):
        call(policy, "bridge_ensure", name="bg0", address="10.77.0.1/24")
    assert "bg0" not in net.links


def test_tap_create_needs_the_bridge(net: FakeNet, policy: Policy) -> None:
    with pytest.raises(NotFound, match="bridge bg0 does not exist") as info:
        call(policy, "tap_create", name="bgt1", bridge="bg0", owner_uid=OWNER)
    assert "bridge_ensure" in (info.value.hint or "")


def test_tap_create_then_again_is_idempotent(net: FakeNet, policy: Policy) -> None:
    net.add("bg0", "bridge", up=True)
    made(policy, "bg0")
    assert call(policy, "tap_create", name="bgt1", bridge="bg0", owner_uid=OWNER)["created"]
    assert net.links["bgt1"] == replace(net.links["bgt1"], master="bg0", up=True, owner="4242")
    net.calls.clear()
    again = call(policy, "tap_create", name="bgt1", bridge="bg0", owner_uid=OWNER)
    assert again["created"] is False
    assert net.calls == []


def test_tap_create_refuses_a_tap_of_another_owner(net: FakeNet, policy: Policy) -> None:
    net.add("bg0", "bridge", up=True)
    net.add("bgt1", "tap", owner="nobody")
    made(policy, "bg0", "bgt1")
    with pytest.raises(Conflict, match="belongs to nobody"):
        call(policy, "tap_create", name="bgt1", bridge="bg0", owner_uid=OWNER)


def test_links_this_helper_did_not_make_are_left_alone(net: FakeNet, policy: Policy) -> None:
    # A bg-prefixed name proves nothing: another user's banger (or root) made these.
    net.add("bg9", "bridge", up=True, ipv4=(ipaddress.IPv4Interface("10.99.0.1/24"),))
    net.add("bgt9", "tap", owner=str(OWNER), master="bg9")
    for verb, args in [
        ("bridge_ensure", {"name": "bg9", "address": "10.99.0.1/24"}),
        ("bridge_delete", {"name": "bg9"}),
        ("tap_delete", {"name": "bgt9"}),
        ("tap_create", {"name": "bgt8", "bridge": "bg9", "owner_uid": OWNER}),
    ]:
        with pytest.raises(Conflict, match="was not made by this banger-helper"):
            call(policy, verb, **args)
    assert net.calls == []
    assert call(policy, "link_list")["links"] == []


def test_links_recorded_for_another_uid_are_refused(net: FakeNet, policy: Policy) -> None:
    net.add("bg0", "bridge", up=True)
    net.add("bgt1", "tap", owner="0")
    made(policy, "bg0", "bgt1", uid=0)
    with pytest.raises(Refused, match="bgt1 belongs to uid 0, not uid 4242"):
        call(policy, "tap_delete", name="bgt1")
    with pytest.raises(Refused, match="bg0 belongs to uid 0"):
        call(policy, "tap_create", name="bgt2", bridge="bg0", owner_uid=OWNER)
    # Root may act on what it or the owner made.
    assert verbs.dispatch(policy.for_caller(0), "tap_delete", {"name": "bgt1"})["deleted"]
    assert net.calls == [("delete", "bgt1")]


def test_the_record_survives_a_restart_and_only_root_writes_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = Ledger(state)
    first.record("link", "bg0", OWNER)
    assert Ledger(state).owner("link", "bg0") == OWNER
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert oct((state / "owned.json").stat().st_mode & 0o777) == "0o600"
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    with pytest.raises(HostError, match="only uid"):
        Ledger(loose)
    (tmp_path / "link").symlink_to(state)
    with pytest.raises(HostError, match="cannot open"):
        Ledger(tmp_path / "link")


def test_tap_create_reattaches_a_tap_left_on_another_bridge(net: FakeNet, policy: Policy) -> None:
    net.add("bg0", "bridge", up=True)
    net.add("bgt1", "tap", owner=str(OWNER), master="bgold", up=True)
    made(policy, "bg0", "bgt1")
    call(policy, "tap_create", name="bgt1", bridge="bg0", owner_uid=OWNER)
    assert net.calls == [("set_master", "bgt1", "bg0")]


def test_tap_create_undoes_a_tap_it_could_not_attach(net: FakeNet, policy: Policy) -> None:
    net.add("bg0", "bridge", up=True)
    made(policy, "bg0")
    net.fail_on = "set_master"
    with pytest.raises(HostError):
        call(policy, "tap_create", name="bgt1", bridge="bg0", owner_uid=OWNER)
    assert "bgt1" not in net.links


def test_deletes_are_idempotent_and_kind_checked(net: FakeNet, policy: Policy) -> None:
    net.add("bg0", "bridge")
    net.add("bgt1", "tap")
    made(policy, "bg0", "bgt1")
    with pytest.raises(Conflict, match="not a tap; leaving it alone"):
        call(policy, "tap_delete", name="bg0")
    with pytest.raises(Conflict, match="not a bridge"):
        call(policy, "bridge_delete", name="bgt1")
    assert call(policy, "tap_delete", name="bgt1") == {"name": "bgt1", "deleted": True}
    assert call(policy, "tap_delete", name="bgt1") == {"name": "bgt1", "deleted": False}
    assert call(policy, "bridge_delete", name="bg0")["deleted"] is True
    assert call(policy, "bridge_delete", name="bg0")["deleted"] is False


def test_link_list_shows_only_banger_links(net: FakeNet, policy: Policy) -> None:
    net.add("eth0", "")
    net.add("docker0", "bridge")
    net.add("bg0", "bridge", up=True, ipv4=(ipaddress.IPv4Interface("10.77.0.1/24"),))
    net.add("bgt1", "tap", master="bg0")
    net.add("bgx", "bridge")
    made(policy, "bg0", "bgt1")
    links = call(policy, "link_list")["links"]
    assert links == [
        {
            "name": "bg0",
            "kind": "bridge",
            "master": None,
            "up": True,
            "addresses": ["10.77.0.1/24"],
        },
        {"name": "bgt1", "kind": "tap", "master": "bg0", "up": False, "addresses": []},
    ]
    json.dumps(links)  # goes over the wire as is


def test_ip_json_is_parsed_into_links() -> None:
    entry = {
        "ifname": "bgt1",
        "flags": ["BROADCAST", "UP"],
        "master": "bg0",
        "linkinfo": {"info_kind": "tun", "info_data": {"type": "tap", "user": "nobody"}},
        "addr_info": [
            {"family": "inet", "local": "10.77.0.9", "prefixlen": 24},
            {"family": "inet6", "local": "fe80::1", "prefixlen": 64},
        ],
    }
    link = iplink._parse(entry)
    assert link == Link(
        "bgt1", "tap", "bg0", True, "nobody", (ipaddress.IPv4Interface("10.77.0.9/24"),)
    )
    assert iplink._parse({"ifname": "eth0", "flags": []}).kind == ""
