"""The helper checks every argument before anything runs as root."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from banger.helper import validate
from banger.helper.errors import UserError
from banger.helper.validate import Policy, check_args
from banger.helper.verbs import VERBS, dispatch

OWNER = 4242


@pytest.fixture
def policy(tmp_path: Path) -> Policy:
    (tmp_path / "home").mkdir()
    return Policy.create(OWNER, [tmp_path / "home"])


@pytest.mark.parametrize("name", ["bg0", "bgt0123456789a", "bg-a-b", "bgzzzzzzzzzzzzz"])
def test_link_names_banger_owns_pass(policy: Policy, name: str) -> None:
    assert validate.link_name("name", name, policy) == name


@pytest.mark.parametrize(
    "name",
    [
        "eth0",  # no prefix
        "br0",
        "bg",  # prefix alone
        "bgzzzzzzzzzzzzzz",  # 16 bytes: past IFNAMSIZ
        "BG0",
        "bgA",
        "bg0;reboot",
        "bg0 up",
        "bg$(id)",
        "bg0`id`",
        "bg0|x",
        "bg0&",
        "bg0\n",
        "bg/0",
        "bg..",
        "bg0\x00",
        "bgé",
    ],
)
def test_link_names_outside_the_prefix_or_charset_are_refused(policy: Policy, name: str) -> None:
    with pytest.raises(UserError) as info:
        validate.link_name("name", name, policy)
    assert "not a banger interface name" in info.value.message
    assert "bg" in (info.value.hint or "")


@pytest.mark.parametrize("value", [None, 7, ["bg0"], {"n": "bg0"}, True])
def test_link_names_must_be_strings(policy: Policy, value: object) -> None:
    with pytest.raises(UserError, match="must be a string"):
        validate.link_name("name", value, policy)


def test_bridge_address_is_a_private_host_address(policy: Policy) -> None:
    iface = validate.ipv4_interface("address", "10.77.0.1/24", policy)
    assert iface == ipaddress.IPv4Interface("10.77.0.1/24")


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("8.8.8.8/24", "not a private range"),
        ("127.0.0.1/8", "not a private range"),
        ("169.254.0.1/16", "not a private range"),
        ("224.0.0.1/24", "not a private range"),
        ("10.77.0.1", "needs a prefix length"),
        ("10.77.0.0/24", "not a host address"),
        ("10.77.0.255/24", "not a host address"),
        ("10.77.0.1/31", "too small"),
        ("10.77.0.1/24; rm -rf /", "not an address"),
        ("010.77.0.1/24", "not an address"),
        ("fd00::1/64", "not an address"),
        (" 10.77.0.1/24", "not an address"),
    ],
)
def test_bad_bridge_addresses_are_refused(policy: Policy, value: str, words: str) -> None:
    with pytest.raises(UserError, match=words):
        validate.ipv4_interface("address", value, policy)


def test_networks_must_be_private_and_without_host_bits(policy: Policy) -> None:
    assert str(validate.ipv4_network("subnet", "10.77.0.0/24", policy)) == "10.77.0.0/24"
    with pytest.raises(UserError, match="not a private range"):
        validate.ipv4_network("subnet", "1.2.3.0/24", policy)
    with pytest.raises(UserError, match="not a range"):
        validate.ipv4_network("subnet", "10.77.0.1/24", policy)


def test_uids_are_the_owner_or_root(policy: Policy) -> None:
    assert validate.owner_uid("owner_uid", OWNER, policy) == OWNER
    assert validate.owner_uid("owner_uid", 0, policy) == 0
    with pytest.raises(UserError, match="serves uid 4242") as info:
        validate.owner_uid("owner_uid", 1000, policy)
    assert info.value.hint == "pass 4242 (or 0)"
    for bad in ("4242", 4242.0, True, None, -1):
        with pytest.raises(UserError):
            validate.owner_uid("owner_uid", bad, policy)


def test_macs_are_unicast_and_normalised(policy: Policy) -> None:
    assert validate.mac_address("mac", "02:AB:00:00:00:01", policy) == "02:ab:00:00:00:01"
    for bad in ("01:00:5e:00:00:01", "00:00:00:00:00:00", "02:ab:00:00:00", "02-ab-00-00-00-01", 2):
        with pytest.raises(UserError):
            validate.mac_address("mac", bad, policy)


def test_paths_inside_an_allowed_dir_pass(policy: Policy) -> None:
    home = policy.allowed_dirs[0]
    assert (
        validate.allowed_path("path", f"{home}/vms/a/disk.img", policy) == home / "vms/a/disk.img"
    )


def test_paths_escaping_with_dotdot_are_refused(policy: Policy) -> None:
    home = policy.allowed_dirs[0]
    with pytest.raises(UserError, match="outside banger's directories") as info:
        validate.allowed_path("path", f"{home}/../../etc/shadow", policy)
    assert str(home) in (info.value.hint or "")


def test_paths_escaping_through_a_symlink_are_refused(policy: Policy) -> None:
    home = policy.allowed_dirs[0]
    (home / "link").symlink_to("/etc")
    with pytest.raises(UserError, match="resolves to /etc/passwd"):
        validate.allowed_path("path", f"{home}/link/passwd", policy)


def test_a_symlinked_allowed_dir_still_matches(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    policy = Policy.create(OWNER, [tmp_path / "alias"])
    assert validate.allowed_path("path", f"{tmp_path}/alias/x", policy) == real / "x"


def test_a_prefix_that_is_not_a_parent_is_refused(policy: Policy) -> None:
    home = policy.allowed_dirs[0]
    with pytest.raises(UserError, match="outside"):
        validate.allowed_path("path", f"{home}-evil/x", policy)


@pytest.mark.parametrize("value", ["relative/path", "", "/a\x00b", 5, None])
def test_paths_must_be_absolute_strings(policy: Policy, value: object) -> None:
    with pytest.raises(UserError):
        validate.allowed_path("path", value, policy)


def test_check_args_refuses_extra_missing_and_non_objects(policy: Policy) -> None:
    spec = {"name": validate.link_name}
    assert check_args("v", spec, {"name": "bg0"}, policy) == {"name": "bg0"}
    with pytest.raises(UserError, match="unexpected argument") as info:
        check_args("v", spec, {"name": "bg0", "shell": "sh"}, policy)
    assert info.value.hint == "v takes: name"
    with pytest.raises(UserError, match="missing argument"):
        check_args("v", spec, {}, policy)
    with pytest.raises(UserError, match="must be an object"):
        check_args("v", spec, ["bg0"], policy)
    assert check_args("v", spec, {}, policy, optional={"name"}) == {}


# Every verb refuses a bad argument before touching the host: nothing is
# mocked here, so a verb that ran anything as root would fail differently.
GOOD = {
    "bridge_ensure": {"name": "bgv0", "address": "10.201.0.1/24"},
    "bridge_delete": {"name": "bgv0"},
    "tap_create": {"name": "bgvt0", "bridge": "bgv0", "owner_uid": OWNER},
    "tap_delete": {"name": "bgvt0"},
    "tap_open": {"name": "bgvt0"},
    "ping": {},
    "link_list": {},
    "nat_enable": {"bridge": "bgv0", "subnet": "10.201.0.0/24", "source": "10.201.0.5"},
    "nat_disable": {"source": "10.201.0.5"},
    "nat_list": {},
    "net_isolate": {"bridge": "bgv0"},
    "dns_redirect": {"bridge": "bgv0", "address": "10.201.0.1", "port": 10053},
    "net_teardown": {"bridge": "bgv0"},
    "resolver_link": {"bridge": "bgv0", "address": "10.201.0.1"},
    "resolver_unlink": {"bridge": "bgv0"},
}
BAD_VALUES = {
    "name": ["eth0", "bg0;id", "bgxxxxxxxxxxxxxxxx", 3],
    "bridge": ["docker0", None],
    "address": ["8.8.8.8/24", "10.201.0.0/24", 10],
    "owner_uid": [0.5, "0", 1000],
    "subnet": ["8.8.8.0/24", "10.201.0.1/24", None],
    "source": ["1.1.1.1", "10.201.0.5/32", 5],
    "port": [53, 65536, "10053", True],
}


def test_the_table_is_covered_here() -> None:
    # The VMM verbs take paths that must exist: test_helper_vmm.py covers them.
    assert set(GOOD) | {"vmm_launch", "vmm_kill"} == set(VERBS)


@pytest.mark.parametrize(
    ("verb", "arg", "bad"),
    [(verb, arg, bad) for verb, args in GOOD.items() for arg in args for bad in BAD_VALUES[arg]],
)
def test_every_verb_validates_every_argument(
    policy: Policy, verb: str, arg: str, bad: object
) -> None:
    with pytest.raises(UserError, match=arg):
        dispatch(policy, verb, {**GOOD[verb], arg: bad})


@pytest.mark.parametrize("verb", sorted(GOOD))
def test_every_verb_refuses_extra_and_missing_args(policy: Policy, verb: str) -> None:
    with pytest.raises(UserError, match="unexpected argument"):
        dispatch(policy, verb, {**GOOD[verb], "cmd": "sh -c id"})
    for arg in GOOD[verb]:
        args = {k: v for k, v in GOOD[verb].items() if k != arg}
        with pytest.raises(UserError, match=f"missing argument.*{arg}"):
            dispatch(policy, verb, args)


def test_unknown_verbs_list_the_known_ones(policy: Policy) -> None:
    with pytest.raises(UserError, match="unknown verb 'exec'") as info:
        dispatch(policy, "exec", {"argv": ["sh"]})
    assert "tap_create" in (info.value.hint or "")
    with pytest.raises(UserError, match="unknown verb"):
        dispatch(policy, ["ping"], {})


def test_ping_reports_version_and_uid(policy: Policy) -> None:
    result = dispatch(policy, "ping", None)
    assert result["uid"] == os.getuid()
    assert result["owner_uid"] == OWNER
    assert result["version"]
