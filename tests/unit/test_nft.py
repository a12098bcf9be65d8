"""nftables rules as text and the NAT bookkeeping, against a fake nft.

The real kernel is exercised by tests/e2e/test_nat_netns.py; here ``apply``
and the two readers are replaced by a small interpreter of the commands
banger generates, so the decisions (when the table goes, when ip_forward is
restored) are checked without root.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from banger.helper import nft
from banger.helper.errors import UserError

A = ipaddress.IPv4Address
NET = ipaddress.IPv4Network("10.77.0.0/24")
ADDR = A("10.77.0.1")


def test_table_name_is_per_bridge_and_reversible() -> None:
    assert nft.table_name("bg0") == "banger_bg0"
    assert nft.table_name("bge2e-0") == "banger_bge2e_0"
    assert nft.bridge_of("banger_bge2e_0") == "bge2e-0"
    assert nft.bridge_of("filter") is None
    assert nft.bridge_of("banger_eth0") is None


@pytest.mark.parametrize("bad", ["eth0", "bg0; flush ruleset", 'bg0"', "bg" + "x" * 14])
def test_rendering_refuses_names_that_were_not_validated(bad: str) -> None:
    with pytest.raises(ValueError):
        nft.skeleton(bad)


def test_skeleton_rules() -> None:
    lines = nft.skeleton("bg0")
    t = "inet banger_bg0"
    assert lines[0] == f"add table {t}"
    assert f'add rule {t} forward iifname "bg0" ip saddr @nat_sources oifname != "bg0" accept' in (
        lines
    )
    assert f'add rule {t} forward iifname "bg0" oifname != "bg0" jump isolate' in lines
    assert (
        f'add rule {t} postrouting iifname "bg0" ip saddr @nat_sources oifname != "bg0" masquerade'
        in lines
    )
    # Fixed chains are flushed before they are refilled, so reruns never duplicate.
    for chain in ("forward", "postrouting"):
        assert lines.index(f"flush chain {t} {chain}") < lines.index(
            next(line for line in lines if line.startswith(f"add rule {t} {chain} "))
        )
    # Nothing touches another table.
    assert all(t in line for line in lines)


def test_element_isolate_dns_and_marker_lines() -> None:
    assert nft.element_lines("bg0", "add", [A("10.77.0.5"), A("10.77.0.6")]) == [
        "add element inet banger_bg0 nat_sources { 10.77.0.5, 10.77.0.6 }"
    ]
    assert nft.element_lines("bg0", "delete", []) == []
    assert nft.isolate_lines("bg0") == [
        "flush chain inet banger_bg0 isolate",
        "add rule inet banger_bg0 isolate drop",
    ]
    dns = nft.dns_lines("bg0", ADDR, 10053)
    assert (
        'add rule inet banger_bg0 prerouting iifname "bg0" ip daddr 10.77.0.1 '
        "meta l4proto { tcp, udp } th dport 53 dnat ip to 10.77.0.1:10053"
    ) in dns
    assert any(
        line.startswith("add rule inet banger_bg0 output ip daddr 10.77.0.1") for line in dns
    )
    assert nft.marker_lines("bg0", True) == ["add chain inet banger_bg0 ipfwd_was_0"]
    with pytest.raises(ValueError):
        nft.dns_lines("bg0", ADDR, 70000)
    with pytest.raises(ValueError):
        nft.element_lines("bg0", "flush", [ADDR])


def test_parse_table() -> None:
    doc = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "banger_bg0"}},
            {"set": {"name": "nat_sources", "elem": ["10.77.0.5", "10.77.0.9"]}},
            {"chain": {"name": "isolate"}},
            {"chain": {"name": "ipfwd_was_0"}},
            {"rule": {"chain": "forward", "expr": []}},
            {"rule": {"chain": "isolate", "expr": [{"drop": None}]}},
        ]
    }
    state = nft.parse_table("banger_bg0", doc)
    assert state.sources == {A("10.77.0.5"), A("10.77.0.9")}
    assert state.isolated and state.marker and not state.dns
    empty = nft.parse_table("banger_bg0", {"nftables": [{"set": {"name": "nat_sources"}}]})
    assert empty.sources == frozenset() and not empty.needed_without_nat


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("nft") is None, reason="nft --check needs root and nft"
)
def test_generated_script_passes_nft_check() -> None:
    # --check sends the batch to the kernel and aborts it: nothing changes.
    lines = (
        nft.skeleton("bgchk0")
        + nft.element_lines("bgchk0", "add", [A("10.77.0.5")])
        + nft.isolate_lines("bgchk0")
        + nft.dns_lines("bgchk0", ADDR, 10053)
        + nft.marker_lines("bgchk0", True)
    )
    result = subprocess.run(
        ["nft", "-c", "-f", "-"], input="\n".join(lines) + "\n", capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


class FakeNft:
    """Just enough of nft to run the commands banger generates."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, object]] = {}
        self.scripts: list[list[str]] = []

    def apply(self, lines: list[str]) -> None:
        self.scripts.append(lines)
        for line in lines:
            self._one(line)

    def _one(self, line: str) -> None:
        words = line.split()
        verb, kind, name = words[0], words[1], words[3] if len(words) > 3 else ""
        if (verb, kind) == ("add", "table"):
            self.tables.setdefault(name, {"src": set(), "chains": set(), "rules": {}})
            return
        t = self.tables[name]
        chains: set[str] = t["chains"]  # type: ignore[assignment]
        rules: dict[str, int] = t["rules"]  # type: ignore[assignment]
        sources: set[str] = t["src"]  # type: ignore[assignment]
        if (verb, kind) == ("delete", "table"):
            del self.tables[name]
        elif kind == "element":
            addrs = re.findall(r"[\d.]+\d", line.split("{")[1])
            if verb == "add":
                sources.update(addrs)
            else:
                assert set(addrs) <= sources, "nft fails deleting a missing element"
                sources.difference_update(addrs)
        elif (verb, kind) == ("add", "chain"):
            chains.add(words[4])
        elif (verb, kind) == ("delete", "chain"):
            chains.remove(words[4])
        elif (verb, kind) == ("flush", "chain"):
            rules[words[4]] = 0
        elif (verb, kind) == ("add", "rule"):
            rules[words[4]] = rules.get(words[4], 0) + 1

    def read(self, bridge: str) -> nft.TableState | None:
        t = self.tables.get(nft.table_name(bridge))
        if t is None:
            return None
        rules: dict[str, int] = t["rules"]  # type: ignore[assignment]
        return nft.TableState(
            name=nft.table_name(bridge),
            sources=frozenset(A(s) for s in t["src"]),  # type: ignore[attr-defined]
            isolated=rules.get("isolate", 0) > 0,
            dns=rules.get("prerouting", 0) > 0,
            marker=nft.MARKER in t["chains"],  # type: ignore[operator]
        )

    def bridges(self) -> list[str]:
        return sorted(b for b in (nft.bridge_of(n) for n in self.tables) if b)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> FakeNft:
    fake = FakeNft()
    forward = tmp_path / "ip_forward"
    forward.write_text("0\n")
    monkeypatch.setattr(nft, "IP_FORWARD", forward)
    monkeypatch.setattr(nft, "apply", fake.apply)
    monkeypatch.setattr(nft, "read_table", fake.read)
    monkeypatch.setattr(nft, "banger_bridges", fake.bridges)
    return fake


def test_nat_round_trip_turns_forwarding_on_and_back_off(fake: FakeNft) -> None:
    first = nft.nat_enable("bg0", NET, A("10.77.0.5"))
    assert first["ip_forward_enabled"] is True
    assert nft.read_ip_forward() == 1
    again = nft.nat_enable("bg0", NET, A("10.77.0.5"))
    assert again["ip_forward_enabled"] is False
    nft.nat_enable("bg0", NET, A("10.77.0.6"))
    assert nft.nat_list() == [
        {"bridge": "bg0", "source": "10.77.0.5"},
        {"bridge": "bg0", "source": "10.77.0.6"},
    ]
    out = nft.nat_disable(A("10.77.0.5"))
    assert out["removed"] and not out["table_deleted"] and nft.read_ip_forward() == 1
    last = nft.nat_disable(A("10.77.0.6"))
    assert last["table_deleted"] and last["ip_forward_restored"]
    assert fake.tables == {} and nft.read_ip_forward() == 0
    gone = nft.nat_disable(A("10.77.0.6"))
    assert gone == {
        "source": "10.77.0.6",
        "removed": False,
        "table_deleted": False,
        "ip_forward_restored": False,
    }


def test_forwarding_already_on_is_left_alone(fake: FakeNft) -> None:
    nft.IP_FORWARD.write_text("1\n")
    nft.nat_enable("bg0", NET, A("10.77.0.5"))
    assert nft.nat_disable(A("10.77.0.5"))["ip_forward_restored"] is False
    assert nft.read_ip_forward() == 1


def test_isolated_table_outlives_its_last_nat_source(fake: FakeNft) -> None:
    nft.isolate("bg0")
    nft.dns_redirect("bg0", ADDR, 10053)
    nft.nat_enable("bg0", NET, A("10.77.0.5"))
    out = nft.nat_disable(A("10.77.0.5"))
    # Non-NAT VMs still need the drop rule and the DNS redirect.
    assert not out["table_deleted"] and out["ip_forward_restored"]
    state = fake.read("bg0")
    assert state is not None and state.isolated and state.dns and not state.marker
    assert nft.teardown("bg0")["deleted"] is True
    assert nft.teardown("bg0")["deleted"] is False
    assert fake.tables == {}


def test_teardown_restores_forwarding_banger_turned_on(fake: FakeNft) -> None:
    nft.nat_enable("bg0", NET, A("10.77.0.5"))
    assert nft.teardown("bg0") == {"bridge": "bg0", "deleted": True, "ip_forward_restored": True}
    assert nft.read_ip_forward() == 0


def test_marker_moves_to_a_bridge_that_still_uses_nat(fake: FakeNft) -> None:
    other = ipaddress.IPv4Network("10.78.0.0/24")
    nft.nat_enable("bg0", NET, A("10.77.0.5"))
    nft.nat_enable("bg1", other, A("10.78.0.5"))
    nft.teardown("bg0")
    assert nft.read_ip_forward() == 1
    state = fake.read("bg1")
    assert state is not None and state.marker
    nft.nat_disable(A("10.78.0.5"))
    assert nft.read_ip_forward() == 0 and fake.tables == {}


def test_rules_are_rewritten_not_appended(fake: FakeNft) -> None:
    for _ in range(3):
        nft.isolate("bg0")
        nft.dns_redirect("bg0", ADDR, 10053)
    rules = fake.tables["banger_bg0"]["rules"]
    assert rules == {"forward": 3, "postrouting": 1, "isolate": 1, "prerouting": 1, "output": 1}


@pytest.mark.parametrize("source", ["10.77.1.5", "10.77.0.0", "10.77.0.255"])
def test_source_must_be_a_host_of_the_subnet(fake: FakeNft, source: str) -> None:
    with pytest.raises(UserError, match=r"not a host address of 10\.77\.0\.0/24"):
        nft.nat_enable("bg0", NET, A(source))
    assert fake.scripts == []
