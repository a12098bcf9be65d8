"""OCI image references: ``debian:bookworm``, ``127.0.0.1:5000/team/app@sha256:...``.

Parsing follows the rules Docker users already know: the first path
component names a registry only when it looks like a host (has a dot or a
port, or is ``localhost``); otherwise the image lives on Docker Hub, where a
single-component name means ``library/NAME``. Everything is validated up front
because the repository name ends up in URLs and the digest in cache paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from banger.errors import UserError

DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
DEFAULT_TAG = "latest"

_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_HOST = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)
_NAME_MAX = 255
_EXAMPLES = "e.g. debian:bookworm, docker.io/library/alpine, 127.0.0.1:5000/team/app:v1"


@dataclass(frozen=True)
class Reference:
    """A parsed reference; ``registry`` is the user-facing host (``docker.io``)."""

    registry: str
    repository: str
    tag: str | None
    digest: str | None

    @property
    def endpoint(self) -> str:
        """Host (and port) the Distribution API is served on."""
        return DOCKER_HUB_ENDPOINT if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest when pinned, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    def canonical(self) -> str:
        base = f"{self.registry}/{self.repository}"
        if self.tag:
            base += f":{self.tag}"
        if self.digest:
            base += f"@{self.digest}"
        return base

    def with_digest(self, digest: str) -> Reference:
        return Reference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        return self.canonical()


def is_digest(text: str) -> bool:
    return _DIGEST.fullmatch(text) is not None


def _bad(text: str, why: str) -> UserError:
    return UserError(f"invalid image reference {text!r}: {why}", hint=_EXAMPLES)


def _looks_like_host(component: str) -> bool:
    return "." in component or ":" in component or component == "localhost"


def _split_digest(text: str) -> tuple[str, str | None]:
    if "@" not in text:
        return text, None
    name, digest = text.rsplit("@", 1)
    if not _DIGEST.fullmatch(digest):
        raise _bad(text, "a digest must be sha256: followed by 64 lowercase hex digits")
    return name, digest


def _split_tag(text: str, name: str) -> tuple[str, str | None]:
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon <= slash:
        return name, None
    tag = name[colon + 1 :]
    if not _TAG.fullmatch(tag):
        raise _bad(text, f"tag {tag!r} may hold letters, digits, '_', '.', '-' (at most 128)")
    return name[:colon], tag


def _split_registry(text: str, name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and _looks_like_host(first):
        if not _HOST.fullmatch(first):
            raise _bad(text, f"{first!r} is not a valid registry host")
        host = first.lower()
        return (DOCKER_HUB if host in _HUB_ALIASES else host), rest
    return DOCKER_HUB, name


def parse_reference(text: str) -> Reference:
    """Parse and validate ``text``; raise UserError saying what is wrong."""
    text = text.strip()
    if not text:
        raise _bad(text, "it is empty")
    if "://" in text:
        raise _bad(
            text,
            "references take no scheme; plain HTTP is used only for registries on "
            "loopback or listed in insecure_registries",
        )
    name, digest = _split_digest(text)
    name, tag = _split_tag(text, name)
    registry, repository = _split_registry(text, name)
    if not repository:
        raise _bad(text, "the repository name is missing")
    if len(repository) > _NAME_MAX:
        raise _bad(text, f"the repository name is longer than {_NAME_MAX} characters")
    for component in repository.split("/"):
        if not _COMPONENT.fullmatch(component):
            why = "must be lowercase" if component.lower() != component else "is not valid"
            raise _bad(
                text,
                f"repository component {component!r} {why} "
                "(lowercase letters, digits, and '.', '_', '__', '-' between them)",
            )
    if registry == DOCKER_HUB and "/" not in repository:
        repository = f"library/{repository}"
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry=registry, repository=repository, tag=tag, digest=digest)
