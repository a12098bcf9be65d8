from __future__ import annotations

import pytest

from banger import proc
from banger.errors import HostError, NotFound
from banger.kernel import catalog, debian


def test_lookup_known_kernel() -> None:
    entry = catalog.lookup("debian-bookworm-cloud")
    assert entry.package == "linux-image-cloud-amd64"
    assert entry in catalog.entries()


def test_unknown_kernel_lists_known_names() -> None:
    with pytest.raises(NotFound) as info:
        catalog.lookup("nope")
    assert "'nope'" in info.value.message
    assert info.value.hint is not None and "debian-bookworm-cloud" in info.value.hint


def test_metapackage_resolves_to_versioned_package(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    def fake_output(argv: list[str], **_: object) -> str:
        seen.append(argv)
        return "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-28-cloud-amd64\n"

    monkeypatch.setattr(proc, "output", fake_output)
    assert debian.resolve_package("linux-image-cloud-amd64") == "linux-image-6.1.0-28-cloud-amd64"
    assert seen[0][:2] == ["apt-cache", "depends"]
    # A versioned name needs no lookup.
    assert (
        debian.resolve_package("linux-image-6.1.0-1-cloud-amd64")
        == "linux-image-6.1.0-1-cloud-amd64"
    )
    assert len(seen) == 1


def test_unresolvable_metapackage_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proc, "output", lambda argv, **_: "linux-image-cloud-amd64\n")
    with pytest.raises(HostError) as info:
        debian.resolve_package("linux-image-cloud-amd64")
    assert info.value.hint is not None and "apt-get update" in info.value.hint
