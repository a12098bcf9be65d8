from __future__ import annotations

import pytest

from banger.errors import UserError
from banger.image.reference import parse_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("debian", "docker.io", "library/debian", "latest", None),
        ("debian:bookworm", "docker.io", "library/debian", "bookworm", None),
        ("docker.io/library/debian", "docker.io", "library/debian", "latest", None),
        ("index.docker.io/foo/bar:1", "docker.io", "foo/bar", "1", None),
        ("user/app", "docker.io", "user/app", "latest", None),
        ("127.0.0.1:5000/repo/x:tag", "127.0.0.1:5000", "repo/x", "tag", None),
        ("localhost/x", "localhost", "x", "latest", None),
        ("ghcr.io/a/b-c_d.e:v1.2-rc", "ghcr.io", "a/b-c_d.e", "v1.2-rc", None),
        (f"repo@{DIGEST}", "docker.io", "library/repo", None, DIGEST),
        (f"quay.io/a/b:t@{DIGEST}", "quay.io", "a/b", "t", DIGEST),
        ("[::1]:5000/x", "[::1]:5000", "x", "latest", None),
    ],
)
def test_parse(text, registry, repository, tag, digest) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (
        registry,
        repository,
        tag,
        digest,
    )


def test_docker_hub_endpoint_and_canonical() -> None:
    ref = parse_reference("debian:bookworm")
    assert ref.endpoint == "registry-1.docker.io"
    assert ref.canonical() == "docker.io/library/debian:bookworm"
    assert ref.reference == "bookworm"
    pinned = parse_reference(f"127.0.0.1:5000/x@{DIGEST}")
    assert pinned.endpoint == "127.0.0.1:5000"
    assert pinned.reference == DIGEST
    assert str(pinned) == f"127.0.0.1:5000/x@{DIGEST}"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("Debian", "lowercase"),
        ("debian:", "tag"),
        ("debian:bad/tag", "registry host"),
        ("repo@sha256:abc", "digest"),
        ("repo@md5:" + "a" * 32, "digest"),
        ("a//b", "not valid"),
        ("-a", "not valid"),
        ("a/../b", "not valid"),
        ("http://127.0.0.1:5000/x", "scheme"),
        ("bad_host.:5000/x", "registry host"),
        ("x" * 256, "longer"),
        ("127.0.0.1:5000/", "missing"),
    ],
)
def test_bad_references_say_why_with_a_hint(text: str, why: str) -> None:
    with pytest.raises(UserError) as err:
        parse_reference(text)
    assert why in err.value.message
    assert err.value.hint and "debian:bookworm" in err.value.hint
