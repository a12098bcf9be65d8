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
from banger.helper.errors import Conflict, HostError, NotFound
from banger.helper.iplink import Link
from banger.helper.validate import Policy

OWNER = 4242


class FakeNet:
    def __init__(self) -> None:
        self.links: dict[str, Link] = {}
        self.calls: list[tuple[str, ...]] = []
        self.fail_on: str | None = None

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


def test_bridge_ensure_creates_then_is_a_no_op(net: FakeNet, policy: Policy) -> None:
    first = call(policy, "bridge_ensure", name="bg0", address="10.77.0.1/24")
    assert first["changed"] == ["created", "address", "up"]
    net.calls.clear()
    second = call(policy, "bridge_ensure", name="bg0", address="10.77.0.1/24")
    assert second["changed"] == []
    assert net.calls == []


def test_bridge_ensure_completes_a_half_made_bridge(net: FakeNet, policy: Policy) -> None:
    net.add("bg0", "bridge")
    result = call(policy, "bridge_ensure", name="bg0", address="10.77.0.1/24")
    assert result["changed"] == ["address", "up"]


def test_bridge_ensure_refuses_a_device_of_another_kind(net: FakeNet, policy: Policy) -> None:
    net.add("bg0", "tap")
    with pytest.raises(Conflict, match="is a tap device, not a bridge"):
        call(policy, "bridge_ensure", name="bg0", address="10.77.0.1/24")
    assert net.calls == []


def test_bridge_ensure_refuses_a_bridge_with_another_address(net: FakeNet, policy: Policy) -> None:
    net.add("bg0", "bridge", ipv4=(ipaddress.IPv4Interface("10.66.0.1/24"),))
    with pytest.raises(Conflict, match=r"already has 10\.66\.0\.1/24") as info:
        call(policy, "bridge_ensure", name="bg0", address="10.77.0.1/24")
    assert "ip link del bg0" in (info.value.hint or "")


def test_bridge_ensure_refuses_a_subnet_used_elsewhere(net: FakeNet, policy: Policy) -> None:
    net.add("eth0", "", ipv4=(ipaddress.IPv4Interface("10.0.0.5/8"),))
    with pytest.raises(Conflict, match=r"overlaps .* eth0 has 10\.0\.0\.5/8") as info:
        call(policy, "bridge_ensure", name="bg0", address="10.77.0.1/24")
    assert "subnet" in (info.value.hint or "")
    assert "bg0" not in net.links


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
    assert call(policy, "tap_create", name="bgt1", bridge="bg0", owner_uid=OWNER)["created"]
    assert net.links["bgt1"] == replace(net.links["bgt1"], master="bg0", up=True, owner="4242")
    net.calls.clear()
    again = call(policy, "tap_create", name="bgt1", bridge="bg0", owner_uid=OWNER)
    assert again["created"] is False
    assert net.calls == []


def test_tap_create_refuses_a_tap_of_another_owner(net: FakeNet, policy: Policy) -> None:
    net.add("bg0", "bridge", up=True)
    net.add("bgt1", "tap", owner="nobody")
    with pytest.raises(Conflict, match="belongs to nobody"):
        call(policy, "tap_create", name="bgt1", bridge="bg0", owner_uid=OWNER)


def test_tap_create_reattaches_a_tap_left_on_another_bridge(net: FakeNet, policy: Policy) -> None:
    net.add("bg0", "bridge", up=True)
    net.add("bgt1", "tap", owner=str(OWNER), master="bgold", up=True)
    call(policy, "tap_create", name="bgt1", bridge="bg0", owner_uid=OWNER)
    assert net.calls == [("set_master", "bgt1", "bg0")]


def test_tap_create_undoes_a_tap_it_could_not_attach(net: FakeNet, policy: Policy) -> None:
    net.add("bg0", "bridge", up=True)
    net.fail_on = "set_master"
    with pytest.raises(HostError):
        call(policy, "tap_create", name="bgt1", bridge="bg0", owner_uid=OWNER)
    assert "bgt1" not in net.links


def test_deletes_are_idempotent_and_kind_checked(net: FakeNet, policy: Policy) -> None:
    net.add("bg0", "bridge")
    net.add("bgt1", "tap")
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
