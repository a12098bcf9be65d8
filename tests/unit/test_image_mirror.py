from pathlib import Path

import pytest

from banger.errors import HostError
from banger.image.mirror import debian_mirror, parse_deb822, parse_one_line

DEBIAN_SOURCES = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.org/debian-security
Suites: bookworm-security
Components: main
"""

NODESOURCE = """\
Types: deb
URIs: https://deb.nodesource.example/node_20.x
Suites: nodistro
Components: main
"""


def make_root(tmp_path: Path, main: str | None = None, **parts: str) -> Path:
    root = tmp_path / "apt"
    (root / "sources.list.d").mkdir(parents=True)
    if main is not None:
        (root / "sources.list").write_text(main)
    for name, text in parts.items():
        (root / "sources.list.d" / name.replace("_", ".", 1)).write_text(text)
    return root


def test_setting_wins_over_sources(tmp_path: Path) -> None:
    root = make_root(tmp_path, debian_sources=DEBIAN_SOURCES)
    assert debian_mirror(" http://own.example/debian ", root) == "http://own.example/debian"


def test_deb822_debian_archive(tmp_path: Path) -> None:
    root = make_root(tmp_path, debian_sources=DEBIAN_SOURCES)
    assert debian_mirror("", root) == "http://mirror.example.org/debian"


def test_third_party_entries_first_are_skipped(tmp_path: Path) -> None:
    # "a-" sorts before "debian": apt (and banger) read it first.
    root = make_root(
        tmp_path,
        "deb https://packages.cloud.example/apt cloud-sdk-bookworm main\n",
        a_sources=NODESOURCE,
        debian_sources=DEBIAN_SOURCES,
    )
    assert debian_mirror("", root) == "http://mirror.example.org/debian"


def test_security_only_is_not_enough(tmp_path: Path) -> None:
    root = make_root(
        tmp_path, "deb http://mirror.example.org/debian-security bookworm-security main\n"
    )
    with pytest.raises(HostError) as err:
        debian_mirror("", root)
    assert "BANGER_DEBIAN_MIRROR" in (err.value.hint or "")


def test_one_line_format_with_options_and_comments(tmp_path: Path) -> None:
    text = """\
# deb http://commented.example/debian bookworm main
deb-src http://src.example/debian bookworm main
deb [ arch=amd64 signed-by=/k/docker.gpg ] https://docker.example/linux/debian bookworm stable
deb [arch=amd64] http://local.example/debian/ bookworm main contrib  # trailing comment
deb http://second.example/debian bookworm main
"""
    root = make_root(tmp_path, text)
    assert debian_mirror("", root) == "http://local.example/debian"


def test_snapshot_style_uri_and_codename_suites(tmp_path: Path) -> None:
    root = make_root(
        tmp_path, "deb http://snapshot.example/archive/debian/20250520T000000Z bookworm main\n"
    )
    assert debian_mirror("", root) == "http://snapshot.example/archive/debian/20250520T000000Z"
    root2 = make_root(tmp_path / "b", "deb http://mirror.example.org/pub bookworm-updates main\n")
    assert debian_mirror("", root2) == "http://mirror.example.org/pub"


def test_disabled_and_ignored_files(tmp_path: Path) -> None:
    disabled = DEBIAN_SOURCES.replace("Types: deb\n#", "Enabled: no\nTypes: deb\n#", 1)
    root = make_root(
        tmp_path,
        a_sources=disabled,
        **{"debian_sources_disabled-by-farm": DEBIAN_SOURCES.replace("mirror.", "nope.")},
    )
    (root / "sources.list.d" / "z.list").write_text("deb http://last.example/debian sid main\n")
    assert debian_mirror("", root) == "http://last.example/debian"


def test_no_sources_at_all(tmp_path: Path) -> None:
    with pytest.raises(HostError, match="no Debian archive"):
        debian_mirror("", tmp_path / "missing")


def test_deb822_continuation_lines_and_several_uris() -> None:
    text = (
        "Types: deb deb-src\nURIs: http://a.example/debian\n"
        " http://b.example/debian\nSuites: bookworm\nComponents: main\n"
    )
    sources = list(parse_deb822(text))
    assert [s.uri for s in sources] == ["http://a.example/debian", "http://b.example/debian"]
    assert sources[0].suites == ("bookworm",)


def test_one_line_parser_skips_garbage() -> None:
    assert list(parse_one_line("deb\nfoo bar\ndeb http://x.example/debian\n")) == []
