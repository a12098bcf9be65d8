"""Where forwarded DNS goes: the setting, or the host's resolv.conf as it is now."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from banger.config import load_settings
from banger.errors import UserError
from banger.net.upstream import HostResolvers, Upstream, nameservers, parse_upstream


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.53", Upstream("192.0.2.53", 53)),
        (" 127.0.0.1:5353 ", Upstream("127.0.0.1", 5353)),
        ("2001:db8::1", Upstream("2001:db8::1", 53)),
        ("[2001:db8::1]:5353", Upstream("2001:db8::1", 5353)),
        ("[::1]", Upstream("::1", 53)),
    ],
)
def test_upstreams_parse(text: str, expected: Upstream) -> None:
    assert parse_upstream(text) == expected
    assert parse_upstream(str(expected)) == expected


@pytest.mark.parametrize(
    "text", ["dns.example", "192.0.2.53:0", "192.0.2.53:99999", "[::1", "[::1]x", "1.2.3.4:x", ""]
)
def test_bad_upstreams_name_the_setting(text: str) -> None:
    with pytest.raises(UserError) as caught:
        parse_upstream(text)
    assert "BANGER_DNS_UPSTREAMS" in (caught.value.hint or "")


def test_resolv_conf_nameservers_in_order_at_most_three() -> None:
    text = """# written by a DHCP client
search lan
nameserver 127.0.0.53
options edns0 trust-ad
nameserver fe80::1%eth0
nameserver 2001:db8::53
nameserver not-an-address
nameserver 192.0.2.1
nameserver 192.0.2.2
"""
    assert [str(u) for u in nameservers(text)] == ["127.0.0.53", "2001:db8::53", "192.0.2.1"]


def test_host_resolvers_follow_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    resolvers = HostResolvers(path=conf)
    assert resolvers.current() == []  # no file: nothing to forward to
    conf.write_text("nameserver 192.0.2.1\n")
    assert resolvers.current() == [Upstream("192.0.2.1")]
    # Replaced the way resolvconf and NetworkManager do: a new file renamed over it.
    new = tmp_path / "resolv.conf.new"
    new.write_text("nameserver 192.0.2.9\n")
    os.replace(new, conf)
    assert resolvers.current() == [Upstream("192.0.2.9")]


def test_configured_upstreams_win_over_the_file(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 192.0.2.1\n")
    resolvers = HostResolvers(("127.0.0.1:5353",), conf)
    assert resolvers.current() == [Upstream("127.0.0.1", 5353)]


def test_setting_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BANGER_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.delenv("BANGER_DNS_UPSTREAMS", raising=False)
    assert load_settings().dns_upstreams == ()
    (tmp_path / "config.toml").write_text('dns_upstreams = ["192.0.2.1"]\n')
    assert load_settings().dns_upstreams == ("192.0.2.1",)
    monkeypatch.setenv("BANGER_DNS_UPSTREAMS", "127.0.0.1:5353, 192.0.2.2")
    assert load_settings().dns_upstreams == ("127.0.0.1:5353", "192.0.2.2")
    monkeypatch.setenv("BANGER_DNS_UPSTREAMS", "resolver.example")
    with pytest.raises(UserError, match=r"resolver\.example"):
        load_settings()
