from __future__ import annotations

from pathlib import Path

import pytest

from banger.config import load_settings
from banger.errors import UserError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for key in (
        "BANGER_HOME",
        "BANGER_RUNTIME_DIR",
        "BANGER_MODE",
        "BANGER_SUBNET",
        "BANGER_BRIDGE",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("BANGER_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))


def test_user_mode_lives_under_xdg_dirs(tmp_path):
    s = load_settings()
    assert s.socket == tmp_path / "banger" / "bangerd.sock"
    assert s.db_path == tmp_path / "data" / "banger" / "banger.db"


def test_system_mode_uses_run_and_var_lib(monkeypatch):
    monkeypatch.setenv("BANGER_MODE", "system")
    s = load_settings()
    assert s.socket == Path("/run/banger/bangerd/bangerd.sock")
    assert s.helper_socket_path == Path("/run/banger/helper/helper.sock")
    assert s.home == Path("/var/lib/banger")
    assert s.cache_dir == Path("/var/cache/banger")


def test_precedence_file_then_env(tmp_path, monkeypatch):
    (tmp_path / "config.toml").write_text('subnet = "10.88.0.0/24"\nbridge = "bgfile"\n')
    monkeypatch.setenv("BANGER_BRIDGE", "bgenv")
    s = load_settings()
    assert (s.subnet, s.bridge) == ("10.88.0.0/24", "bgenv")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('subnet = "8.8.8.0/24"', "private"),
        ('subnet = "nonsense"', "not an IPv4 network"),
        ('bridge = "br0"', "must start with 'bg'"),
        ('colour = "blue"', "unknown setting 'colour'"),
        ("subnet = ", "not valid TOML"),
        ('accel = "fast"', "accel"),
    ],
)
def test_bad_config_is_a_user_error(tmp_path, text, fragment):
    (tmp_path / "config.toml").write_text(text + "\n")
    with pytest.raises(UserError, match=fragment):
        load_settings()


def test_banger_and_its_helper_agree_on_the_name_prefix():
    from banger import config
    from banger.helper import validate

    assert config.NAME_PREFIX == validate.NAME_PREFIX


def test_every_setting_is_read_as_the_kind_its_field_holds():
    from dataclasses import fields

    from banger import configvalues
    from banger.config import Settings

    as_field = {
        "str": ("str",),
        "int": ("int",),
        "bool": ("bool",),
        "list": ("tuple[str, ...]",),
        "path": ("Path", "Path | None"),
    }
    assert set(configvalues.KINDS) == {f.name for f in fields(Settings)}
    for f in fields(Settings):
        assert f.type in as_field[configvalues.KINDS[f.name]], f.name
    assert set(configvalues.ENV) <= set(configvalues.KINDS)
