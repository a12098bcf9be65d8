"""A tab finds bangerd's socket where load_settings() says it is, or fails as it fails.

``banger.sockpath`` answers a tab without importing ``banger.config``; for every
environment, config file and install below, its answer (the socket, and the
state directory whose owner may own the socket's directory in system mode)
is held against what ``load_settings()`` resolves, and its error against
the error ``load_settings()`` raises, message and hint.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from banger import configvalues, rundir, sockpath
from banger.config import load_settings
from banger.errors import UserError

# What the environment holds besides the config file; {tmp} is the test's own directory.
ENVIRONMENTS = [
    {},
    {"BANGER_RUNTIME_DIR": "/run/elsewhere"},
    {"BANGER_RUNTIME_DIR": "~/run"},
    {"BANGER_RUNTIME_DIR": "{tmp}//run/./here/"},
    {"BANGER_RUNTIME_DIR": "relative/run"},
    {"XDG_RUNTIME_DIR": "{tmp}"},
    {"XDG_RUNTIME_DIR": "{tmp}/missing"},
    {"BANGER_HOME": "{tmp}/home"},
    # The daemon's own settings, as a user running a non-default bangerd has them.
    {"BANGER_BRIDGE": "bgbench0", "BANGER_SUBNET": "10.99.0.0/24", "BANGER_DNS_PORT": "10099"},
    {"BANGER_DNS_UPSTREAMS": "192.0.2.53, [2001:db8::1]:5353", "BANGER_WARM_START": "off"},
    {"BANGER_VMM": "qemu", "BANGER_ACCEL": "tcg", "BANGER_FORWARD_PORTS": "auto"},
    {"BANGER_DEBIAN_MIRROR": "http://mirror.invalid/debian", "BANGER_JAILER": "none"},
    {"BANGER_HELPER_SOCKET": "{tmp}/helper.sock", "BANGER_INSECURE_REGISTRIES": "a:5000,b"},
    {"BANGER_MODE": "system"},
    {"BANGER_MODE": "system", "BANGER_HOME": "{tmp}/state"},
    {"BANGER_MODE": "system", "BANGER_RUNTIME_DIR": "{tmp}/sys-run"},
    {"BANGER_MODE": "user"},
    {"BANGER_MODE": ""},  # empty is unset
    {"BANGER_E2E_HOME": "{tmp}/e2e", "BANGER_AGENT_MODE": "x"},  # not settings at all
    # Bad values: both refuse, with the same words.
    {"BANGER_MODE": "cluster"},
    {"BANGER_SUBNET": "nonsense"},
    {"BANGER_SUBNET": "8.8.8.0/24"},
    {"BANGER_BRIDGE": "br0"},
    {"BANGER_DNS_PORT": "53"},
    {"BANGER_DNS_PORT": "many"},
    {"BANGER_DNS_UPSTREAMS": "resolver.invalid"},
    {"BANGER_WARM_START": "perhaps"},
    {"BANGER_ACCEL": "fast"},
    {"BANGER_RUNTIME_DIR": "{tmp}/run", "BANGER_VMM": "vbox"},
]

# The config file's text; None: there is none.
CONFIG_FILES: list[str | bytes | None] = [
    None,
    'bridge = "bg9"\nsubnet = "10.88.0.0/24"\ndns_port = 10100\n',
    'runtime_dir = "{tmp}/from-file"\n',
    'runtime_dir = "~/from-file"\nhome = "{tmp}/file-home"\n',
    'mode = "system"\n',
    'mode = "system"\nhome = "{tmp}/file-state"\n',
    'mode = "system"\nruntime_dir = ""\nhome = ""\n',  # empty: the user-mode default
    'mode = "user"\nwarm_start = false\ndns_upstreams = ["192.0.2.1"]\n',
    "default_vcpus = 2\ndefault_memory_mib = 512.5\n",
    'colour = "blue"\n',
    "subnet = \n",
    'dns_port = "x"\n',
    "dns_upstreams = 5\n",
    'mode = "both"\n',
    b'bridge = "bg\xff"\n',
]


Outcome = tuple[Path, Path | None] | tuple[str, str, str | None]


def outcome(find: Callable[[], tuple[Path, Path | None]]) -> Outcome:
    try:
        return find()
    except UserError as exc:
        return ("refused", exc.message, exc.hint)


def from_settings() -> tuple[Path, Path | None]:
    settings = load_settings()
    return settings.socket, settings.home if settings.mode == "system" else None


def from_sockpath() -> tuple[Path, Path | None]:
    socket, home = sockpath.locate(os.environ)
    return Path(socket), None if home is None else Path(home)


@pytest.fixture
def clean(tmp_path, monkeypatch):
    for name in [k for k in os.environ if k.startswith(("BANGER_", "XDG_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(configvalues, "INSTALL_METADATA", str(tmp_path / "install.json"))
    return tmp_path


@pytest.mark.parametrize("text", CONFIG_FILES)
@pytest.mark.parametrize("env", ENVIRONMENTS)
@pytest.mark.parametrize("installed", [False, True], ids=["", "installed"])
def test_sockpath_names_the_socket_load_settings_names_or_fails_alike(
    env, text, installed, clean, monkeypatch
):
    tmp = clean
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp))
    config = tmp / "config" / "banger" / "config.toml"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp / "config"))
    if text is not None:
        config.parent.mkdir(parents=True)
        raw = text if isinstance(text, bytes) else text.format(tmp=tmp).encode()
        config.write_bytes(raw)
    if installed:
        (tmp / "install.json").write_text("{}\n")
    assert outcome(from_sockpath) == outcome(from_settings)


def test_an_explicit_config_file_is_read_where_it_is_named(clean, monkeypatch):
    (clean / "mine.toml").write_text(f'runtime_dir = "{clean}/mine"\n')
    monkeypatch.setenv("BANGER_CONFIG", str(clean / "mine.toml"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(clean / "unused"))
    assert sockpath.locate(os.environ) == (f"{clean}/mine/bangerd.sock", None)
    assert outcome(from_sockpath) == outcome(from_settings)


def test_in_system_mode_the_state_directorys_owner_is_trusted_as_the_client_trusts_it(
    clean, monkeypatch
):
    monkeypatch.setenv("BANGER_MODE", "system")
    monkeypatch.setenv("BANGER_HOME", str(clean))
    _, home = sockpath.locate(os.environ)
    assert home is not None
    assert rundir.home_owner(home) == rundir.trusted_owners(load_settings()) == {os.getuid()}
    monkeypatch.setenv("BANGER_HOME", str(clean / "gone"))
    assert rundir.home_owner(sockpath.locate(os.environ)[1] or "") == set()
