"""A small client for the OCI Distribution API (manifests and blobs).

Anonymous or credentialed token auth as announced by ``WWW-Authenticate``,
basic auth from the user's container auth files, OCI and Docker v2
manifests, and image indexes resolved to the host's platform. Plain HTTP is
used only for loopback registries and ones the user listed as insecure, the
same rule Docker applies.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import logging
import os
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from banger.errors import HostError, NotFound, UserError
from banger.image.blobcache import BlobCache, ByteProgress, short
from banger.image.reference import DOCKER_HUB, Reference

log = logging.getLogger("banger.image")

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
_CHUNK = 256 * 1024

# `uname -m` to the OCI platform (architecture, variant) it runs.
_ARCH = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i686": ("386", ""),
    "i386": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}


def host_platform(machine: str | None = None) -> tuple[str, str]:
    machine = machine or platform.machine()
    return _ARCH.get(machine, (machine, ""))


def choose_platform(index: dict[str, Any], machine: str | None = None) -> dict[str, Any]:
    """Pick the descriptor for linux on the host's architecture from an index."""
    arch, variant = host_platform(machine)
    candidates: list[dict[str, Any]] = []
    seen: list[str] = []
    for desc in index.get("manifests") or []:
        plat = desc.get("platform") or {}
        os_name, d_arch = plat.get("os", ""), plat.get("architecture", "")
        d_variant = plat.get("variant", "")
        if os_name == "unknown":  # attestations and signatures, not images
            continue
        seen.append("/".join(p for p in (os_name, d_arch, d_variant) if p))
        if os_name == "linux" and d_arch == arch:
            candidates.append(desc)
    # An exact variant beats a missing one, which beats a different one.
    for want in (variant, ""):
        for desc in candidates:
            if (desc.get("platform") or {}).get("variant", "") == want:
                return desc
    if candidates:
        return candidates[0]
    want = "/".join(p for p in ("linux", arch, variant) if p)
    raise NotFound(
        f"the image has no {want} variant",
        hint="available platforms: " + (", ".join(seen) or "none listed"),
    )


_AUTH_PARAM = re.compile(r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))')


def parse_www_authenticate(header: str) -> tuple[str, dict[str, str]]:
    """``Bearer realm="...",service="..."`` -> ("bearer", {"realm": ..., ...})."""
    scheme, _, rest = header.strip().partition(" ")
    params: dict[str, str] = {}
    for m in _AUTH_PARAM.finditer(rest):
        value = m.group(2) if m.group(2) is not None else m.group(3)
        params[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
    return scheme.lower(), params


def auth_files() -> list[Path]:
    files: list[Path] = []
    if os.environ.get("REGISTRY_AUTH_FILE"):
        files.append(Path(os.environ["REGISTRY_AUTH_FILE"]))
    if os.environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(os.environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files.append(Path.home() / ".docker" / "config.json")
    return files


def _auth_keys(registry: str) -> set[str]:
    if registry == DOCKER_HUB:
        return {
            "docker.io",
            "index.docker.io",
            "registry-1.docker.io",
            "https://index.docker.io/v1/",
        }
    return {registry}


def find_credentials(registry: str, files: Sequence[Path] | None = None) -> tuple[str, str] | None:
    """(user, password) for ``registry`` from the first auth file that has it."""
    wanted = _auth_keys(registry)
    for path in auth_files() if files is None else files:
        try:
            auths = json.loads(path.read_text()).get("auths") or {}
        except (OSError, ValueError, AttributeError):
            continue
        for key, entry in auths.items():
            host = re.sub(r"^https?://", "", key).split("/", 1)[0]
            if key not in wanted and host not in wanted:
                continue
            try:
                user, _, password = base64.b64decode(entry.get("auth", "")).decode().partition(":")
            except (ValueError, AttributeError):
                continue
            if user:
                return user, password
    return None


def is_loopback(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_url(registry: str, insecure_registries: Sequence[str] = ()) -> str:
    plain = is_loopback(registry) or registry in insecure_registries
    return f"{'http' if plain else 'https'}://{registry}"


@dataclass(frozen=True)
class Manifest:
    media_type: str
    digest: str
    body: dict[str, Any]


class RegistryClient:
    """One repository on one registry; use as ``async with``."""

    def __init__(
        self,
        ref: Reference,
        *,
        insecure_registries: Sequence[str] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        self.ref = ref
        self.base = base_url(ref.endpoint, insecure_registries)
        self.credentials = (
            credentials if credentials is not None else find_credentials(ref.registry)
        )
        self._token: str | None = None
        self._basic = False
        self._http = httpx.AsyncClient(
            transport=transport,
            follow_redirects=True,
            timeout=httpx.Timeout(30.0, read=120.0),
            headers={"User-Agent": "banger"},
        )

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self._http.aclose()

    def _headers(self, accept: str | None) -> dict[str, str]:
        headers = {"Accept": accept} if accept else {}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        elif self._basic and self.credentials:
            pair = f"{self.credentials[0]}:{self.credentials[1]}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
        return headers

    async def _authenticate(self, challenge: str) -> None:
        scheme, params = parse_www_authenticate(challenge)
        if scheme == "basic":
            if not self.credentials:
                raise _denied(self.ref, "it asks for a user name and password")
            self._basic = True
            return
        if scheme != "bearer" or "realm" not in params:
            raise HostError(f"{self.ref.registry} asks for unsupported auth {challenge!r}")
        query: dict[str, str] = {k: params[k] for k in ("service", "scope") if k in params}
        query.setdefault("scope", f"repository:{self.ref.repository}:pull")
        realm = httpx.URL(params["realm"])
        # Credentials travel only where they cannot be read on the wire.
        safe = realm.scheme == "https" or is_loopback(realm.host)
        auth = httpx.BasicAuth(*self.credentials) if self.credentials and safe else None
        try:
            resp = await self._http.get(realm, params=query, auth=auth)
        except httpx.HTTPError as exc:
            raise HostError(
                f"cannot reach the token service of {self.ref.registry}: {exc}"
            ) from exc
        if resp.status_code in (401, 403):
            raise _denied(self.ref, "its token service refused the credentials")
        if resp.status_code != 200:
            raise HostError(f"token service of {self.ref.registry} answered {resp.status_code}")
        body = resp.json()
        token = body.get("token") or body.get("access_token")
        if not isinstance(token, str) or not token:
            raise HostError(f"token service of {self.ref.registry} returned no token")
        self._token = token

    async def _open(self, path: str, accept: str | None = None) -> httpx.Response:
        """GET ``/v2/<name>/<path>`` as a stream, authenticating once when challenged."""
        url = f"{self.base}/v2/{self.ref.repository}/{path}"
        for attempt in range(2):
            try:
                req = self._http.build_request("GET", url, headers=self._headers(accept))
                resp = await self._http.send(req, stream=True)
            except httpx.HTTPError as exc:
                raise HostError(
                    f"cannot reach registry {self.ref.registry} at {self.base}: {exc}",
                    hint="check the registry address and your network",
                ) from exc
            if resp.status_code != 401 or attempt == 1:
                break
            await resp.aclose()
            await self._authenticate(resp.headers.get("www-authenticate", ""))
        if resp.status_code == 200:
            return resp
        await resp.aclose()
        if resp.status_code in (401, 403):
            raise _denied(self.ref, f"it answered {resp.status_code}")
        if resp.status_code == 404:
            raise NotFound(
                f"{self.ref} not found ({path.split('/')[0]} {path.split('/')[-1]})",
                hint="check the repository name and tag",
            )
        raise HostError(f"registry {self.ref.registry} answered {resp.status_code} for {url}")

    async def manifest(self, reference: str) -> Manifest:
        accept = ", ".join((*MANIFEST_TYPES, *INDEX_TYPES))
        resp = await self._open(f"manifests/{reference}", accept)
        try:
            if int(resp.headers.get("content-length") or 0) > MAX_MANIFEST_BYTES:
                raise _too_big(self.ref)
            data = bytearray()
            async for chunk in resp.aiter_bytes():
                data += chunk
                if len(data) > MAX_MANIFEST_BYTES:
                    raise _too_big(self.ref)
        finally:
            await resp.aclose()
        return _parse_manifest(self.ref, reference, bytes(data), resp.headers.get("content-type"))

    async def blob(
        self, cache: BlobCache, digest: str, size: int, progress: ByteProgress | None = None
    ) -> Path:
        """The cached path of ``digest``, downloading it only when not cached yet."""
        if cache.has(digest, size):
            if progress is not None:
                progress(size, size)
            return cache.path(digest)
        cache.path(digest)  # validate before the digest goes into a URL
        resp = await self._open(f"blobs/{digest}")
        try:
            return await cache.store(digest, size, resp.aiter_bytes(_CHUNK), progress)
        except httpx.HTTPError as exc:
            raise HostError(f"download of blob {short(digest)} failed: {exc}") from exc
        finally:
            await resp.aclose()


def _parse_manifest(ref: Reference, reference: str, data: bytes, ctype: str | None) -> Manifest:
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    if reference.startswith("sha256:") and digest != reference:
        raise UserError(
            f"manifest of {ref} hashes to {digest}, not the {reference} asked for",
            hint="the registry served different content; try again",
        )
    try:
        body = json.loads(data)
    except ValueError as exc:
        raise UserError(f"manifest of {ref} is not valid JSON") from exc
    if not isinstance(body, dict):
        raise UserError(f"manifest of {ref} is not a JSON object")
    media_type = body.get("mediaType") or (ctype or "").split(";")[0].strip()
    if not media_type:
        media_type = OCI_INDEX if "manifests" in body else OCI_MANIFEST
    if media_type not in (*MANIFEST_TYPES, *INDEX_TYPES):
        raise UserError(
            f"{ref} has an unsupported manifest type {media_type!r}",
            hint="banger reads OCI and Docker v2 schema 2 images; re-push it with a current tool",
        )
    return Manifest(media_type=media_type, digest=digest, body=body)


def _denied(ref: Reference, why: str) -> UserError:
    return UserError(
        f"access to {ref} was denied: {why}",
        hint="log in with `docker login` or `skopeo login` (banger reads ~/.docker/config.json "
        "and containers auth.json), or check the image name",
    )


def _too_big(ref: Reference) -> UserError:
    return UserError(
        f"manifest of {ref} is larger than {MAX_MANIFEST_BYTES // (1024 * 1024)} MiB",
        hint="banger refuses oversized manifests; check the image",
    )
