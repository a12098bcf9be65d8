"""The network-policy verbs: strict arguments, and what they hand to nft and resolvectl."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest

from banger.helper import iplink, nft, resolved, verbs
from banger.helper.errors import Conflict, NotFound, UserError
from banger.helper.iplink import Link
from banger.helper.validate import Policy

POLICY = Policy.create(4242, [])
POLICY.ledger.record("link", "bg0", 4242)
GOOD: dict[str, dict[str, Any]] = {
    "nat_enable": {"bridge": "bg0", "subnet": "10.77.0.0/24", "source": "10.77.0.5"},
    "nat_disable": {"source": "10.77.0.5"},
    "nat_list": {},
    "net_isolate": {"bridge": "bg0"},
    "dns_redirect": {"bridge": "bg0", "address": "10.77.0.1", "port": 10053},
    "net_teardown": {"bridge": "bg0"},
    "resolver_link": {"bridge": "bg0", "address": "10.77.0.1"},
    "resolver_unlink": {"bridge": "bg0"},
}


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[object, ...]]]:
    """Record what each verb would do instead of doing it."""
    seen: list[tuple[str, tuple[object, ...]]] = []
    for module, names in (
        (nft, ["nat_enable", "nat_disable", "isolate", "dns_redirect", "teardown"]),
        (resolved, ["link", "unlink"]),
    ):
        for name in names:
            monkeypatch.setattr(
                module, name, lambda *a, _n=name, **kw: seen.append((_n, a)) or {"ok": True}
            )
    monkeypatch.setattr(nft, "nat_list", lambda: [])
    monkeypatch.setattr(nft, "read_table", lambda bridge: None)
    bridge = Link("bg0", "bridge", None, True, None, (ipaddress.IPv4Interface("10.77.0.1/24"),))
    monkeypatch.setattr(iplink, "get", lambda name: bridge if name == "bg0" else None)
    return seen


def test_every_new_verb_is_listed() -> None:
    assert set(GOOD) <= set(verbs.VERBS)


@pytest.mark.parametrize("verb", sorted(GOOD))
def test_good_arguments_reach_the_handler(verb: str, calls: list[Any]) -> None:
    result = verbs.dispatch(POLICY, verb, GOOD[verb])
    assert isinstance(result, dict)


def test_handlers_get_typed_values(calls: list[Any]) -> None:
    verbs.dispatch(POLICY, "nat_enable", GOOD["nat_enable"])
    verbs.dispatch(POLICY, "dns_redirect", GOOD["dns_redirect"])
    assert calls == [
        (
            "nat_enable",
            (
                "bg0",
                ipaddress.IPv4Network("10.77.0.0/24"),
                ipaddress.IPv4Address("10.77.0.5"),
            ),
        ),
        ("dns_redirect", ("bg0", ipaddress.IPv4Address("10.77.0.1"), 10053)),
    ]


BAD = [
    ("nat_enable", {"bridge": "eth0"}),
    ("nat_enable", {"bridge": "bg0; flush ruleset"}),
    ("nat_enable", {"subnet": "8.8.8.0/24"}),
    ("nat_enable", {"subnet": "10.77.0.5/24"}),
    ("nat_enable", {"subnet": "127.0.0.0/8"}),
    ("nat_enable", {"source": "8.8.8.8"}),
    ("nat_enable", {"source": "10.77.0.5/32"}),
    ("nat_enable", {"source": "169.254.1.1"}),
    ("nat_enable", {"source": 5}),
    ("nat_disable", {"source": "1.1.1.1"}),
    ("nat_disable", {"source": "not-an-ip"}),
    ("net_isolate", {"bridge": "bg0 "}),
    ("dns_redirect", {"port": 53}),
    ("dns_redirect", {"port": 65536}),
    ("dns_redirect", {"port": "10053"}),
    ("dns_redirect", {"port": True}),
    ("dns_redirect", {"address": "10.77.0.1/24"}),
    ("dns_redirect", {"address": "0.0.0.0"}),
    ("resolver_link", {"address": "224.0.0.1"}),
    ("net_teardown", {"bridge": "BG0"}),
]


@pytest.mark.parametrize(("verb", "change"), BAD)
def test_bad_arguments_are_refused_before_anything_runs(
    verb: str, change: dict[str, Any], calls: list[Any]
) -> None:
    with pytest.raises(UserError):
        verbs.dispatch(POLICY, verb, {**GOOD[verb], **change})
    assert calls == []


@pytest.mark.parametrize("verb", sorted(GOOD))
def test_unknown_and_missing_arguments(verb: str, calls: list[Any]) -> None:
    with pytest.raises(UserError, match="unexpected"):
        verbs.dispatch(POLICY, verb, {**GOOD[verb], "table": "filter"})
    if GOOD[verb]:
        with pytest.raises(UserError, match="missing"):
            verbs.dispatch(POLICY, verb, {})


def test_source_outside_subnet_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nft, "apply", lambda lines: pytest.fail("nft must not run"))
    monkeypatch.setattr(nft, "read_ip_forward", lambda: pytest.fail("ip_forward must stay"))
    bridge = Link("bg0", "bridge", None, True, None, (ipaddress.IPv4Interface("10.77.0.1/24"),))
    monkeypatch.setattr(iplink, "get", lambda name: bridge if name == "bg0" else None)
    monkeypatch.setattr(nft, "read_table", lambda bridge: None)
    args = {**GOOD["nat_enable"], "source": "10.78.0.5"}
    with pytest.raises(UserError, match="not a host address"):
        verbs.dispatch(POLICY, "nat_enable", args)


@pytest.mark.parametrize(
    ("change", "error", "match"),
    [
        # A foreign network (docker's, another LAN's) is not the bridge's.
        ({"subnet": "172.17.0.0/16", "source": "172.17.0.2"}, Conflict, "not the network of"),
        ({"subnet": "10.77.0.0/16", "source": "10.77.9.9"}, Conflict, "not the network of"),
        ({"source": "10.77.0.1"}, UserError, "bridge's own address"),
        ({"bridge": "bg1"}, NotFound, "bridge bg1 does not exist"),
    ],
)
def test_nat_only_for_the_callers_bridge_and_its_own_network(
    change: dict[str, str],
    error: type[Exception],
    match: str,
    calls: list[Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(nft, "read_ip_forward", lambda: pytest.fail("ip_forward must stay"))
    with pytest.raises(error, match=match):
        verbs.dispatch(POLICY, "nat_enable", {**GOOD["nat_enable"], **change})
    assert calls == []


def test_nat_on_a_bridge_this_helper_did_not_make_is_refused(
    calls: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    stranger = Policy.create(4242, [])
    for verb in ("nat_enable", "net_isolate", "dns_redirect", "resolver_link"):
        with pytest.raises(Conflict, match="was not made by this banger-helper"):
            verbs.dispatch(stranger, verb, GOOD[verb])
    # Another owner's table is not even seen.
    monkeypatch.setattr(nft, "nat_list", lambda: [{"bridge": "bg0", "source": "10.77.0.5"}])
    assert verbs.dispatch(stranger, "nat_list", {}) == {"nat": []}
    assert calls == []


def test_dns_redirect_only_to_the_bridges_own_address(calls: list[Any]) -> None:
    with pytest.raises(Conflict, match="not an address of bridge bg0"):
        verbs.dispatch(POLICY, "dns_redirect", {**GOOD["dns_redirect"], "address": "10.77.0.9"})
    with pytest.raises(NotFound, match="bridge bg1 does not exist"):
        verbs.dispatch(POLICY, "dns_redirect", {**GOOD["dns_redirect"], "bridge": "bg1"})
    assert calls == []


def test_resolvectl_detection(tmp_path: Path) -> None:
    def which(name: str) -> str | None:
        return f"/usr/bin/{name}"

    assert resolved.resolvectl(tmp_path / "absent", which) is None
    assert resolved.resolvectl(tmp_path, lambda name: None) is None
    assert resolved.resolvectl(tmp_path, which) == "/usr/bin/resolvectl"


def test_resolver_argv() -> None:
    addr = ipaddress.IPv4Address("10.77.0.1")
    assert resolved.link_argvs("resolvectl", "bg0", addr) == [
        ["resolvectl", "dns", "bg0", "10.77.0.1"],
        ["resolvectl", "domain", "bg0", "~vm"],
        ["resolvectl", "default-route", "bg0", "false"],
    ]
    assert resolved.unlink_argvs("resolvectl", "bg0") == [["resolvectl", "revert", "bg0"]]


def test_resolver_link_without_resolved_is_a_noop(tmp_path: Path) -> None:
    out = resolved.link("bg0", ipaddress.IPv4Address("10.77.0.1"), resolve_dir=tmp_path / "no")
    assert out["linked"] is False and "not running" in out["reason"]


def test_resolver_link_runs_resolvectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[list[str]] = []
    monkeypatch.setattr(resolved.proc, "run", lambda argv, **kw: ran.append(list(argv)))
    out = resolved.link(
        "bg0", ipaddress.IPv4Address("10.77.0.1"), resolve_dir=tmp_path, which=lambda n: "/x/rc"
    )
    assert out == {"bridge": "bg0", "linked": True, "dns": "10.77.0.1", "domain": "~vm"}
    assert [argv[1] for argv in ran] == ["dns", "domain", "default-route"]
